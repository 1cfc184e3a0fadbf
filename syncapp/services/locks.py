"""The row locks that serialize work on one sync: the sync's row first, then its run's.

FOR NO KEY UPDATE rather than FOR UPDATE. The rows a run's pages insert (pending marks,
conflicts, record errors) reference the sync and the run, and on PostgreSQL each insert
takes a key-share lock on the rows it references, which FOR UPDATE excludes: a request
for a run that held the sync and waited for the run's row deadlocked with a page that
held the run's row and inserted pending marks (found by bench/scaleout_bench.py). FOR NO
KEY UPDATE still excludes every other holder of these locks, and no insert waits for it.
Deleting a sync (services.syncs.sync_delete) is the one change that takes FOR UPDATE.
SQLite has no row locks: its single writer serializes all of this.
"""
from __future__ import annotations

from django.db.models import QuerySet

from syncapp.models import Sync, SyncRun


def sync_lock(sync_id: int) -> None:
    """Lock the sync's row until the transaction ends, if the sync is still there."""
    _syncs_locked().filter(pk=sync_id).first()


def sync_locked(sync_id: int) -> Sync:
    """Lock the sync's row until the transaction ends and return it; Sync.DoesNotExist when deleted."""
    return _syncs_locked().get(pk=sync_id)


def _syncs_locked() -> QuerySet[Sync]:
    return Sync.objects.select_for_update(no_key=True)


def runs_locked() -> QuerySet[SyncRun]:
    """Return the runs, each row fetched from it locked until the transaction ends (sync first)."""
    return SyncRun.objects.select_for_update(no_key=True)
