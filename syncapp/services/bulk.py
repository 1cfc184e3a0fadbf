"""Bulk writes without the ORM's per-row expression building.

Django's `bulk_update` builds a CASE WHEN expression per row and field, and
`bulk_create` compiles every value of every row; together they took most of the time
of a 100,000-contact run. These helpers send plain parameterized statements, with each
column's value converted once by the cheapest converter that is still the field's own
(JSON and dates through the backend, plain values as they are).
"""
from __future__ import annotations

import operator
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
# SQLite's variable limit as Django assumes it: rows per multi-row statement follow.
_MAX_PARAMS = 999


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
    """Write `fields` of each object to its row of `model`, by primary key.

    The objects may be model instances or any objects with `pk` and attributes named
    like the fields' attnames (rows read with `values_list`).
    """
    if not objects or not fields:
        return
    meta = model._meta
    connection, quote = _target(model)
    columns = [meta.get_field(name) for name in fields]
    converters = [(field.attname, _converter(field, connection)) for field in columns]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    rows = [[convert(getattr(obj, attname)) for attname, convert in converters] + [obj.pk] for obj in objects]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


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

    With `set_ids` each object gets its new primary key (multi-row INSERT ... RETURNING,
    which SQLite 3.35+ and PostgreSQL answer in the order of the rows); without it one
    `executemany` does the work and the keys stay unset.
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
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in columns)}) VALUES "
    placeholders = f"({', '.join(['%s'] * len(columns))})"
    with connection.cursor() as cursor:
        if not set_ids:
            cursor.executemany(head + placeholders, rows)
            return
        per_statement = max(1, _MAX_PARAMS // len(columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            sql = head + ", ".join([placeholders] * len(chunk)) + f" RETURNING {quote(meta.pk.column)}"
            cursor.execute(sql, [value for row in chunk for value in row])
            for obj, (pk,) in zip(objects[start:start + per_statement], cursor.fetchall(), strict=False):
                obj.pk = pk
                obj._state.adding = False
