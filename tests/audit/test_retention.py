"""audit.retention: refused values and old cursors go after their retention period; the trail stays whole."""
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.retention import PURGED_PREFIX, retention_purge
from audit.services import audit_record
from audit.verification import chain_verify
from syncapp.models import RecordError, SyncRun
from tests.workspace import workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync(settings):
    settings.RETENTION_RECORD_ERROR_DAYS = 30
    settings.RETENTION_RUN_CURSOR_DAYS = 60
    return workspace_make()


def aged(model, pk, **when):
    model.objects.filter(pk=pk).update(**when)


def error_of(run, message, days_old):
    error = RecordError.objects.create(run=run, connection=run.sync.endpoints.first().connection,
                                       external_id="42", error_class="invalid_email", message=message)
    aged(RecordError, error.pk, created_at=timezone.now() - timedelta(days=days_old))
    return error


def test_old_record_error_messages_lose_the_values_they_echo_and_keep_their_class(sync):
    run = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.PARTIAL)
    old = error_of(run, "Not imported: ann@gmial.com looks like a typo", days_old=31)
    recent = error_of(run, "Not imported: bob@gmial.com looks like a typo", days_old=29)

    result = retention_purge()
    old.refresh_from_db()
    recent.refresh_from_db()
    assert result.record_error_messages == 1
    assert old.message == f"{PURGED_PREFIX} 30 days (retention)." and "ann@" not in old.message
    assert (old.error_class, old.external_id) == ("invalid_email", "42")
    assert recent.message.startswith("Not imported: bob@gmial.com")
    # Purged once: a second pass changes nothing.
    assert retention_purge().record_error_messages == 0


def test_finished_runs_lose_their_saved_cursors_after_the_period_and_endpoints_keep_theirs(sync):
    sync.endpoints.update(cursor="live-cursor")
    old = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.SUCCEEDED,
                                 cursors_before={"1": "a"}, cursors_after={"1": "b"})
    aged(SyncRun, old.pk, finished_at=timezone.now() - timedelta(days=61))
    recent = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.SUCCEEDED,
                                    cursors_after={"1": "c"}, finished_at=timezone.now() - timedelta(days=59))

    assert retention_purge().run_cursors == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.cursors_before, old.cursors_after) == ({}, {})
    assert recent.cursors_after == {"1": "c"}
    assert set(sync.endpoints.values_list("cursor", flat=True)) == {"live-cursor"}


def test_a_purge_never_touches_the_audit_trail(sync):
    audit_record(action="sync.created", obj=sync, actor=None, changes={"name": [None, sync.name]})
    before = list(AuditEvent.objects.order_by("pk").values())
    run = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.PARTIAL)
    error_of(run, "Not imported: ann@gmial.com", days_old=400)
    retention_purge()
    assert list(AuditEvent.objects.order_by("pk").values()) == before
    report = chain_verify()
    assert report.valid and report.checked == len(before)


def test_the_daily_purge_is_scheduled_by_migrate():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="audit:retention")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "audit.tasks.retention_purge_task", Schedule.MINUTES, 24 * 60)
