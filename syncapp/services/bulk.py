"""Bulk writes without the ORM's per-row expression building, one statement per table.

Django's `bulk_update` builds a CASE WHEN expression per row and field, and
`bulk_create` compiles every value of every row; together they took most of the time
of a 100,000-contact run. These helpers send plain parameterized statements, with each
column's value converted once by the cheapest converter that is still the field's own
(JSON and dates through the backend, plain values as they are).

Every write is one statement per table, whatever the number of rows. An `executemany`
would run, and on PostgreSQL parse and plan, one statement per row.
- SQLite: an INSERT with a row of values per object, an UPDATE joined to a list of
  values (`UPDATE ... FROM`, SQLite 3.33+), split only at the limit of parameters.
- PostgreSQL: one array per column, `unnest`ed into rows. The statement's text is the
  same whatever the number of rows, so it is short and psycopg converts it once and
  keeps it (a statement with a placeholder per value is parsed again in Python on
  every call once it is longer than psycopg's 4 KB cache limit, and that parsing cost
  more than the database's work).
"""
from __future__ import annotations

import operator
import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, router
from django.utils import timezone

# Field types whose Python value is already what every backend stores. Exact types
# only: a subclass (an encrypted field, say) may convert in ways these must not skip.
_PLAIN_FIELDS = frozenset({
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.PositiveIntegerField,
    models.BigIntegerField,
    models.ForeignKey,
})
# Parameters per statement where the database does not say: SQLite's old default.
_DEFAULT_MAX_PARAMS = 999
# PostgreSQL's protocol counts a statement's parameters in 16 bits.
_POSTGRESQL_MAX_PARAMS = 65_535
# SQLite's default limit since 3.32.
_SQLITE_MAX_PARAMS = 32_766


def _max_params(connection) -> int:
    """Return how many parameters one statement may carry on `connection`.

    SQLite's limit is a build option (32,766 by default since 3.32, 250,000 in
    Debian's build); Django assumes the old 999 for every SQLite. Asked of the
    connection, a page's rows go in one statement per table. Never more than the
    default of today's SQLite: the statement's text stays far below its length limit.
    """
    if connection.vendor == "postgresql":
        return _POSTGRESQL_MAX_PARAMS
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return min(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), _SQLITE_MAX_PARAMS)
    return _DEFAULT_MAX_PARAMS


def _chunks(rows: list[list[Any]], per_row: int, connection) -> list[tuple[int, int]]:
    """Return the (start, end) ranges of `rows` that fit one statement each."""
    per_statement = max(1, _max_params(connection) // max(1, per_row))
    return [(start, min(start + per_statement, len(rows))) for start in range(0, len(rows), per_statement)]


def _converter(field: models.Field, connection) -> Callable[[Any], Any]:
    if type(field) is models.DateTimeField:
        adapt = connection.ops.adapt_datetimefield_value
        last: list[Any] = [None, None]

        def adapt_datetime(value):
            # A batch mostly repeats one timestamp (its `now`): adapt it once.
            if value is not last[0]:
                last[0], last[1] = value, None if value is None else adapt(value)
            return last[1]

        return adapt_datetime
    if type(field) in _PLAIN_FIELDS:
        return lambda value: value
    return lambda value: field.get_db_prep_save(value, connection)


def _reader(field: models.Field, now) -> Callable[[models.Model], Any]:
    """Return how to read a column's value from an unsaved object.

    auto_now dates are `now` for the whole statement, set on the objects as `save()`
    would; a foreign key whose object was saved after being assigned takes that
    object's new id, as `save()` would.
    """
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        attname = field.attname

        def stamped(obj):
            setattr(obj, attname, now)
            return now

        return stamped
    if field.is_relation:
        attname = field.attname

        def related_id(obj):
            value = getattr(obj, attname)
            if value is None and isinstance(obj, models.Model) and field.is_cached(obj):
                related = field.get_cached_value(obj)
                value = related.pk if related is not None else None
            return value

        return related_id
    return operator.attrgetter(field.attname)


def _target(model: type[models.Model]):
    connection = connections[router.db_for_write(model)]
    return connection, connection.ops.quote_name


def bulk_update_rows(model: type[models.Model], objects: Sequence[Any], fields: Sequence[str]) -> None:
    """Write `fields` of each object to its row of `model`, by primary key, in one statement.

    The objects may be model instances or any objects with `pk` and attributes named
    like the fields' attnames (rows read with `values_list`); each row at most once.
    The new values are a list joined to the table by primary key (a common table
    expression, as both SQLite and PostgreSQL name its columns the same way); on
    PostgreSQL each value is cast to its column's type, as a list of parameters has none.
    """
    if not objects or not fields:
        return
    meta = model._meta
    connection, quote = _target(model)
    columns = [meta.get_field(name) for name in fields]
    converters = [(field.attname, _converter(field, connection)) for field in columns]
    rows = [[obj.pk] + [convert(getattr(obj, attname)) for attname, convert in converters] for obj in objects]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    if len(rows) == 1:
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {assignments} WHERE {pk} = %s", rows[0][1:] + rows[0][:1])
        return
    names = ["_pk"] + [f"_{number}" for number in range(len(columns))]
    assignments = ", ".join(f"{quote(field.column)} = _new.{name}" for field, name in zip(columns, names[1:],
                                                                                          strict=True))
    if connection.vendor == "postgresql":
        arrays = _arrays([meta.pk.rel_db_type(connection)] + [field.db_type(connection) for field in columns])
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS _new ({', '.join(names)}) "
                           f"WHERE {table}.{pk} = _new._pk", _transposed(rows, len(names)))
        return
    placeholders = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
    with connection.cursor() as cursor:
        for start, end in _chunks(rows, len(names), connection):
            chunk = rows[start:end]
            cursor.execute(
                f"WITH _new ({', '.join(names)}) AS (VALUES {', '.join([placeholders] * len(chunk))}) "
                f"UPDATE {table} SET {assignments} FROM _new WHERE {table}.{pk} = _new._pk",
                [value for row in chunk for value in row],
            )


def bulk_insert_rows(
    objects: Sequence[Any],
    *,
    set_ids: bool = False,
    model: type[models.Model] | None = None,
    now: datetime | None = None,
) -> None:
    """Insert unsaved objects, filling in auto_now dates (with `now`, by default the current time).

    The objects are instances of `model` (by default the first object's class), or plain
    objects with an attribute for each column's attname: building a model instance per
    row costs more than writing it, and the engine writes tens of thousands.

    With `set_ids` each object gets its new primary key (INSERT ... RETURNING, which
    SQLite 3.35+ and PostgreSQL answer in the order of the rows). Either way the rows go
    in one multi-row statement, split only at the database's limit of parameters.
    """
    if not objects:
        return
    model = model or type(objects[0])
    meta = model._meta
    connection, quote = _target(model)
    columns = [field for field in meta.local_concrete_fields if field is not meta.pk]
    now = now or timezone.now()
    readers = [_reader(field, now) for field in columns]
    converters = [_converter(field, connection) for field in columns]
    getters = list(zip(readers, converters, strict=True))
    rows = [[convert(read(obj)) for read, convert in getters] for obj in objects]
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in columns)}) "
    returning = f" RETURNING {quote(meta.pk.column)}" if set_ids else ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(f"_{number}" for number in range(len(columns)))
            arrays = _arrays(field.db_type(connection) for field in columns)
            # In the objects' order (the ordinality): ids follow it, as the audit chain needs.
            cursor.execute(f"{head}SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS _new ({names}, _n) "
                           f"ORDER BY _n{returning}", _transposed(rows, len(columns)))
            if set_ids:
                _ids_set(objects, cursor)
            return
        placeholders = f"({', '.join(['%s'] * len(columns))})"
        for start, end in _chunks(rows, len(columns), connection):
            chunk = rows[start:end]
            cursor.execute(head + "VALUES " + ", ".join([placeholders] * len(chunk)) + returning,
                           [value for row in chunk for value in row])
            if set_ids:
                _ids_set(objects[start:end], cursor)


def _ids_set(objects: Sequence[Any], cursor) -> None:
    """Give each object the id RETURNING answered for it (in the order of the rows)."""
    for obj, (pk,) in zip(objects, cursor.fetchall(), strict=True):
        obj.pk = pk
        if isinstance(obj, models.Model):
            obj._state.adding = False


def _arrays(types) -> str:
    """Return the placeholders of `unnest`'s arguments: one array per column, cast to the column's type.

    Without its length (varchar(200) is cast as varchar): an explicit cast to varchar(n)
    cuts a longer value silently, where the assignment to the column refuses it, as a
    plain INSERT or UPDATE does. A cut external id could link another record.
    """
    return ", ".join(f"%s::{_without_length(db_type)}[]" for db_type in types)


def _without_length(db_type: str) -> str:
    return re.sub(r"^varchar\(\d+\)$", "varchar", db_type.strip())


def _transposed(rows: list[list[Any]], width: int) -> list[list[Any]]:
    """Return the rows' values as one list per column."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
