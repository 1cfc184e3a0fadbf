"""What the pages over large tables may ask of the database: the queries of a request, and their plans.

Shared by the tests of the contact list and of the admin's lists (tests/syncapp/
test_page_queries.py). A query "touches" a large table when it names one of
LARGE_TABLES: contacts and their links, runs, record errors and audit events grow with
the data; users, syncs, connections and mappings with the team.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

LARGE_TABLES = ("syncapp_contact", "syncapp_recordlink", "syncapp_syncrun", "syncapp_recorderror",
                "audit_auditevent")


@dataclass
class Request:
    status: int
    html: str
    queries: list[str]


def request(client, url: str, params: dict | None = None) -> Request:
    """Request `url` and return its status, its HTML and the SQL of every query it ran."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    return Request(response.status_code, response.content.decode(), [query["sql"] for query in captured])


def touches_large_table(sql: str) -> bool:
    return any(f'"{table}"' in sql for table in LARGE_TABLES)


def full_counts(queries: list[str]) -> list[str]:
    """Return the queries that count rows of a large table without a LIMIT on what they count."""
    return [sql for sql in queries if "COUNT(" in sql.upper() and touches_large_table(sql) and "LIMIT" not in sql]


def distinct_scans(queries: list[str]) -> list[str]:
    """Return the SELECT DISTINCT queries over a large table (a date hierarchy, a stock list filter)."""
    return [sql for sql in queries if "SELECT DISTINCT" in sql.upper() and touches_large_table(sql)]


def plan(sql: str, *, may_sort: bool = False) -> list[str]:
    """Return the query plan of `sql` as lines: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN.

    On PostgreSQL sequential scans and sorts (unless the query `may_sort` its matches,
    as a search does) are turned off for the EXPLAIN: on a test's few rows a scan, or a
    sort of the few matches, is the cheapest plan whatever the indexes, and what is asked
    here is whether an index can serve the query at all. The planner still scans or
    sorts where no index can.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            if not may_sort:
                cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}")
            lines = [row[0] for row in cursor.fetchall()]
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_sort")
            return lines
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return [row[-1] for row in cursor.fetchall()]


def partial_indexes() -> set[str]:
    """Return the names of the large tables' partial indexes: a walk along one reads only the rows it holds."""
    return {index.name for model in apps.get_models() if model._meta.db_table in LARGE_TABLES
            for index in model._meta.indexes if index.condition is not None}


def filtering_scans(sql: str, lines: list[str]) -> list[str]:
    """Return the plan's lines that walk a large table to filter it, rather than look up what the filter wants.

    A walk along a table's primary key or an index, with no condition on that table, is
    how a first page is read: in order, stopping after the page (LIMIT). With a
    condition on the table, the walk reads every row until enough match: as many as
    the table holds when few do. A walk along a partial index reads only the rows its
    condition holds.
    """
    _, _, where = sql.partition(" WHERE ")
    filtered = [table for table in LARGE_TABLES if f'"{table}".' in where]
    if connection.vendor == "postgresql":
        return [line for table in filtered for line in _postgresql_filtering_scans(table, lines)]
    partial = "|".join(partial_indexes())
    return [line for table in filtered for line in lines
            if re.search(rf"\bSCAN {table}\b", line) and not re.search(rf"USING (COVERING )?INDEX ({partial})\b", line)]


def _postgresql_filtering_scans(table: str, lines: list[str]) -> list[str]:
    """Return the scans of `table` that read it whole (Seq Scan), or walk an index with a Filter and no Index Cond."""
    found = []
    for number, line in enumerate(lines):
        # A Bitmap Heap Scan reads the rows its Bitmap Index Scans found.
        if not re.search(rf"Scan (Backward )?(using \w+ )?on {table}\b", line) or "Bitmap Heap Scan" in line:
            continue
        if "Seq Scan" in line:
            found.append(line)
            continue
        depth = len(line) - len(line.lstrip())
        details = []
        for detail in lines[number + 1:]:
            if "->" in detail or len(detail) - len(detail.lstrip()) <= depth:
                break
            details.append(detail.strip())
        if any(detail.startswith("Filter:") for detail in details) and not any(
                detail.startswith(("Index Cond:", "Recheck Cond:")) for detail in details):
            found.append(line)
    return found


def sorts(lines: list[str]) -> list[str]:
    """Return the plan's lines that sort rows: no index gave them in the order asked."""
    if connection.vendor == "postgresql":
        return [line for line in lines if re.search(r"\bSort  \(", line)]
    return [line for line in lines if "TEMP B-TREE FOR ORDER BY" in line]
