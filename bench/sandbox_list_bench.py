"""The HubSpot emulator's list endpoint: a full read, page by page, against the plain query.

Issue 12 found the sandbox's HubSpot list query sorting the whole table on every page
(SQLite took the (archived, modified_ms, id) index for the archived test, then sorted by
id): a full read was quadratic in the emulator. `sandbox.hubspot.LIST_PAGE` walks the
primary key instead. This walks every page of N contacts (one in ten archived) with
both queries on the emulator's own schema, in a file database like the sandbox's, and
prints the seconds of each and their ratio; the plain query is the baseline, measured
in the same run.

    python bench/sandbox_list_bench.py --contacts 50000 100000 300000
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, nargs="+", default=[50_000, 100_000])
    args = parser.parse_args()
    print(f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}; sqlite {sqlite3.sqlite_version}")
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
