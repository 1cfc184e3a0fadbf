"""Runs in real worker processes: a killed worker resumes cleanly; django-q2 executes runs."""
import time

import pytest

from audit.models import AuditEvent
from syncapp.models import Contact, SyncRun
from syncapp.services.runs import run_execute, run_request
from tests.integration.workspace import (
    SYNC_NAME,
    assert_consistent,
    hubspot_create,
    kill_hard,
    manage,
    sandbox_sync,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sync(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox, batch_size=100)


def active_run(sync):
    return SyncRun.objects.filter(sync=sync, status=SyncRun.Status.RUNNING).first()


@pytest.mark.parametrize(
    ("slow", "progress"),
    [
        ("hubspot", lambda run: run.read_count >= 200),
        ("mailchimp", lambda run: run.pushed_count >= 100),
    ],
    ids=["killed-while-reading", "killed-while-writing"],
)
def test_a_worker_killed_mid_run_is_resumed_with_nothing_lost_or_duplicated(sandbox, sync, settings, tmp_path,
                                                                           slow, progress):
    sandbox.seed(hubspot_contacts=600, random_seed=7)
    sandbox.faults(provider=slow, rate=0, latency_ms=400)
    worker = manage(sandbox, tmp_path / "runsync.log", "runsync", SYNC_NAME)
    try:
        killed = wait_for(lambda: (run := active_run(sync)) and progress(run) and run, timeout=60,
                          what="the worker to checkpoint some progress")
    finally:
        kill_hard(worker)
    killed.refresh_from_db()
    assert killed.status == SyncRun.Status.RUNNING, (tmp_path / "runsync.log").read_text()
    cursor = sync.endpoints.get(connection__name="HubSpot").cursor
    assert cursor, "the pull checkpointed its cursor"

    sandbox.clear_faults()
    settings.SYNC_RUN_STALE_SECONDS = 1
    time.sleep(1.1)
    resumed, created = run_request(sync=sync, trigger=SyncRun.Trigger.RETRY, enqueue=False)
    assert created
    killed.refresh_from_db()
    assert killed.status == SyncRun.Status.ABANDONED
    # The short lease only served to find the killed run abandoned: the run resuming it
    # gets a normal one, which a loaded machine (CI runs two suites side by side) cannot
    # make it lose between two renewals.
    settings.SYNC_RUN_STALE_SECONDS = 90
    resumed = run_execute(run_id=resumed.pk)

    assert resumed.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), resumed.error
    assert resumed.cursors_before["HubSpot"] == cursor
    assert_consistent(sandbox)
    assert AuditEvent.objects.filter(action="contact.created").count() == Contact.objects.count()


def test_a_requested_run_is_executed_by_a_real_qcluster(sandbox, sync, tmp_path):
    hubspot_create(sandbox, [{"email": f"person{i}@example.com", "firstname": f"Person{i}", "lastname": "Queue"}
                             for i in range(40)])
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL)
    assert created and run.status == SyncRun.Status.QUEUED
    cluster = manage(sandbox, tmp_path / "qcluster.log", "qcluster")
    try:
        wait_for(lambda: SyncRun.objects.filter(pk=run.pk).exclude(status__in=SyncRun.ACTIVE).exists(),
                 timeout=90, what="the cluster to finish the run", interval=0.2)
    finally:
        stop(cluster)
    run.refresh_from_db()
    log = (tmp_path / "qcluster.log").read_text()
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error, log[-3000:])
    assert "syncapp.tasks.run_execute_task" in log
    assert (run.read_count, run.created_count, run.pushed_count) == (40, 40, 40)
    assert_consistent(sandbox)


def test_sigterm_stops_an_idle_qcluster_within_seconds(sandbox, tmp_path):
    log = tmp_path / "qcluster.log"
    cluster = manage(sandbox, log, "qcluster")
    try:
        wait_for(lambda: "running." in log.read_text(), timeout=60, what="the cluster to start")
        started = time.monotonic()
        # SIGTERM to the main process alone, as systemd with KillMode=mixed and `docker stop` send it.
        stop(cluster)
        took = time.monotonic() - started
    finally:
        stop(cluster)
    assert took < 5, (took, log.read_text()[-2000:])
    # It stopped its own processes in order; it was not killed.
    assert "has stopped" in log.read_text() and cluster.returncode == 0
