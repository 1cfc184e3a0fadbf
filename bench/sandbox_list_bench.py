"""The HubSpot emulator's list endpoint: a full read, page by page, against the plain query.

Issue 12 found the sandbox's HubSpot list query sorting the whole table on every page
(SQLite took the (archived, modified_ms, id) index for the archived test, then sorted by
id): a full read was quadratic in the emulator. `sandbox.hubspot.LIST_PAGE` walks the
primary key instead. This walks every page of N contacts (one in ten archived) with
both queries on the emulator's own schema, in a file database like the sandbox's, and
prints the seconds of each and their ratio; the plain query is the baseline, measured
in the same run.

    python bench/sandbox_list_bench.py --contacts 50000 100000 300000

`--activecampaign` times the ActiveCampaign emulator's delta read instead (id order,
after an id, updated since a time, 100 a page, as Syncapp's reader asks): over N
contacts, a quiet read (nothing changed since) and a read after a bulk change of a
quarter of them, each with SQLite's own plan (the baseline: along the ids) and with the
plan the emulator picks (`sandbox.activecampaign.changes_are_few`).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.activecampaign import SCHEMA as ACTIVECAMPAIGN_SCHEMA  # noqa: E402
from sandbox.activecampaign import changes_are_few, contacts_page_query  # noqa: E402
from sandbox.hubspot import LIST_PAGE, HubSpotAPI  # noqa: E402

PLAIN = LIST_PAGE.replace("+archived", "archived")
PAGE = 100


def database(path: str, contacts: int) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.executescript(HubSpotAPI.schema)
    db.executemany(
        "INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms, archived) VALUES (?, ?, ?, ?, ?)",
        ((f"p{n}@example.com", '{"firstname": "P"}', n, n, int(n % 10 == 0)) for n in range(contacts)),
    )
    db.commit()
    return db


def full_read(db: sqlite3.Connection, sql: str) -> tuple[float, int]:
    start, after, rows = time.perf_counter(), 0, 0
    while True:
        page = db.execute(sql, (0, after, PAGE + 1)).fetchall()
        rows += min(len(page), PAGE)
        if len(page) <= PAGE:
            return time.perf_counter() - start, rows
        after = page[PAGE][0]


ACTIVECAMPAIGN_DELTA = "WHERE c.id > ? AND c.udate >= ?"
ACTIVECAMPAIGN_COUNT = f"SELECT COUNT(*) FROM activecampaign_contact c {ACTIVECAMPAIGN_DELTA}"


def activecampaign_database(path: str, contacts: int) -> sqlite3.Connection:
    """N contacts, updated long ago, but a quarter of them (every fourth) updated at 2,000 (a bulk change)."""
    db = sqlite3.connect(path)
    db.executescript(ACTIVECAMPAIGN_SCHEMA)
    db.executemany(
        "INSERT INTO activecampaign_contact (email, email_key, cdate, udate) VALUES (?, ?, 1000, ?)",
        ((f"p{n}@example.com", f"p{n}@example.com", 2_000 if n % 4 == 0 else 1_000) for n in range(contacts)),
    )
    db.commit()
    return db


def delta_read(db: sqlite3.Connection, since: int, through: str | None) -> tuple[float, int]:
    """Read every page of the contacts updated since `since`, as the emulator does (count, then page)."""
    start, after, rows = time.perf_counter(), 0, 0
    (last_id,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM activecampaign_contact").fetchone()
    while True:
        (total,) = db.execute(ACTIVECAMPAIGN_COUNT, (after, since)).fetchone()
        way = through
        if way == "chosen":
            way = "changes" if changes_are_few(total, limit=PAGE, contacts=last_id) else "ids"
        sql = contacts_page_query("c.id", ACTIVECAMPAIGN_DELTA, "c.id ASC", through=way)
        page = [row[0] for row in db.execute(sql, (after, since, PAGE, 0))]
        rows += len(page)
        if len(page) < PAGE:
            return time.perf_counter() - start, rows
        after = page[-1]


def main_activecampaign(contacts_list: list[int]) -> None:
    print(f"{'contacts':>10} {'read':>6} {'changed':>8} {'ids s':>8} {'chosen s':>9} {'faster':>7}")
    for contacts in contacts_list:
        with tempfile.TemporaryDirectory() as directory:
            db = activecampaign_database(os.path.join(directory, "sandbox.sqlite3"), contacts)
            for label, since in (("quiet", 3_000), ("bulk", 2_000)):
                plain, read_plain = delta_read(db, since, None)
                chosen, read_chosen = delta_read(db, since, "chosen")
                assert read_plain == read_chosen, (read_plain, read_chosen)
                print(f"{contacts:>10,} {label:>6} {read_plain:>8,} {plain:>8.3f} {chosen:>9.3f} "
                      f"{plain / chosen:>6.1f}x")
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--activecampaign", action="store_true", help="time ActiveCampaign's delta reads instead")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}; sqlite {sqlite3.sqlite_version}")
    if args.activecampaign:
        main_activecampaign(args.contacts)
        return
    print(f"{'contacts':>10} {'plain s':>9} {'LIST_PAGE s':>12} {'faster':>7}")
    for contacts in args.contacts:
        with tempfile.TemporaryDirectory() as directory:
            db = database(os.path.join(directory, "sandbox.sqlite3"), contacts)
            plain, read_plain = full_read(db, PLAIN)
            walked, read_walked = full_read(db, LIST_PAGE)
            assert read_plain == read_walked, (read_plain, read_walked)
            db.close()
        print(f"{contacts:>10,} {plain:>9.2f} {walked:>12.2f} {plain / walked:>6.1f}x")


if __name__ == "__main__":
    main()
