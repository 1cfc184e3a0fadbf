"""Prefix search that an index serves, on SQLite and PostgreSQL alike.

A search for "ada" must read the entries of an index that start with "ada", not every
row (a `LIKE '%ada%'` or `icontains` scans the table). The two databases need it written
differently:

- SQLite's LIKE is case-insensitive and uses an index only under conditions Django's
  lookups do not meet, so a prefix is written as a range, `value >= 'ada' AND value <
  'adb'`, which any index on the value (or on `lower(value)`) serves.
- On PostgreSQL a range on text compares by the database's collation, where "a-c" can
  sort between "ab" and "ac"; `LIKE 'ada%'` is exact, and an index with the
  `text_pattern_ops` operator class (PrefixIndexed; Django adds one of its own for an
  indexed CharField, `varchar_pattern_ops`) serves it.

Names are matched lowercased, through an index on `lower(name)`; emails are stored
lowercased, phones in E.164.

Without statistics SQLite cannot tell a rare prefix from a common one: the caller says
which conditions an index should serve, and keeps the others off their indexes
(`indexed=False`).
"""
from __future__ import annotations

from django.db import connection
from django.db.models import CharField, F, Func, Q
from django.db.models.functions import Lower
from django.db.models.indexes import IndexExpression
from django.db.models.lookups import GreaterThanOrEqual, LessThan, StartsWith


class NotIndexed(Func):
    """SQLite's unary plus: the same value, but no index may serve the term.

    The documented way to steer SQLite's planner away from an index
    (https://sqlite.org/optoverview.html, "Disqualifying WHERE Clause Terms").
    """

    template = "+%(expressions)s"


class PrefixIndexed(Func):
    """An indexed expression as prefix search reads it: itself, with `text_pattern_ops` on PostgreSQL."""

    def as_sql(self, compiler, connection, **extra_context):
        return compiler.compile(self.source_expressions[0])

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"{sql} text_pattern_ops", params


# An operator class follows the parenthesized expression in CREATE INDEX, as an ordering
# does: declared a wrapper, as django.contrib.postgres declares its OpClass.
if PrefixIndexed not in IndexExpression.wrapper_classes:
    IndexExpression.register_wrappers(*IndexExpression.wrapper_classes, PrefixIndexed)


def following(prefix: str) -> str:
    """Return the first text after every text that starts with `prefix`: "ada" -> "adb"."""
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return following(prefix[:-1]) if len(prefix) > 1 else chr(0x10FFFF) * 2
    return prefix[:-1] + chr(last + 1)


def starts_with(field_name: str, prefix: str, *, lower: bool = False, indexed: bool = True) -> Q:
    """Return the condition "`field_name` (lowercased when `lower`) starts with `prefix`", as an index serves it.

    With `indexed` false, on SQLite, as no index serves it: the row is tested as it is
    read along another index. PostgreSQL's planner chooses from its statistics.
    """
    value = Lower(field_name) if lower else F(field_name)
    if connection.vendor == "postgresql":
        return Q(StartsWith(value, prefix))
    if not indexed:
        value = NotIndexed(value, output_field=CharField())
    return Q(GreaterThanOrEqual(value, prefix)) & Q(LessThan(value, following(prefix)))
