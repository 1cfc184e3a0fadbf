"""When a sync runs next, and cron expressions refused with the reason in words."""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from syncapp.engine.schedule import cron_error, next_run_at, schedule_text

NOW = datetime(2026, 3, 4, 10, 17, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("minutes", "cron", "last_run_at", "expected"),
    [
        # An interval counts from now when nothing ran yet.
        (15, "", None, NOW + timedelta(minutes=15)),
        # ... from the last scheduled run when it is recent.
        (15, "", NOW - timedelta(minutes=5), NOW + timedelta(minutes=10)),
        # ... from now when the last run is overdue (the scheduler does not catch up).
        (15, "", NOW - timedelta(hours=2), NOW + timedelta(minutes=15)),
        # A cron expression takes the interval's place.
        (15, "0 6 * * 1-5", None, datetime(2026, 3, 5, 6, 0, tzinfo=UTC)),
        (0, "*/10 * * * *", None, datetime(2026, 3, 4, 10, 20, tzinfo=UTC)),
        (0, "0 6 * * SAT", None, datetime(2026, 3, 7, 6, 0, tzinfo=UTC)),
        (0, "@daily", None, datetime(2026, 3, 5, 0, 0, tzinfo=UTC)),
        (0, "  30 10 * * *  ", None, datetime(2026, 3, 4, 10, 30, tzinfo=UTC)),
        # Off.
        (0, "", None, None),
        (0, "", NOW - timedelta(minutes=5), None),
        # An expression that cannot be used schedules nothing.
        (0, "61 * * * *", None, None),
        (0, "0 0 31 2 *", None, None),
    ],
)
def test_next_run_at(minutes, cron, last_run_at, expected):
    assert next_run_at(minutes=minutes, cron=cron, now=NOW, last_run_at=last_run_at) == expected


def test_next_run_at_keeps_the_time_zone_it_is_given():
    berlin_now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    result = next_run_at(minutes=0, cron="0 12 * * *", now=berlin_now)
    assert (result.hour, result.utcoffset()) == (12, timedelta(hours=1))


@pytest.mark.parametrize(
    "expression", ["0 6 * * 1-5", "*/5 * * * *", "5,10 */2 1-15 JAN-JUN SUN", "@hourly", "@weekly"]
)
def test_usable_cron_expressions(expression):
    assert cron_error(expression) is None


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("", "Enter a cron expression"),
        ("* * *", "has 5 fields (minute hour day-of-month month day-of-week), separated by spaces; this one has 3"),
        ("* * * * * *", "this one has 6"),
        ("61 * * * *", "The minute field “61” is not valid: use 0 to 59"),
        ("0 25 * * *", "The hour field “25” is not valid: use 0 to 23"),
        ("0 0 0 * *", "The day of the month field “0” is not valid"),
        ("0 0 * 13 *", "The month field “13” is not valid"),
        ("0 0 * * 8", "The day of the week field “8” is not valid"),
        ("*/0 * * * *", "The minute field “*/0” is not valid"),
        ("a b c d e", "The minute field “a” is not valid"),
        ("0 0 31 2 *", "never matches a real date"),
        ("@sometimes", "Unknown shorthand"),
        ("<script>alert(1)</script> * * * *", "The minute field “<script>alert(1)</script>” is not valid"),
        ("x" * 10_000, "this one has 1"),
        ("\x00 * * * *", "The minute field"),
    ],
)
def test_unusable_cron_expressions_say_why(expression, reason):
    assert reason in cron_error(expression)


@pytest.mark.parametrize(
    ("minutes", "cron", "words"),
    [
        (15, "", "Every 15 minutes"),
        (1, "", "Every minute"),
        (60, "", "Every hour"),
        (180, "", "Every 3 hours"),
        (1440, "", "Every day"),
        (2880, "", "Every 2 days"),
        (90, "", "Every 90 minutes"),
        (0, "", "Off: runs only when started"),
        (15, "0 6 * * 1-5", "On the cron schedule 0 6 * * 1-5"),
    ],
)
def test_schedule_text(minutes, cron, words):
    assert schedule_text(minutes=minutes, cron=cron) == words
