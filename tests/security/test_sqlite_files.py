"""The SQLite database and its WAL files are readable by their owner only.

They hold every contact and the encrypted credentials; other local users must not read
them, whatever the umask of the process that created them.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.db.utils import ConnectionHandler

REPO = Path(__file__).resolve().parent.parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


@pytest.fixture
def open_umask():
    """Create files readable by everyone, as the usual umask of 022 does."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def sqlite_connection(django_db_blocker):
    """Return a function opening a database at a path, configured like the app's SQLite database."""
    opened = []

    def connect(path: Path):
        handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path),
                                                 "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}})
        opened.append(handler["default"])
        return opened[-1]

    with django_db_blocker.unblock():
        yield connect
        for connection in opened:
            connection.close()


def test_a_new_database_and_its_wal_files_are_private(tmp_path, open_umask, sqlite_connection):
    path = tmp_path / "app.sqlite3"

    with sqlite_connection(path).cursor() as cursor:
        cursor.execute("CREATE TABLE contact (email TEXT)")
        cursor.execute("INSERT INTO contact VALUES ('ann@example.com')")

    assert all(file.exists() for file in database_files(path)), "expected a database in WAL mode"
    assert {file.name: mode(file) for file in database_files(path)} == {
        file.name: 0o600 for file in database_files(path)
    }


def test_an_existing_database_readable_by_others_is_made_private_when_opened(tmp_path, open_umask,
                                                                             sqlite_connection):
    path = tmp_path / "app.sqlite3"
    path.touch()
    path.chmod(0o644)

    sqlite_connection(path).ensure_connection()

    assert mode(path) == 0o600


def test_migrate_creates_a_private_database(tmp_path):
    path = tmp_path / "syncapp.sqlite3"
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "DJANGO_SETTINGS_MODULE": "syncapp.settings"}
    environment.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=environment,
                            capture_output=True, text=True, timeout=300, umask=0o022)

    assert result.returncode == 0, result.stderr
    assert mode(path) == 0o600
    for leftover in database_files(path)[1:]:
        assert not leftover.exists() or mode(leftover) == 0o600
