"""The ActiveCampaign emulator's contact list reads a page, not the account.

Syncapp lists contacts in id order, after an id (`id_greater`), and for a delta read
updated since a time (`filters[updated_after]`). Along the ids alone, a delta read that
finds few changes scans every contact after the cursor for each page (a quiet run read
the whole account); through the time index, a delta read of many changes sorts them all
for each page. The emulator counts the changes first (from the time index, as the
reply's total) and reads each page the cheaper way (`changes_are_few`). Checked on
SQLite's query plan over the emulator's own schema, with and without the statistics
ANALYZE keeps.
"""
import sqlite3

import pytest

from sandbox.activecampaign import SCHEMA, changes_are_few, contacts_page_query

DELTA = "WHERE c.id > ? AND c.udate >= ?"
FULL = "WHERE c.id > ?"


@pytest.fixture(params=[False, True], ids=["without statistics", "with statistics"])
def db(request):
    connection = sqlite3.connect(":memory:")
    connection.executescript(SCHEMA)
    # 3,000 contacts; the last 30 changed at 2,000, the others long before.
    connection.executemany(
        "INSERT INTO activecampaign_contact (email, email_key, cdate, udate) VALUES (?, ?, 1000, ?)",
        [(f"p{n}@example.com", f"p{n}@example.com", 2_000 if n >= 2_970 else 1_000 + n % 7) for n in range(3_000)],
    )
    if request.param:
        connection.execute("ANALYZE")
    yield connection
    connection.close()


def plan(db, sql: str, params: list) -> str:
    return " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_few_changes_are_read_through_the_time_index(db):
    sql = contacts_page_query("c.id", DELTA, "c.id ASC", through="changes")
    found = plan(db, sql, [0, 2_000, 100, 0])
    assert "INDEX activecampaign_contact_udate (udate>?)" in found, found


def test_many_changes_are_read_along_the_ids_without_a_sort(db):
    sql = contacts_page_query("c.id", DELTA, "c.id ASC", through="ids")
    found = plan(db, sql, [0, 1_000, 100, 0])
    assert "INTEGER PRIMARY KEY" in found and "TEMP B-TREE" not in found, found


def test_a_full_read_walks_the_ids_from_the_cursor(db):
    found = plan(db, contacts_page_query("c.id", FULL, "c.id ASC"), [500, 100, 0])
    assert "INTEGER PRIMARY KEY" in found and "TEMP B-TREE" not in found, found


def test_the_count_of_changes_is_read_from_the_time_index(db):
    found = plan(db, f"SELECT COUNT(*) FROM activecampaign_contact c {DELTA}", [0, 2_000])
    assert "COVERING INDEX activecampaign_contact_udate" in found, found


@pytest.mark.parametrize("through", ["changes", "ids"])
def test_both_ways_give_the_same_page(db, through):
    sql = contacts_page_query("c.id", DELTA, "c.id ASC", through=through)
    assert [row[0] for row in db.execute(sql, [2_975, 2_000, 3, 0])] == [2_976, 2_977, 2_978]


def test_a_quiet_read_goes_through_the_index_and_a_bulk_change_along_the_ids():
    assert changes_are_few(0, limit=100, contacts=1_000_000)
    assert changes_are_few(9_000, limit=100, contacts=1_000_000)
    assert not changes_are_few(250_000, limit=100, contacts=1_000_000)
    assert not changes_are_few(3_000, limit=100, contacts=3_000)
