"""Task-queue entry points. Each takes ids, and calls a service."""
from __future__ import annotations

import logging

from syncapp.models import Sync, SyncRun
from syncapp.services.runs import SyncPaused, run_execute, run_execute_delivered, run_request, runs_recover

logger = logging.getLogger(__name__)


def run_execute_task(run_id: int) -> str:
    """Execute a requested run, or resume it if this task is delivered again after its worker died.

    A run a live worker holds, or a finished one, is left alone.
    """
    try:
        return run_execute_delivered(run_id=run_id).status
    except SyncRun.DoesNotExist:
        # Deleted with its sync while it waited in the queue: nothing to do, nothing to retry.
        logger.warning("Run %s no longer exists; nothing to execute.", run_id)
        return "missing"


def run_scheduled_task(sync_id: int) -> str:
    """Request and execute a schedule-triggered run of one sync."""
    sync = Sync.objects.filter(pk=sync_id).first()
    if sync is None:
        logger.warning("Scheduled sync %s no longer exists; nothing to run.", sync_id)
        return "missing"
    try:
        run, created = run_request(sync=sync, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False)
    except SyncPaused:
        return "paused"
    if not created:
        logger.info("Sync %s already has run %s under way; the schedule skips this turn.", sync.name, run.pk)
        return "skipped"
    return run_execute(run_id=run.pk).status


def runs_recover_task() -> str:
    """The watchdog: resume every run whose worker died, without waiting for its sync's schedule."""
    return f"{len(runs_recover())} resumed"
