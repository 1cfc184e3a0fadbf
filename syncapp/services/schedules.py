"""Keeping each sync's task-queue schedule in step with its settings."""
from __future__ import annotations

from syncapp import queue
from syncapp.models import Sync

SCHEDULED_RUN_TASK = "syncapp.tasks.run_scheduled_task"
WATCHDOG_TASK = "syncapp.tasks.runs_recover_task"
WATCHDOG_SCHEDULE = "runs:watchdog"


def schedule_name(sync_id: int) -> str:
    return f"sync:{sync_id}"


def sync_schedule_save(*, sync: Sync) -> None:
    """Schedule `sync` every `schedule_minutes`; remove the schedule when off or paused."""
    name = schedule_name(sync.pk)
    if sync.paused or not sync.schedule_minutes:
        queue.schedule_remove(name=name)
        return
    queue.schedule_every(name=name, func=SCHEDULED_RUN_TASK, args=(sync.pk,), minutes=sync.schedule_minutes)


def sync_schedule_delete(*, sync: Sync) -> None:
    queue.schedule_remove(name=schedule_name(sync.pk))


def watchdog_schedule_ensure() -> None:
    """Run the watchdog every minute: it resumes runs whose worker died (runs.runs_recover).

    Idempotent: an unchanged schedule is left as it is.
    """
    queue.schedule_every(name=WATCHDOG_SCHEDULE, func=WATCHDOG_TASK, args=(), minutes=1)
