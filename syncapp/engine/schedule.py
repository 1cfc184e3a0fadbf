"""When a sync runs next, and what is wrong with a cron expression, in words.

Pure: no Django, no database. The scheduler (django-q2) evaluates cron expressions with
croniter in the server's time zone, so callers pass `now` in that zone and get the same
answer the scheduler will act on.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from croniter import CroniterBadDateError, CroniterError, croniter

# The five fields a cron expression has here. croniter also takes a sixth (seconds) and a
# seventh (year); the scheduler only looks at its schedules every few seconds, so a
# seconds field would promise a precision nothing keeps.
CRON_FIELDS = (
    ("minute", "0 to 59"),
    ("hour", "0 to 23"),
    ("day of the month", "1 to 31"),
    ("month", "1 to 12 or JAN to DEC"),
    ("day of the week", "0 to 6 (Sunday is 0) or SUN to SAT"),
)
# croniter's shorthands, each the same as a five-field expression.
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def cron_error(expression: str) -> str | None:
    """Return why `expression` is not a usable cron expression, in words; None when it is."""
    text = expression.strip()
    if not text:
        return "Enter a cron expression, e.g. 0 6 * * 1-5 for 06:00 on weekdays."
    if text.startswith("@"):
        if text.lower() in CRON_MACROS:
            return None
        return f"Unknown shorthand; use one of {', '.join(CRON_MACROS)} or five fields."
    columns = text.split()
    if len(columns) != len(CRON_FIELDS):
        return (
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"separated by spaces; this one has {len(columns)}."
        )
    for position, (label, allowed) in enumerate(CRON_FIELDS):
        # Each field alone, the others "*": croniter's own message does not say which field.
        probe = ["*"] * len(CRON_FIELDS)
        probe[position] = columns[position]
        try:
            croniter.expand(" ".join(probe))
        except (CroniterError, ValueError):
            return f"The {label} field “{columns[position]}” is not valid: use {allowed}, with * , - and /."
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return "This expression never matches a real date (such as 31 February); check the day and month fields."
    except (CroniterError, ValueError) as error:
        return f"Not a valid cron expression: {error}."
    return None


def next_run_at(*, minutes: int, cron: str, now: datetime, last_run_at: datetime | None = None) -> datetime | None:
    """Return when a sync with this schedule runs next after `now`; None when its schedule is off.

    A cron expression takes the interval's place. An interval counts from the last
    scheduled run when there was one (and it is not overdue), else from now: a schedule
    created or changed now first fires one interval later (see syncapp.queue.schedule_every).
    """
    if cron:
        if cron_error(cron):
            return None
        return croniter(cron.strip(), now).get_next(datetime)
    if minutes <= 0:
        return None
    step = timedelta(minutes=minutes)
    if last_run_at is not None and last_run_at + step > now:
        return last_run_at + step
    return now + step


def schedule_text(*, minutes: int, cron: str) -> str:
    """Return the schedule in words: "Every 15 minutes", "On the cron schedule 0 6 * * 1-5", "Off"."""
    if cron:
        return f"On the cron schedule {cron.strip()}"
    if minutes <= 0:
        return "Off: runs only when started"
    if minutes == 1:
        return "Every minute"
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "Every day" if days == 1 else f"Every {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "Every hour" if hours == 1 else f"Every {hours} hours"
    return f"Every {minutes} minutes"
