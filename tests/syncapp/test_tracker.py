"""A run's lease: renewed by the database's clock while the run works, a fence once it is lost."""
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.db import connections as db_connections
from django.db.models.functions import Now
from django.utils import timezone

from syncapp.models import SyncConnection, SyncRun
from syncapp.services.runs import run_interrupt, run_request
from syncapp.services.tracker import LeaseLost, RunLease, RunTracker
from tests.syncapp.fake_providers import fake_workspace

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run(settings):
    settings.SYNC_RUN_STALE_SECONDS = 60
    run, _ = run_request(sync=fake_workspace(), trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, heartbeat_at=Now())
    run.refresh_from_db()
    return run


def heartbeat(run):
    return SyncRun.objects.values_list("heartbeat_at", flat=True).get(pk=run.pk)


def test_the_lease_is_renewed_while_the_run_is_busy_elsewhere(run, settings):
    settings.SYNC_RUN_STALE_SECONDS = 2
    lease = RunLease(run.pk, acquired_at=time.monotonic())
    before = heartbeat(run)
    lease.start()
    try:
        # The run's own thread does nothing here: a batch stuck on the wire.
        time.sleep(2.5)
        lease.check()
    finally:
        lease.stop()
    assert heartbeat(run) > before + timedelta(seconds=1.5)


def test_the_fence_closes_after_half_the_lease_without_a_renewal(run):
    clock = Clock()
    lease = RunLease(run.pk, acquired_at=clock.now, clock=clock)
    clock.now += 30
    lease.check()
    clock.now += 0.1
    with pytest.raises(LeaseLost, match="no renewal of its lease for more than 30 s"):
        lease.check()
    # Closed for good: a renewal does not reopen it.
    assert not lease.renew()
    with pytest.raises(LeaseLost):
        lease.check()


def test_a_renewal_counts_from_when_it_was_sent(run):
    clock = Clock()
    lease = RunLease(run.pk, acquired_at=clock.now, clock=clock)
    clock.now += 25
    assert lease.renew()
    clock.now += 30
    lease.check()
    clock.now += 0.1
    with pytest.raises(LeaseLost):
        lease.check()


def test_an_expired_lease_is_not_renewed(run):
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    lease = RunLease(run.pk, acquired_at=time.monotonic())
    assert not lease.renew()
    with pytest.raises(LeaseLost, match="expired, or the run was declared abandoned"):
        lease.check()
    assert heartbeat(run) < timezone.now() - timedelta(seconds=60)


def test_a_lease_taken_over_is_not_renewed(run):
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.ABANDONED)
    lease = RunLease(run.pk, acquired_at=time.monotonic())
    assert not lease.renew()
    with pytest.raises(LeaseLost):
        lease.check()


def test_a_database_error_delays_the_renewal_without_losing_the_lease(run, monkeypatch):
    clock = Clock()
    lease = RunLease(run.pk, acquired_at=clock.now, clock=clock)

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    with monkeypatch.context() as patched:
        patched.setattr("django.db.models.query.QuerySet.update", locked)
        assert not lease.renew()
    lease.check()
    clock.now += 10
    assert lease.renew()
    clock.now += 30
    lease.check()


def test_a_checkpoint_checks_the_fence_before_saving(run):
    clock = Clock()
    lease = RunLease(run.pk, acquired_at=clock.now, clock=clock)
    tracker = RunTracker(run, lease=lease)
    tracker.advance(done=1, read_count=1)
    clock.now += 31
    with pytest.raises(LeaseLost):
        tracker.advance(done=1, read_count=1)
    assert SyncRun.objects.get(pk=run.pk).read_count == 1


def test_a_checkpoint_saves_nothing_once_the_lease_expired_in_the_database(run):
    tracker = RunTracker(run)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    with pytest.raises(LeaseLost, match="expired, or another run took over"):
        tracker.advance(done=1, read_count=1)
    assert SyncRun.objects.get(pk=run.pk).read_count == 0


def test_stopping_the_lease_ends_its_thread(run, settings):
    settings.SYNC_RUN_STALE_SECONDS = 2
    lease = RunLease(run.pk, acquired_at=time.monotonic())
    lease.start()
    assert f"syncapp-lease-{run.pk}" in {thread.name for thread in threading.enumerate()}
    lease.stop()
    assert f"syncapp-lease-{run.pk}" not in {thread.name for thread in threading.enumerate()}


def test_a_run_stopped_while_a_page_commits_is_stopped_after_the_page_not_before_it(run):
    """Found by review: a page's cursor update locked nothing of the run's, so an interrupt
    could commit between the page's lease check and its commit, and the page of a stopped
    run still landed. The page now holds the run's row from its check to its commit.
    """
    tracker = RunTracker(run)
    endpoint = SyncConnection.objects.filter(sync=run.sync).first()
    checked, moments = threading.Event(), {}

    def commit_a_page() -> None:
        try:
            with transaction.atomic():
                endpoint.cursor = "page-2"
                tracker.cursor_save(endpoint)
                checked.set()
                # The rest of the page's writes: the interrupt arrives meanwhile.
                time.sleep(0.5)
            moments["page committed"] = time.monotonic()
        finally:
            db_connections.close_all()

    page = threading.Thread(target=commit_a_page)
    page.start()
    assert checked.wait(10)
    run_interrupt(run_id=run.pk, reason="the worker is shutting down")
    moments["run stopped"] = time.monotonic()
    page.join(10)

    assert SyncConnection.objects.get(pk=endpoint.pk).cursor == "page-2"
    assert SyncRun.objects.get(pk=run.pk).status == SyncRun.Status.FAILED
    # SQLite serializes the two writers anyway; on PostgreSQL the stop waits for the page.
    assert moments["run stopped"] >= moments["page committed"]
    # And the stopped run's next page is refused.
    with pytest.raises(LeaseLost), transaction.atomic():
        tracker.cursor_save(endpoint)
