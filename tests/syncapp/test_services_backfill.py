"""services.backfill: requests are audited, and a backfill is never lost to a run that fails."""
import pytest

from audit.models import AuditEvent
from syncapp.models import Sync, SyncRun
from syncapp.services.backfill import backfill_request
from syncapp.services.runs import run_execute
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(monkeypatch):
    world = World(page_size=2, max_batch=2)
    monkeypatch.setattr("syncapp.services.runs.registry_provider_for", world.provider_for)
    return world


def as_read_once(sync: Sync) -> Sync:
    """Give the sync's read endpoints a cursor, as its first run would."""
    sync.endpoints.filter(read=True).update(cursor="read-once")
    return sync


def test_no_backfill_is_queued_before_the_sync_first_read_its_systems(world):
    sync = fake_workspace()
    assert backfill_request(sync=sync, hub_fields=["first_name"], user=None) is None
    assert not SyncRun.objects.exists()


def test_a_backfill_request_is_audited_with_its_fields(world, django_user_model):
    sync = as_read_once(fake_workspace())
    user = django_user_model.objects.create(username="maria")
    run = backfill_request(sync=sync, hub_fields=["first_name", "first_name", ""], user=user)
    assert (run.trigger, run.full_read, run.backfill_fields, run.requested_by) == (
        SyncRun.Trigger.BACKFILL, True, ["first_name"], user)
    event = AuditEvent.objects.get(action="sync.backfill_requested")
    assert event.changes["backfill_fields"] == [None, ["first_name"]]
    assert event.changes["backfill"] == [None, f"run {run.pk} queued"]


def test_nothing_to_backfill_queues_nothing(world):
    sync = fake_workspace()
    assert backfill_request(sync=sync, hub_fields=[], user=None) is None
    assert not SyncRun.objects.exists() and not AuditEvent.objects.filter(action="sync.backfill_requested").exists()


def test_a_backfill_whose_run_fails_waits_for_the_next_run_and_is_not_retried_at_once(world):
    sync = as_read_once(fake_workspace())
    world.add("1", email="a@example.com")
    world.fail_upsert = RuntimeError("boom")
    run = run_execute(run_id=backfill_request(sync=sync, hub_fields=["first_name"], user=None).pk)
    assert run.status == SyncRun.Status.FAILED
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == ["first_name"]
    assert not SyncRun.objects.filter(status__in=SyncRun.ACTIVE).exists()

    world.fail_upsert = None
    retry = run_execute(run_id=SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL).pk)
    assert (retry.status, retry.full_read, retry.backfill_fields, retry.read_count) == (
        SyncRun.Status.SUCCEEDED, True, ["first_name"], 1)
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == []


def test_a_full_resync_run_covers_a_waiting_backfill(world):
    sync = fake_workspace()
    Sync.objects.filter(pk=sync.pk).update(backfill_pending_fields=["first_name"])
    run = run_execute(run_id=SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.FULL, full_read=True).pk)
    assert (run.full_read, run.backfill_fields) == (True, [])
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == []


def test_an_abandoned_backfill_run_gives_its_fields_back_to_the_sync(world, settings):
    from datetime import timedelta

    from django.utils import timezone

    from syncapp.services.runs import run_request

    sync = as_read_once(fake_workspace())
    run = backfill_request(sync=sync, hub_fields=["first_name"], user=None)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, backfill_taken=["last_name"],
                                            heartbeat_at=timezone.now() - timedelta(hours=1))
    Sync.objects.filter(pk=sync.pk).update(backfill_pending_fields=[], paused=False)
    # A later request finds the run's worker silent: the run is abandoned, and what it
    # owed waits on the sync for the run that replaces it.
    replacement, created = run_request(sync=Sync.objects.get(pk=sync.pk), trigger=SyncRun.Trigger.MANUAL,
                                       enqueue=False)
    assert created
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.ABANDONED
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == ["first_name", "last_name"]
    started = run_execute(run_id=replacement.pk)
    assert (started.full_read, started.backfill_fields) == (True, ["first_name", "last_name"])


def test_resuming_a_sync_starts_the_backfill_that_waited_for_it(world, django_user_model):
    from syncapp.services.syncs import sync_resume

    sync = as_read_once(fake_workspace())
    Sync.objects.filter(pk=sync.pk).update(paused=True, backfill_pending_fields=["first_name"])
    user = django_user_model.objects.create(username="maria")
    sync_resume(sync=Sync.objects.get(pk=sync.pk), user=user)
    run = SyncRun.objects.get(sync=sync)
    assert (run.trigger, run.status, run.full_read, run.backfill_fields) == (
        SyncRun.Trigger.BACKFILL, SyncRun.Status.QUEUED, True, ["first_name"])
    assert AuditEvent.objects.filter(action="sync.backfill_requested", actor=user).exists()
