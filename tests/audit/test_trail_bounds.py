"""The sync and time filters as the trail runs them give the rows the plain filters give, page by page.

The time filters run as bounds on the id (audit.selectors.events_between) and the sync
filter, on SQLite, keeps its run term off the index (audit.selectors.sync_events): both
for speed on a million rows (docs/benchmarks.md, issue 10). Here every page, from the
first to the oldest and back, is compared with the filters written plainly on
created_at and run_id, at and around the range's edges; and on SQLite the plans are
checked to walk an index in the trail's order without sorting.
"""
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.selectors import events_between, trail_page
from syncapp.models import Sync, SyncRun
from syncapp.roles import COMPLIANCE
from tests.audit.trail_rows import event, events_insert
from tests.workspace import run_make, user_with_role

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def carla():
    return user_with_role("carla", COMPLIANCE)


def filtered(user, **params):
    trail = AuditEventFilter(params, queryset=AuditEvent.objects.order_by("-id"), user=user)
    assert trail.is_valid(), trail.errors
    return trail.qs


def every_page(events, size: int) -> list[int]:
    """Walk the pages from the newest to the oldest, then back; return the ids read going down."""
    down: list[int] = []
    page = trail_page(events, size=size)
    pages = [page]
    while True:
        down += [row.pk for row in page.events]
        if page.older_than is None:
            break
        page = trail_page(events, after=page.older_than, size=size)
        pages.append(page)
    # Back up from the oldest page by the "Newer" links: the same pages, in reverse.
    for expected in reversed(pages[:-1]):
        page = trail_page(events, before=page.newer_than, size=size)
        assert [row.pk for row in page.events] == [row.pk for row in expected.events]
    return down


@pytest.fixture
def hours():
    """Events an hour apart, three to an hour (as one append writes them, with one time), and one event."""
    for hour in range(12):
        events_insert(3, action="contact.updated", created_at=T0 + timedelta(hours=hour))
    events_insert(1, action="sync.paused", created_at=T0 + timedelta(hours=12, microseconds=1))


# At an hour (the first event of an append), between hours, before and after everything.
MOMENTS = [None, T0 - timedelta(days=1), T0, T0 + timedelta(minutes=30), T0 + timedelta(hours=5),
           T0 + timedelta(hours=11, minutes=59, seconds=59, microseconds=999999), T0 + timedelta(hours=12),
           T0 + timedelta(hours=12, microseconds=1), T0 + timedelta(hours=12, microseconds=2), T0 + timedelta(days=2)]


def moment_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.parametrize("since", MOMENTS)
def test_time_ranges_hold_the_rows_of_the_plain_filter_on_every_page(carla, hours, since):
    for until in MOMENTS:
        plain = AuditEvent.objects.order_by("-id")
        params = {}
        if since is not None:
            plain, params["since"] = plain.filter(created_at__gte=since), moment_text(since)
        if until is not None:
            plain, params["until"] = plain.filter(created_at__lt=until), moment_text(until)
        expected = list(plain.values_list("pk", flat=True))
        events = filtered(carla, **params)
        assert list(events.values_list("pk", flat=True)) == expected, (since, until)
        assert every_page(events, size=4) == expected, (since, until)


def test_a_date_alone_bounds_by_ids_too(carla):
    events_insert(2, action="sync.paused", created_at=datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC))
    events_insert(2, action="sync.paused", created_at=datetime(2026, 3, 2, tzinfo=UTC))
    events_insert(2, action="sync.paused", created_at=datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC))
    events_insert(2, action="sync.paused", created_at=datetime(2026, 3, 3, tzinfo=UTC))
    ids = list(AuditEvent.objects.order_by("-id").values_list("pk", flat=True))
    assert list(filtered(carla, since="2026-03-02", until="2026-03-02").values_list("pk", flat=True)) == ids[2:6]


def test_a_range_with_nothing_in_it_is_empty_and_the_other_filters_still_hold(carla, hours):
    assert not filtered(carla, since=moment_text(T0 + timedelta(days=3))).exists()
    assert not filtered(carla, since=moment_text(T0 + timedelta(minutes=10)),
                        until=moment_text(T0 + timedelta(minutes=20))).exists()
    matched = filtered(carla, action="sync.paused", since=moment_text(T0 + timedelta(hours=2)))
    assert list(matched.values_list("action", flat=True)) == ["sync.paused"]


def test_the_events_the_app_writes_keep_their_times_in_id_order(carla):
    written = [event("sync.paused").pk for _ in range(5)]
    times = list(AuditEvent.objects.filter(pk__in=written).order_by("id").values_list("created_at", flat=True))
    assert times == sorted(times)
    since = times[2]
    assert list(events_between(AuditEvent.objects.order_by("-id"), since=since).values_list("pk", flat=True)) == \
        list(AuditEvent.objects.filter(created_at__gte=since).order_by("-id").values_list("pk", flat=True))


def finished_run(sync: Sync) -> SyncRun:
    # A sync has one unfinished run at most.
    return run_make(sync, status=SyncRun.Status.SUCCEEDED)


@pytest.fixture
def two_syncs():
    """Two syncs whose runs' events interleave, with events about each sync and about neither."""
    newsletter, other = Sync.objects.create(name="Newsletter"), Sync.objects.create(name="Other")
    runs = {newsletter.pk: [finished_run(newsletter) for _ in range(3)],
            other.pk: [finished_run(other) for _ in range(2)]}
    for round_ in range(6):
        for sync in (newsletter, other):
            run = runs[sync.pk][round_ % len(runs[sync.pk])]
            event("contact.updated", run_id=run.pk, object_type="contact", object_id=str(round_))
            if round_ % 2:
                event("sync.updated", object_type="sync", object_id=str(sync.pk))
        event("connection.updated", object_type="connection", object_id=str(newsletter.pk))
    return newsletter, other


def test_the_sync_filter_holds_the_rows_of_the_plain_filter_on_every_page(carla, two_syncs):
    for sync in two_syncs:
        runs = SyncRun.objects.filter(sync=sync).values("pk")
        plain = AuditEvent.objects.filter(Q(object_type="sync", object_id=str(sync.pk)) | Q(run_id__in=runs))
        expected = list(plain.order_by("-id").values_list("pk", flat=True))
        events = filtered(carla, sync=sync.pk)
        assert list(events.values_list("pk", flat=True)) == expected
        assert every_page(events, size=3) == expected
        # With a time range too, on the deep pages as well.
        middle = AuditEvent.objects.get(pk=expected[len(expected) // 2]).created_at
        ranged = filtered(carla, sync=sync.pk, since=moment_text(middle))
        assert every_page(ranged, size=2) == [pk for pk in expected if pk >= expected[len(expected) // 2]]


def page_sql(events) -> str:
    with CaptureQueriesContext(connection) as queries:
        trail_page(events, after=10**9)
    return queries[-1]["sql"]


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return " | ".join(str(row[-1]) for row in cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL plans by statistics an empty table lacks; "
                    "the benchmark measures it on a million rows")
def test_on_sqlite_the_sync_and_time_pages_walk_an_index_in_id_order_without_sorting(carla, two_syncs):
    sync = two_syncs[0]
    sync_plan = plan(page_sql(filtered(carla, sync=sync.pk)))
    assert "MULTI-INDEX OR" not in sync_plan and "TEMP B-TREE" not in sync_plan, sync_plan
    assert "audit_auditevent USING INTEGER PRIMARY KEY (rowid<?)" in sync_plan, sync_plan

    time_plan = plan(page_sql(filtered(carla, since="2026-01-01", until="2026-06-01")))
    assert "INTEGER PRIMARY KEY" in time_plan and "TEMP B-TREE" not in time_plan, time_plan
    action_plan = plan(page_sql(filtered(carla, action="contact.updated", since="2026-01-01")))
    assert "audit_action_id_idx" in action_plan and "TEMP B-TREE" not in action_plan, action_plan

    with CaptureQueriesContext(connection) as queries:
        filtered(carla, since="2026-01-01").exists()
    (probe,) = [query["sql"] for query in queries if "created_at" in query["sql"] and "LIMIT 1" in query["sql"]
                and "ORDER BY" in query["sql"]]
    probe_plan = plan(probe)
    assert "created_at" in probe_plan and "TEMP B-TREE" not in probe_plan, probe_plan
