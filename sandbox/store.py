"""The sandbox's own SQLite storage: one file in the data directory, one connection per thread.

The emulated providers keep their records here, never in the app's database. Writers
take the lock up front (`BEGIN IMMEDIATE`) so concurrent requests queue on the busy
timeout; WAL lets readers go on while one request writes.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS hubspot_contact (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The trimmed, lowercased email: HubSpot's uniqueness key. NULL without an email.
    email_key TEXT,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_ms INTEGER
);
CREATE INDEX IF NOT EXISTS hubspot_contact_modified ON hubspot_contact (archived, modified_ms, id);
CREATE INDEX IF NOT EXISTS hubspot_contact_email ON hubspot_contact (email_key);

CREATE TABLE IF NOT EXISTS hubspot_gdpr_deleted (
    email_key TEXT PRIMARY KEY,
    contact_id INTEGER,
    deleted_ms INTEGER NOT NULL
);

-- Addresses unsubscribed from all email: HubSpot ties the status to the address, so
-- a contact created with it later is opted out too.
CREATE TABLE IF NOT EXISTS hubspot_email_optout (
    email_key TEXT PRIMARY KEY,
    opted_out_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS mailchimp_member (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id TEXT NOT NULL,
    id TEXT NOT NULL,
    email_address TEXT NOT NULL,
    unique_email_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    status TEXT NOT NULL,
    email_type TEXT NOT NULL DEFAULT 'html',
    merge_fields TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    language TEXT NOT NULL DEFAULT '',
    vip INTEGER NOT NULL DEFAULT 0,
    ip_signup TEXT NOT NULL DEFAULT '',
    timestamp_signup TEXT NOT NULL DEFAULT '',
    ip_opt TEXT NOT NULL DEFAULT '',
    timestamp_opt TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'API - Generic',
    last_changed INTEGER NOT NULL,
    UNIQUE (list_id, id)
);
CREATE INDEX IF NOT EXISTS mailchimp_member_changed ON mailchimp_member (list_id, last_changed, seq);
CREATE INDEX IF NOT EXISTS mailchimp_member_status ON mailchimp_member (list_id, status, seq);

CREATE TABLE IF NOT EXISTS mailchimp_forgotten (
    list_id TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (list_id, id)
);

CREATE TABLE IF NOT EXISTS mailchimp_merge_field (
    list_id TEXT NOT NULL,
    merge_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    required INTEGER NOT NULL DEFAULT 0,
    default_value TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 1,
    display_order INTEGER NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    help_text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (list_id, merge_id),
    UNIQUE (list_id, tag)
);

CREATE TABLE IF NOT EXISTS mailchimp_tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (list_id, name)
);
"""

DATA_TABLES = (
    "hubspot_contact",
    "hubspot_gdpr_deleted",
    "hubspot_email_optout",
    "mailchimp_member",
    "mailchimp_forgotten",
    "mailchimp_merge_field",
    "mailchimp_tag",
)


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

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._functions: dict[str, tuple[int, Callable]] = {}
        connection = self.connection()
        connection.executescript(SCHEMA)
        (last_ms,) = connection.execute("SELECT COALESCE(MAX(modified_ms), 0) FROM hubspot_contact").fetchone()
        self.clock = Clock(last_ms)

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

    def wipe(self, connection: sqlite3.Connection) -> None:
        """Delete every record of both providers (inside the caller's transaction)."""
        for table in DATA_TABLES:
            # Table names come from the constant above, never from a request.
            connection.execute(f"DELETE FROM {table}")
        # No change is left to come after: seeds may be stamped anywhere in the past year
        # again, rather than crowd into the moments after the last change before the wipe.
        self.clock = Clock()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
