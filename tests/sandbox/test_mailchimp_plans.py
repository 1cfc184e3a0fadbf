"""The Mailchimp emulator's member list is served by an index in the order asked for, never sorted per page.

Mailchimp pages its members by offset; the emulator must cost a page its offset and its
rows, not a sort of the whole audience, or a full read of a large audience becomes
quadratic in the sandbox, and the sandbox, not Syncapp, is what a benchmark measures.
Checked on SQLite's query plan over the emulator's own schema, with and without the
statistics ANALYZE keeps, for the queries Syncapp's reader sends (sorted by last_changed,
with since/before_last_changed) and the list's default order.
"""
import sqlite3

import pytest

from sandbox.mailchimp import SCHEMA, members_page_queries

LIST = "list1"
BY_CHANGE = "last_changed ASC, seq ASC"
# (conditions, order, parameters before count and offset), as list_members builds them.
QUERIES = {
    "a full read": (["list_id = ?"], BY_CHANGE, [LIST]),
    "a delta read": (["list_id = ?", "last_changed > ?"], BY_CHANGE, [LIST, 1_100]),
    "one second's ties": (["list_id = ?", "last_changed > ?", "last_changed < ?"], BY_CHANGE, [LIST, 1_100, 1_102]),
    "the default order": (["list_id = ?"], "seq", [LIST]),
    "one status, default order": (["list_id = ?", "status = ?"], "seq", [LIST, "subscribed"]),
}


@pytest.fixture(params=[False, True], ids=["without statistics", "with statistics"])
def db(request):
    connection = sqlite3.connect(":memory:")
    connection.executescript(SCHEMA)
    connection.executemany(
        "INSERT INTO mailchimp_member (list_id, id, email_address, unique_email_id, contact_id, status, last_changed) "
        "VALUES (?, ?, ?, 'u', 'c', ?, ?)",
        [(LIST, f"h{n}", f"p{n}@example.com", "subscribed" if n % 5 else "unsubscribed", 1_000 + n // 20)
         for n in range(3_000)],
    )
    if request.param:
        connection.execute("ANALYZE")
    yield connection
    connection.close()


def plan(db, sql: str, params: list) -> str:
    return " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.parametrize("query", QUERIES)
def test_a_page_never_sorts_the_audience(db, query):
    conditions, order, params = QUERIES[query]
    count_sql, page_sql = members_page_queries(conditions, order)
    page_plan = plan(db, page_sql, [*params, 1000, 0])
    assert "TEMP B-TREE" not in page_plan, page_plan
    assert "INDEX" in page_plan or "PRIMARY KEY" in page_plan, page_plan
    assert "TEMP B-TREE" not in plan(db, count_sql, params)


def test_a_delta_page_holds_the_members_changed_since_in_that_order(db):
    conditions, order, params = QUERIES["a delta read"]
    _, page_sql = members_page_queries(conditions, order)
    rows = db.execute(page_sql.replace("SELECT ", "SELECT last_changed AS changed, ", 1), [*params, 5, 0]).fetchall()
    assert [row[0] for row in rows] == [1_101] * 5
