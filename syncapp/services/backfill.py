"""Backfills and full resyncs: runs that read every record again instead of the changes.

A mapping added or changed after the records were read (HubSpot `jobtitle` mapped to
the hub, and on to a Mailchimp merge field) fills nothing by itself: a delta read only
brings the records that change afterwards. A backfill reads again, in full, the
systems that read the affected hub fields (engine.backfill); each record then goes
through the same merge, consent rule and push as in any run, so a blank never
overwrites a value where the mapping says so, no opt-out becomes a subscription, and
only the records whose outgoing value changes are written.

One run per sync at a time: a backfill requested while a run is under way is kept on
the sync (`Sync.backfill_pending_fields`) and starts when that run ends; a backfill of
a paused sync waits the same way for its next run.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from audit.services import audit_record
from syncapp.models import Sync, SyncRun
from syncapp.services.locks import sync_locked
from syncapp.services.runs import run_request


def sync_has_read(*, sync: Sync) -> bool:
    """Return whether any system the sync reads has been read (holds a cursor).

    Until then a backfill is not needed: the sync's first run reads every record of
    every system anyway. Queuing one per mapping saved would start runs, and create
    records elsewhere, while the marketer is still building the mappings.
    """
    return sync.endpoints.filter(read=True).exclude(cursor="").exists()


def backfill_request(*, sync: Sync, hub_fields: Iterable[str], user) -> SyncRun | None:
    """Queue a backfill of `hub_fields` for every linked record; return its run, or None while it waits.

    `hub_fields` are backfill keys (engine.backfill): `hub_field@connection_id` for the
    system whose mapping changed (the editor's), a bare hub field for every system.

    Called after the mapping change is committed. Nothing is queued before the sync has
    read any system (see sync_has_read). When a run of the sync is under way,
    or the sync is paused, the fields are kept on the sync and read in full by the next
    run to start (queued as soon as the run under way ends). Audited either way.
    """
    fields = sorted({str(name) for name in hub_fields if name})
    if not fields or not sync_has_read(sync=sync):
        return None
    with transaction.atomic():
        locked = sync_locked(sync.pk)
        pending = sorted(set(locked.backfill_pending_fields or []) | set(fields))
        Sync.objects.filter(pk=sync.pk).update(backfill_pending_fields=pending)
        run = None
        if not locked.paused:
            # The run takes the pending fields when it starts (runs._start), these included.
            run, created = run_request(sync=locked, trigger=SyncRun.Trigger.BACKFILL, user=user,
                                       full_read=True, backfill_fields=pending)
            if not created:
                run = None
        if run is not None:
            outcome = f"run {run.pk} queued"
        elif locked.paused:
            outcome = "waiting: the sync is paused; its next run reads these fields in full"
        else:
            outcome = "waiting: it starts when the run under way ends"
        audit_record(action="sync.backfill_requested", obj=locked, actor=user, run_id=run.pk if run else None,
                     changes={"backfill_fields": [None, fields], "backfill": [None, outcome]})
    return run


class RunUnderWay(Exception):
    """Another run of the sync is under way; a full resync is asked for once it ends."""

    def __init__(self, run: SyncRun):
        super().__init__(f"Run {run.pk} of this sync is under way; ask for the full resync once it ends.")
        self.run = run


def full_resync_request(*, sync: Sync, user) -> SyncRun:
    """Queue a run that reads every record of every system again (audited with its trigger).

    Raise SyncPaused for a paused sync, RunUnderWay while another run is active.
    """
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.FULL, user=user, full_read=True)
    if not created:
        raise RunUnderWay(run)
    return run
