"""The one place that knows the task queue is django-q2.

Services enqueue tasks and keep schedules through these functions, by the dotted path
of a function in `syncapp.tasks`; swapping the queue touches this module only.
"""
from __future__ import annotations

from datetime import timedelta

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
    args_text = repr(tuple(args))
    existing = Schedule.objects.filter(name=name).first()
    if existing and (existing.func, existing.args, existing.minutes) == (func, args_text, minutes):
        return
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "args": args_text,
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
            "next_run": timezone.now() + timedelta(minutes=minutes),
        },
    )


def schedule_remove(*, name: str) -> None:
    Schedule.objects.filter(name=name).delete()



def schedule_minutes(*, name: str) -> int | None:
    """Return the interval of the schedule `name`, or None when there is none."""
    return Schedule.objects.filter(name=name).values_list("minutes", flat=True).first()
