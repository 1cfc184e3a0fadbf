"""The sandbox's own SQLite storage: one file in the data directory, one connection per thread.

The emulated providers keep their records here, never in the app's database, in the
tables their schemas create (`EmulatedAPI.schema`). Writers take the lock up front
(`BEGIN IMMEDIATE`) so concurrent requests queue on the busy timeout; WAL lets readers
go on while one request writes.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# The store's own tables; each emulator brings its schema (`EmulatedAPI.schema`).
SCHEMA = """
-- Named counters that outlive a restart but not a reset (the seeder's person numbers).
CREATE TABLE IF NOT EXISTS sandbox_counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
# Keys looked up per query: SQLite allows 32,766 parameters.
KEYS_PER_QUERY = 10_000


def lookup(connection: sqlite3.Connection, query: str, keys: list) -> list[tuple]:
    """Run `query` over `keys` a chunk at a time ("{marks}" stands for a chunk's placeholders)."""
    rows: list[tuple] = []
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start:start + KEYS_PER_QUERY]
        rows += connection.execute(query.format(marks=", ".join("?" * len(chunk))), chunk).fetchall()
    return rows


class Clock:
    """Hand out strictly increasing millisecond timestamps, never behind the wall clock.

    Delta cursors compare modification times: two changes must never share one, and a
    change committed later must never carry an earlier time. Callers tick inside their
    write transaction, which serializes them.
    """

    def __init__(self, last_ms: int = 0):
        self._last_ms = last_ms
        self._lock = threading.Lock()

    def tick(self, count: int = 1) -> int:
        """Reserve `count` consecutive timestamps and return the first."""
        with self._lock:
            first = max(int(time.time() * 1000), self._last_ms + 1)
            self._last_ms = first + count - 1
            return first

    @property
    def last_ms(self) -> int:
        """The latest timestamp handed out so far."""
        with self._lock:
            return self._last_ms

    def advance_to(self, last_ms: int) -> None:
        """Never hand out a timestamp at or before `last_ms` (after seeding)."""
        with self._lock:
            self._last_ms = max(self._last_ms, last_ms)


class Store:
    """The sandbox database: schema, per-thread connections, transactions."""

    def __init__(self, path: Path, schemas: Iterable[str] = ()):
        """Open (or create) the database at `path` and create the tables of `schemas` it lacks.

        The clock starts from the wall clock: an emulator whose stored records carry
        clock times moves it past them (`Clock.advance_to`) when it starts.
        """
        self.path = path
        self._local = threading.local()
        self._functions: dict[str, tuple[int, Callable]] = {}
        connection = self.connection()
        for schema in (SCHEMA, *schemas):
            connection.executescript(schema)
        self.clock = Clock()

    def connection(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # Autocommit mode: transactions are opened explicitly by read() and write().
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            for name, (arguments, function) in self._functions.items():
                connection.create_function(name, arguments, function, deterministic=True)
            self._local.connection = connection
        return connection

    def add_function(self, name: str, arguments: int, function: Callable) -> None:
        """Make a Python function callable from SQL on every connection."""
        self._functions[name] = (arguments, function)
        self.connection().create_function(name, arguments, function, deterministic=True)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Run the block's queries against one consistent snapshot."""
        connection = self.connection()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction, rolled back if it raises."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def wipe(self, connection: sqlite3.Connection, tables: Iterable[str]) -> None:
        """Delete every row of `tables` and the counters (inside the caller's transaction)."""
        for table in (*tables, "sandbox_counter"):
            # Table names come from the emulators' schemas, never from a request.
            connection.execute(f"DELETE FROM {table}")
        # No change is left to come after: seeds may be stamped anywhere in the past year
        # again, rather than crowd into the moments after the last change before the wipe.
        self.clock = Clock()

    @staticmethod
    def take(connection: sqlite3.Connection, counter: str, count: int) -> int:
        """Reserve the next `count` numbers of a counter (from 1; inside the caller's write
        transaction) and return the first."""
        (last,) = connection.execute(
            "INSERT INTO sandbox_counter (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (counter, count),
        ).fetchone()
        return last - count + 1

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
