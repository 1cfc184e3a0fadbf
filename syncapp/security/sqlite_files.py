"""The SQLite database and its WAL files, readable by their owner only.

They hold every contact and the encrypted credentials. SQLite creates them with the
process's umask (usually readable by every local user); the -wal and -shm files it
creates later take the database file's permissions, so tightening the database file
when a connection opens keeps all three private from then on.
"""
from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")


def database_files_private(sender, connection, **kwargs) -> None:
    """Make the files of a SQLite database that a connection just opened readable by their owner only.

    Connected to Django's `connection_created` signal.
    """
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    path = Path(connection.settings_dict["NAME"])
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(PRIVATE)
        except FileNotFoundError:
            continue
        except PermissionError:
            # Owned by another user (a shared deployment); not ours to change.
            logger.warning("Cannot make %s readable by its owner only: it belongs to another user.", file)
