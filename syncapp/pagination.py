"""Counting and paging over tables of millions of rows without reading all of them.

A full COUNT(*) reads every row (or every entry of an index) that matches, and an OFFSET
walks every row before the page: both grow with the table. Pages here count at most
COUNT_CAP + 1 rows, estimate the rest from the database's statistics, and page by keyset.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

# Beyond this many rows a page says "about" (an estimate) or "more than", not a number.
COUNT_CAP = 10_000


def capped_count(queryset: QuerySet, cap: int = COUNT_CAP) -> int:
    """Return how many rows `queryset` holds, reading at most `cap` + 1 of them."""
    return queryset.order_by()[: cap + 1].count()


def estimated_rows(model: type[Model]) -> int | None:
    """Return the table's row count as the database's statistics have it, or None without statistics.

    PostgreSQL keeps it in pg_class (autovacuum's ANALYZE); SQLite only after ANALYZE
    (sqlite_stat1, the first number of an index's entry).
    """
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
            row = cursor.fetchone()
            return row[0] if row and row[0] >= 0 else None
        if connection.vendor == "sqlite":
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
            if cursor.fetchone() is None:
                return None
            cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s LIMIT 1", [table])
            row = cursor.fetchone()
            return int(row[0].split()[0]) if row else None
    return None


@dataclass(frozen=True)
class RowCount:
    """How many rows a page's query holds: exact up to COUNT_CAP, then estimated or only bounded."""

    value: int
    exact: bool
    estimated: bool = False

    def __str__(self) -> str:
        if self.exact:
            return f"{self.value:,}"
        if self.estimated:
            return f"about {self.value:,}"
        return f"more than {self.value:,}"


def row_count(queryset: QuerySet, *, filtered: bool, cap: int | None = None) -> RowCount:
    """Count `queryset` up to `cap` (COUNT_CAP); past it, estimate an unfiltered table, or say only that it is more."""
    cap = COUNT_CAP if cap is None else cap
    counted = capped_count(queryset, cap)
    if counted <= cap:
        return RowCount(counted, exact=True)
    estimate = None if filtered else estimated_rows(queryset.model)
    if estimate is not None and estimate > cap:
        return RowCount(estimate, exact=False, estimated=True)
    return RowCount(cap, exact=False)


class CappedCountPaginator(Paginator):
    """The admin's paginator, counting at most COUNT_CAP + 1 rows.

    The admin pages by OFFSET: capping the count also caps how deep a page can be asked
    for, so no page walks more than COUNT_CAP rows. Past the cap, the admin's pager says
    "more than" (templates/admin/pagination.html); the app's own pages go further by keyset.
    """

    cap = COUNT_CAP

    @cached_property
    def _counted(self) -> int:
        return capped_count(self.object_list, self.cap)

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def count_is_capped(self) -> bool:
        return self._counted > self.cap


def distinct_values(model: type[Model], field_name: str) -> list:
    """Return a column's distinct non-null values, sorted, by skipping through an index that starts with it.

    One index lookup per value rather than a scan of every row, as SELECT DISTINCT would
    do: a few dozen lookups for a million rows (a "loose index scan").
    """
    table = connection.ops.quote_name(model._meta.db_table)
    name = connection.ops.quote_name(model._meta.get_field(field_name).column)
    sql = f"""
        WITH RECURSIVE seen(value) AS (
            SELECT MIN({name}) FROM {table}
            UNION ALL
            SELECT (SELECT MIN({name}) FROM {table} WHERE {name} > seen.value) FROM seen WHERE seen.value IS NOT NULL
        )
        SELECT value FROM seen WHERE value IS NOT NULL
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [value for (value,) in cursor.fetchall()]
