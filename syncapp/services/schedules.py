"""Keeping each sync's task-queue schedule in step with its settings."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from syncapp import queue
from syncapp.engine.schedule import next_run_at
from syncapp.models import Sync

SCHEDULED_RUN_TASK = "syncapp.tasks.run_scheduled_task"
WATCHDOG_TASK = "syncapp.tasks.runs_recover_task"
WATCHDOG_SCHEDULE = "runs:watchdog"


def schedule_name(sync_id: int) -> str:
    return f"sync:{sync_id}"


def sync_schedule_save(*, sync: Sync) -> None:
    """Schedule `sync` by its cron expression, else every `schedule_minutes`; remove the schedule when off or paused."""
    name = schedule_name(sync.pk)
    if sync.paused or not (sync.schedule_cron or sync.schedule_minutes):
        queue.schedule_remove(name=name)
        return
    if sync.schedule_cron:
        # The scheduler evaluates cron expressions in the server's time zone.
        first = next_run_at(minutes=0, cron=sync.schedule_cron, now=timezone.localtime())
        queue.schedule_cron(name=name, func=SCHEDULED_RUN_TASK, args=(sync.pk,), cron=sync.schedule_cron.strip(),
                            next_run=first)
        return
    queue.schedule_every(name=name, func=SCHEDULED_RUN_TASK, args=(sync.pk,), minutes=sync.schedule_minutes)


def sync_next_run(*, sync: Sync) -> datetime | None:
    """Return when `sync` runs next by its schedule; None when off or paused.

    The scheduler's own row is the truth when it exists: it knows when the last tick
    fired (an interval counts from there, not from now). Without one (a sync saved
    before schedules were kept, or a page shown in a test without the queue) the time
    is computed from the settings.
    """
    if sync.paused:
        return None
    scheduled = queue.schedule_next_run(name=schedule_name(sync.pk))
    if scheduled is not None:
        return scheduled
    return next_run_at(minutes=sync.schedule_minutes, cron=sync.schedule_cron, now=timezone.localtime())


def sync_schedule_delete(*, sync: Sync) -> None:
    queue.schedule_remove(name=schedule_name(sync.pk))


def watchdog_schedule_ensure() -> None:
    """Run the watchdog every minute: it resumes runs whose worker died (runs.runs_recover).

    Idempotent: an unchanged schedule is left as it is.
    """
    queue.schedule_every(name=WATCHDOG_SCHEDULE, func=WATCHDOG_TASK, args=(), minutes=1)
