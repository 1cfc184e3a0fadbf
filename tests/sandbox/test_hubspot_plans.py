"""The HubSpot emulator's list endpoint walks its table in id order and stops after a page.

HubSpot pages its contact list by id; the emulator must cost a page, not the whole table,
per request, or a full read of a large account becomes quadratic in the sandbox and the
sandbox, not Syncapp, is what a benchmark measures. Checked on SQLite's query plan over
the emulator's own schema, with and without the statistics ANALYZE keeps.
"""
import sqlite3

import pytest

from sandbox.hubspot import LIST_PAGE, HubSpotAPI


@pytest.fixture
def db():
    connection = sqlite3.connect(":memory:")
    connection.executescript(HubSpotAPI.schema)
    yield connection
    connection.close()


def plan(db) -> str:
    return " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {LIST_PAGE}", (0, 0, 101)))


def fill(db, contacts: int, archived_every: int) -> None:
    db.executemany(
        "INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms, archived) "
        "VALUES (?, '{}', ?, ?, ?)",
        [(f"p{n}@example.com", n, n, int(n % archived_every == 0)) for n in range(contacts)],
    )


def test_a_page_is_read_along_the_primary_key_without_sorting_the_table(db):
    assert "INTEGER PRIMARY KEY" in plan(db) and "TEMP B-TREE" not in plan(db)


def test_statistics_do_not_change_the_plan(db):
    fill(db, 2_000, archived_every=10)
    db.execute("ANALYZE")
    assert "INTEGER PRIMARY KEY" in plan(db) and "TEMP B-TREE" not in plan(db)


def test_the_page_holds_the_unarchived_contacts_from_the_cursor_in_id_order(db):
    fill(db, 50, archived_every=3)
    ids = [row[0] for row in db.execute(LIST_PAGE, (0, 10, 5))]
    assert ids == [11, 12, 14, 15, 17]  # ids 1, 4, 7, 10, 13... are archived
    archived = [row[0] for row in db.execute(LIST_PAGE, (1, 0, 3))]
    assert archived == [1, 4, 7]
