"""A run's lease: kept while it works, fenced once lost, recovered without waiting for a trigger."""
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from connections.models import Connection
from connections.registry import provider_for
from syncapp.models import SyncRun
from syncapp.services.runs import run_execute, run_request
from syncapp.services.tracker import LeaseLost
from syncapp.tasks import run_execute_task
from tests.integration.workspace import (
    SYNC_NAME,
    assert_consistent,
    kill_hard,
    manage,
    sandbox_sync,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Small enough to keep the tests short; the lease is renewed every quarter of it.
STALE_SECONDS = 4
FINISHED = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)


@pytest.fixture
def sync(sandbox, settings):
    settings.SYNC_RUN_STALE_SECONDS = STALE_SECONDS
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox, batch_size=100)


def mailchimp_writes(sandbox) -> int:
    """Return how many write requests (anything but GET) reached the Mailchimp emulator."""
    routes = sandbox.stats()["requests"].get("mailchimp", {})
    return sum(count for route, count in routes.items() if not route.startswith("GET "))


def running(sync) -> SyncRun | None:
    return SyncRun.objects.filter(sync=sync, status=SyncRun.Status.RUNNING).first()


class ExecutedInThread:
    """Execute a run in a thread of this process, with its own database connection, as a worker would."""

    def __init__(self, run_id: int):
        self.result: SyncRun | None = None
        self.thread = threading.Thread(target=self._execute, args=(run_id,), daemon=True)
        self.thread.start()

    def _execute(self, run_id: int) -> None:
        try:
            self.result = run_execute(run_id=run_id)
        finally:
            connection.close()

    def join(self, timeout: float) -> SyncRun | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not stop"
        return self.result


def test_the_fence_is_checked_before_every_attempt_of_a_write_and_never_for_a_read(sandbox, sync):
    mailchimp = provider_for(Connection.objects.get(name="Mailchimp"))
    checks = []

    def fence():
        checks.append(len(checks) + 1)
        if len(checks) == 3:
            raise LeaseLost("Run 1 lost its lease.")

    mailchimp.http.before_write = fence
    mailchimp.http.json("GET", "/ping")
    assert checks == []
    # Every write refused for a while: the client retries, and checks the fence before each attempt.
    sandbox.faults(provider="mailchimp", rate=1.0, statuses=[503], retry_after=0)
    with pytest.raises(LeaseLost):
        mailchimp.http.json("POST", f"/lists/{sandbox.list_id}", json={"members": [], "update_existing": True})
    assert checks == [1, 2, 3]
    assert mailchimp_writes(sandbox) == 2


def test_a_write_slower_than_the_staleness_limit_keeps_its_lease(sandbox, sync, tmp_path):
    sandbox.seed(hubspot_contacts=300, random_seed=3)
    # Every Mailchimp batch takes longer than the lease lasts (slow replies, a 429 back-off).
    sandbox.faults(provider="mailchimp", rate=0, latency_ms=(STALE_SECONDS + 2) * 1000)
    worker = manage(sandbox, tmp_path / "runsync.log", "runsync", SYNC_NAME)
    try:
        live = wait_for(lambda: (run := running(sync)) and run.phase.startswith("Writing") and run, timeout=60,
                        what="the run to write to Mailchimp")
        answers = []
        while worker.poll() is None and SyncRun.objects.filter(pk=live.pk, status=SyncRun.Status.RUNNING).exists():
            # A schedule tick, a "Run now", a webhook: each asks for a run while the slow batch is on the wire.
            run, created = run_request(sync=sync, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False)
            answers.append((run.pk, created))
            if created:
                break
            time.sleep(0.5)
        worker.wait(60)
    finally:
        stop(worker)
    log = (tmp_path / "runsync.log").read_text()
    assert len(answers) >= 2 * STALE_SECONDS, "requests were made for longer than a lease lasts"
    assert set(answers) == {(live.pk, False)}, log[-2000:]
    live.refresh_from_db()
    assert live.status in FINISHED, (live.error, log[-2000:])
    assert SyncRun.objects.filter(sync=sync).count() == 1
    assert_consistent(sandbox)


def test_a_run_whose_lease_expired_writes_nothing_more(sandbox, sync):
    sandbox.seed(hubspot_contacts=600, random_seed=5)
    sandbox.faults(provider="mailchimp", rate=0, latency_ms=1500)
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    worker = ExecutedInThread(run.pk)
    wait_for(lambda: mailchimp_writes(sandbox) >= 1, timeout=60, what="the first write to Mailchimp")
    # As the database sees it, the run has not been heard of for an hour: whoever asks next takes over.
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    # The run learns it at its next renewal, a quarter of the lease later.
    time.sleep(STALE_SECONDS / 4 + 1)
    writes = mailchimp_writes(sandbox)
    stopped = worker.join(timeout=60)
    assert mailchimp_writes(sandbox) == writes, "the run wrote after it lost its lease"
    assert stopped.status == SyncRun.Status.RUNNING, "it left its row alone: it is no longer its own"
    assert stopped.pushed_count < 500

    sandbox.clear_faults()
    successor, created = run_request(sync=sync, trigger=SyncRun.Trigger.RETRY, enqueue=False)
    assert created
    assert run_execute(run_id=successor.pk).status in FINISHED
    run.refresh_from_db()
    assert run.status == SyncRun.Status.ABANDONED
    assert_consistent(sandbox)


def test_a_worker_paused_past_its_lease_writes_nothing_when_it_wakes(sandbox, sync, tmp_path):
    sandbox.seed(hubspot_contacts=600, random_seed=6)
    # Slow writes, some refused for a while: retries are writes too, and must be fenced.
    sandbox.faults(provider="mailchimp", rate=0.3, statuses=[429, 503], latency_ms=800, random_seed=2)
    worker = manage(sandbox, tmp_path / "runsync.log", "runsync", SYNC_NAME)
    try:
        paused = wait_for(lambda: (run := running(sync)) and run.pushed_count >= 100 and run, timeout=60,
                          what="the run to write some batches")
        # A stop-the-world pause (a VM migrated, a swap storm): the process does nothing, its lease runs out.
        os.killpg(worker.pid, signal.SIGSTOP)
        time.sleep(STALE_SECONDS + 1)
        successor, created = run_request(sync=sync, trigger=SyncRun.Trigger.RETRY, enqueue=False)
        assert created
        writes = mailchimp_writes(sandbox)
        os.killpg(worker.pid, signal.SIGCONT)
        worker.wait(60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGCONT)
        stop(worker)
    log = (tmp_path / "runsync.log").read_text()
    assert mailchimp_writes(sandbox) == writes, log[-3000:]
    paused.refresh_from_db()
    assert paused.status == SyncRun.Status.ABANDONED, "its end was not written over its successor's takeover"

    sandbox.clear_faults()
    assert run_execute(run_id=successor.pk).status in FINISHED
    assert_consistent(sandbox)


def killed_while_writing(sandbox, sync, tmp_path) -> tuple[SyncRun, str]:
    """Start a run in a worker process, kill it hard once it has written some batches.

    Return the run and the HubSpot cursor it had checkpointed.
    """
    sandbox.seed(hubspot_contacts=1000, random_seed=7)
    sandbox.faults(provider="mailchimp", rate=0, latency_ms=1000)
    worker = manage(sandbox, tmp_path / "runsync.log", "runsync", SYNC_NAME)
    try:
        killed = wait_for(lambda: (run := running(sync)) and run.pushed_count >= 100 and run, timeout=60,
                          what="the worker to write some batches")
    finally:
        kill_hard(worker)
    killed.refresh_from_db()
    assert killed.status == SyncRun.Status.RUNNING, (tmp_path / "runsync.log").read_text()
    sandbox.clear_faults()
    return killed, sync.endpoints.get(connection__name="HubSpot").cursor


def test_the_watchdog_resumes_a_run_whose_worker_died(sandbox, sync, tmp_path):
    killed, cursor = killed_while_writing(sandbox, sync, tmp_path)
    # The sync has no schedule and nobody presses "Run now": only the watchdog can resume it.
    assert not Schedule.objects.filter(func="syncapp.tasks.run_scheduled_task").exists()
    watchdog = Schedule.objects.get(func="syncapp.tasks.runs_recover_task")
    assert watchdog.minutes == 1 and watchdog.repeats == -1
    # Due now rather than a minute after this test's database was set up.
    Schedule.objects.filter(pk=watchdog.pk).update(next_run=timezone.now())
    cluster = manage(sandbox, tmp_path / "qcluster.log", "qcluster")
    try:
        # django-q2's scheduler looks at the schedules every 30 s; the lease lasts STALE_SECONDS.
        resumed = wait_for(
            lambda: SyncRun.objects.filter(sync=sync, trigger=SyncRun.Trigger.RETRY, status__in=FINISHED).first(),
            timeout=STALE_SECONDS + 90, what="the watchdog to resume the run", interval=0.5)
    finally:
        stop(cluster)
    killed.refresh_from_db()
    assert killed.status == SyncRun.Status.ABANDONED
    assert resumed.cursors_before["HubSpot"] == cursor
    assert "syncapp.tasks.runs_recover_task" in (tmp_path / "qcluster.log").read_text()
    assert_consistent(sandbox)


def test_a_task_delivered_again_resumes_its_run_once_the_lease_expired(sandbox, sync, tmp_path):
    killed, cursor = killed_while_writing(sandbox, sync, tmp_path)
    # Before the lease expired, the worker might only be slow: the task leaves the run alone.
    assert run_execute_task(killed.pk) == SyncRun.Status.RUNNING
    assert SyncRun.objects.filter(sync=sync).count() == 1

    time.sleep(STALE_SECONDS + 0.5)
    assert run_execute_task(killed.pk) in FINISHED
    killed.refresh_from_db()
    assert killed.status == SyncRun.Status.ABANDONED
    resumed = SyncRun.objects.get(sync=sync, trigger=SyncRun.Trigger.RETRY)
    assert resumed.status in FINISHED and resumed.cursors_before["HubSpot"] == cursor
    assert_consistent(sandbox)

    # Delivered once more, after everything finished: nothing to do.
    assert run_execute_task(killed.pk) == SyncRun.Status.ABANDONED
    assert SyncRun.objects.filter(sync=sync).count() == 2
