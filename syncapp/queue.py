"""The one place that knows the task queue is django-q2.

Services enqueue tasks and keep schedules through these functions, by the dotted path
of a function in `syncapp.tasks`; swapping the queue touches this module only.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

# django-q2 keeps a schedule's interval in a small integer column.
MAX_SCHEDULE_MINUTES = 32767


def enqueue(func: str, *args: int | str, task_name: str = "") -> str:
    """Queue `func(*args)` for a worker; return the task id.

    Call it from `transaction.on_commit`: a worker must never pick up a task whose rows
    are not committed yet.
    """
    options = {"task_name": task_name} if task_name else {}
    return async_task(func, *args, q_options=options)


def schedule_every(*, name: str, func: str, args: tuple[int | str, ...], minutes: int) -> None:
    """Create or update the schedule `name`: run `func(*args)` every `minutes` minutes.

    The first run comes one interval from now; changing the interval restarts it.
    """
    if not 1 <= minutes <= MAX_SCHEDULE_MINUTES:
        raise ValueError(f"a schedule interval must be between 1 and {MAX_SCHEDULE_MINUTES} minutes, not {minutes}")
    _schedule_put(
        name=name, func=func, args=args, schedule_type=Schedule.MINUTES, minutes=minutes, cron=None,
        next_run=timezone.now() + timedelta(minutes=minutes),
    )


def schedule_cron(*, name: str, func: str, args: tuple[int | str, ...], cron: str, next_run: datetime) -> None:
    """Create or update the schedule `name`: run `func(*args)` at the times of `cron`.

    `next_run` is the first time the expression matches (syncapp.engine.schedule.next_run_at):
    django-q2 computes it itself only when it creates the row, not when the expression
    of an existing row changes.
    """
    _schedule_put(
        name=name, func=func, args=args, schedule_type=Schedule.CRON, minutes=None, cron=cron, next_run=next_run
    )


def _schedule_put(
    *, name: str, func: str, args: tuple[int | str, ...], schedule_type: str, minutes: int | None, cron: str | None,
    next_run: datetime,
) -> None:
    """Write the schedule row unless it already says the same: rewriting it would move its next run."""
    args_text = repr(tuple(args))
    existing = Schedule.objects.filter(name=name).first()
    if existing and (existing.func, existing.args, existing.schedule_type, existing.minutes, existing.cron) == (
        func, args_text, schedule_type, minutes, cron
    ):
        return
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "args": args_text,
            "schedule_type": schedule_type,
            "cron": cron,
            "minutes": minutes,
            "repeats": -1,
            "next_run": next_run,
        },
    )


def schedule_remove(*, name: str) -> None:
    Schedule.objects.filter(name=name).delete()


def schedule_next_run(*, name: str) -> datetime | None:
    """Return when the scheduler will next run the schedule `name`, or None when there is none."""
    return Schedule.objects.filter(name=name).values_list("next_run", flat=True).first()


def schedule_minutes(*, name: str) -> int | None:
    """Return the interval of the schedule `name`, or None when there is none."""
    return Schedule.objects.filter(name=name).values_list("minutes", flat=True).first()
