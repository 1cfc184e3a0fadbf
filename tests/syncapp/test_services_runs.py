"""Requesting and executing runs: one at a time per sync, resumable, honest about failure."""
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import connections as db_connections
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import Connection
from connections.providers.base import AuthenticationError, TransientError
from syncapp.models import Contact, PendingPush, RecordLink, Sync, SyncRun
from syncapp.services.runs import (
    RESUME_LIMIT,
    SyncPaused,
    run_execute,
    run_execute_delivered,
    run_interrupt,
    run_is_stale,
    run_request,
    runs_recover,
)
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World(page_size=2, max_batch=3)


@pytest.fixture
def sync():
    return fake_workspace()


class TestRunRequest:
    def test_a_request_queues_a_run_and_enqueues_it_after_commit(
        self, sync, django_capture_on_commit_callbacks, queued_tasks
    ):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL)
            assert queued_tasks() == []
        assert created and run.status == SyncRun.Status.QUEUED
        assert len(callbacks) == 1
        assert [(task["func"], task["args"]) for task in queued_tasks()] == [
            ("syncapp.tasks.run_execute_task", (run.pk,))
        ]

    def test_one_active_run_per_sync(self, sync, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            first, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            second, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL)
        assert (second.pk, created) == (first.pk, False)
        assert callbacks == []
        assert SyncRun.objects.count() == 1

    def test_a_stale_run_is_abandoned_and_replaced(self, sync, settings):
        settings.SYNC_RUN_STALE_SECONDS = 60
        old, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=old.pk).update(status=SyncRun.Status.RUNNING,
                                                 heartbeat_at=timezone.now() - timedelta(seconds=61))
        new, created = run_request(sync=sync, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False)
        old.refresh_from_db()
        assert created and new.pk != old.pk
        assert old.status == SyncRun.Status.ABANDONED
        assert "no sign of its worker" in old.error and old.finished_at

    def test_a_queued_run_never_picked_up_goes_stale_too(self, sync, settings):
        settings.SYNC_RUN_STALE_SECONDS = 60
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        assert run.queued_at is not None and not run_is_stale(run)
        SyncRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(seconds=61))
        assert run_is_stale(run)

    @pytest.mark.parametrize("skew", [timedelta(hours=1), -timedelta(hours=1)])
    def test_staleness_goes_by_the_databases_clock_not_the_workers(self, sync, settings, skew):
        settings.SYNC_RUN_STALE_SECONDS = 60
        live, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=live.pk).update(status=SyncRun.Status.RUNNING, heartbeat_at=Now())
        # This process's clock is an hour off; the database's is right.
        with mock.patch("django.utils.timezone.now", return_value=timezone.now() + skew):
            run, created = run_request(sync=sync, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False)
        assert (run.pk, created) == (live.pk, False)

    def test_a_paused_sync_does_not_run(self, sync):
        sync.paused = True
        with pytest.raises(SyncPaused, match="paused"):
            run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL)
        assert not SyncRun.objects.exists()

    def test_a_users_request_is_audited(self, sync):
        user = User.objects.create_user("maria", password="x" * 12)
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, user=user, enqueue=False)
        event = AuditEvent.objects.get(action="sync.run_requested")
        assert (event.actor, event.run_id, run.requested_by) == (user, run.pk, user)


def execute(sync, world, **kwargs):
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    return run_execute(run_id=run.pk, provider_for=world.provider_for, **kwargs)


class TestRunExecute:
    def test_a_run_reports_counts_calls_progress_and_timings(self, sync, world):
        for i in range(5):
            world.add(str(i), email=f"p{i}@example.com", firstname="P")
        seen = []
        run = execute(sync, world, on_progress=lambda r: seen.append((r.phase, r.progress_done, r.progress_total)))
        run.refresh_from_db()
        assert run.status == SyncRun.Status.SUCCEEDED
        assert (run.read_count, run.created_count, run.pushed_count, run.failed_count) == (5, 5, 5, 0)
        assert run.api_calls == {"CRM": 3, "Audience": 2}
        assert run.started_at <= run.finished_at and run.duration_seconds is not None
        assert run.cursors_before == {"CRM": "", "Audience": ""} and run.cursors_after["CRM"] == "5"
        # A full batch of three went out while reading; the last two after it.
        assert world.upsert_calls == [["p0@example.com", "p1@example.com", "p2@example.com"],
                                      ["p3@example.com", "p4@example.com"]]
        assert ("Reading CRM", 2, 5) in seen and ("Writing Audience", 2, 2) in seen
        assert seen[-1][0] == "Done"

    def test_executing_a_run_that_is_not_queued_does_nothing(self, sync, world):
        world.add("1", email="a@example.com")
        run = execute(sync, world)
        again = run_execute(run_id=run.pk, provider_for=world.provider_for)
        assert again.status == SyncRun.Status.SUCCEEDED
        assert world.upsert_calls == [["a@example.com"]]

    def test_executing_a_run_another_worker_holds_does_nothing(self, sync, world):
        world.add("1", email="a@example.com")
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, heartbeat_at=Now())
        again = run_execute(run_id=run.pk, provider_for=world.provider_for)
        assert again.status == SyncRun.Status.RUNNING
        assert world.upsert_calls == [] and not Contact.objects.exists()

    def test_a_run_takes_its_lease_by_the_databases_clock(self, sync, world):
        with mock.patch("django.utils.timezone.now", return_value=timezone.now() - timedelta(hours=1)):
            run = execute(sync, world)
        run.refresh_from_db()
        assert timezone.now() - run.heartbeat_at < timedelta(minutes=1)

    def test_a_sync_paused_after_the_request_is_skipped(self, sync, world):
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        sync.paused = True
        sync.save()
        run = run_execute(run_id=run.pk, provider_for=world.provider_for)
        assert run.status == SyncRun.Status.SKIPPED

    def test_refused_credentials_fail_the_run_and_flag_the_connection(self, sync, world):
        world.add("1", email="a@example.com")
        world.fail_upsert = AuthenticationError("Fake audience: 401 API key audience-secret-key-456 is invalid",
                                                status=401)
        run = execute(sync, world)
        assert run.status == SyncRun.Status.FAILED
        assert "audience-secret-key-456" not in run.error and "401" in run.error
        connection = Connection.objects.get(name="Audience")
        assert connection.status == Connection.Status.NEEDS_REAUTH
        assert connection.last_error == run.error

    def test_an_unexpected_error_fails_the_run_with_a_message(self, sync, world, caplog):
        world.add("1", email="a@example.com")
        world.fail_upsert = RuntimeError("boom")
        run = execute(sync, world)
        assert run.status == SyncRun.Status.FAILED
        assert run.error == "Audience: RuntimeError: boom"
        assert "failed unexpectedly" in caplog.text

    def test_a_connection_whose_client_cannot_be_built_is_named(self, sync, world):
        def provider_for(connection, **options):
            if connection.name == "Audience":
                raise AuthenticationError("The connection has no API key.")
            return world.provider_for(connection, **options)

        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        run = run_execute(run_id=run.pk, provider_for=provider_for)
        assert run.status == SyncRun.Status.FAILED
        assert run.error == "Audience: The connection has no API key."
        assert Connection.objects.get(name="Audience").status == Connection.Status.NEEDS_REAUTH
        assert Connection.objects.get(name="CRM").status == Connection.Status.CONNECTED

    def test_a_bad_mapping_fails_the_run_clearly(self, sync, world):
        sync.mappings.filter(hub_field="first_name", connection__name="CRM").update(transforms=["titlecase"])
        run = execute(sync, world)
        assert run.status == SyncRun.Status.FAILED
        assert run.error.startswith("Mapping CRM.firstname -> first_name: unknown transform 'titlecase'")

    def test_a_run_declared_abandoned_stops_without_writing(self, sync, world):
        world.add("1", email="a@example.com")
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)

        def taken_over(progress):
            SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.ABANDONED)

        result = run_execute(run_id=run.pk, provider_for=world.provider_for, on_progress=taken_over)
        assert result.status == SyncRun.Status.ABANDONED
        assert not Contact.objects.exists()
        assert sync.endpoints.get(connection__name="CRM").cursor == ""

    def test_a_failed_run_resumes_from_its_checkpoint(self, sync, world):
        for i in range(6):
            world.add(str(i), email=f"p{i}@example.com")
        world.fail_on_page[3] = TransientError("CRM: 503 after 5 attempts", status=503)
        first = execute(sync, world)
        assert first.status == SyncRun.Status.FAILED
        assert first.cursors_after["CRM"] == "4"
        assert Contact.objects.count() == 4

        second = execute(sync, world)
        assert second.status == SyncRun.Status.SUCCEEDED
        assert second.cursors_before["CRM"] == "4" and second.read_count == 2
        assert Contact.objects.count() == 6
        assert RecordLink.objects.filter(connection__name="Audience").exclude(external_id=None).count() == 6
        assert len(world.members) == 6

    def test_a_run_whose_lease_expired_stops_before_its_next_page(self, sync, world, settings):
        settings.SYNC_RUN_STALE_SECONDS = 60
        for i in range(4):
            world.add(str(i), email=f"p{i}@example.com")
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        pages = []

        def expire_after_first_page(progress):
            pages.append(progress.read_count)
            if progress.read_count == 2:
                SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))

        result = run_execute(run_id=run.pk, provider_for=world.provider_for, on_progress=expire_after_first_page)
        assert result.status == SyncRun.Status.RUNNING, "it leaves its row to whoever takes over"
        assert Contact.objects.count() == 2
        assert sync.endpoints.get(connection__name="CRM").cursor == "2"
        assert world.upsert_calls == []

    def test_interrupting_marks_the_run_failed(self, sync):
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.COMMAND, enqueue=False)
        run_interrupt(run_id=run.pk, reason="stopped from the terminal.")
        run.refresh_from_db()
        assert run.status == SyncRun.Status.FAILED and run.error.startswith("Interrupted")

    def test_an_interrupted_backfill_gives_its_fields_back_to_the_sync(self, sync):
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.COMMAND, enqueue=False, full_read=True,
                             backfill_fields=["first_name@1:in"])
        SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, backfill_taken=["phone"])
        run_interrupt(run_id=run.pk, reason="stopped from the terminal.")
        assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == ["first_name@1:in", "phone"]


def test_a_run_records_a_long_cursor_shortened_with_its_size():
    from syncapp.services.runs import CURSOR_RECORD_LIMIT, _cursor_for_record

    assert _cursor_for_record("7") == "7"
    long = '{"seen": [' + ",".join(f'"{n:032x}"' for n in range(500)) + "]}"
    recorded = _cursor_for_record(long)
    assert recorded.startswith(long[:CURSOR_RECORD_LIMIT]) and f"({len(long):,} characters in all)" in recorded
    assert len(recorded) < CURSOR_RECORD_LIMIT + 50


def stale_run(sync, *, status=SyncRun.Status.RUNNING) -> SyncRun:
    """An active run whose worker has not been heard of for an hour."""
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(status=status, heartbeat_at=timezone.now() - timedelta(hours=1))
    return run


class TestRecovery:
    def test_the_watchdog_abandons_expired_runs_and_queues_their_resumption(
        self, sync, django_capture_on_commit_callbacks, queued_tasks
    ):
        dead = stale_run(sync)
        live_sync = Sync.objects.create(name="Live", schedule_minutes=0)
        live, _ = run_request(sync=live_sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        with django_capture_on_commit_callbacks(execute=True):
            resumed = runs_recover()
        dead.refresh_from_db()
        assert dead.status == SyncRun.Status.ABANDONED
        assert [(run.sync, run.trigger, run.status) for run in resumed] == [
            (sync, SyncRun.Trigger.RETRY, SyncRun.Status.QUEUED)]
        assert [(task["func"], task["args"]) for task in queued_tasks()] == [
            ("syncapp.tasks.run_execute_task", (resumed[0].pk,))]
        live.refresh_from_db()
        assert live.status == SyncRun.Status.QUEUED
        assert runs_recover() == []

    def test_the_watchdog_abandons_the_run_of_a_paused_sync_without_resuming_it(self, sync):
        dead = stale_run(sync)
        sync.paused = True
        sync.save()
        assert runs_recover() == []
        dead.refresh_from_db()
        assert dead.status == SyncRun.Status.ABANDONED
        assert SyncRun.objects.count() == 1

    def test_the_watchdog_gives_up_on_a_sync_whose_runs_keep_dying_without_progress(self, sync):
        for _ in range(RESUME_LIMIT - 1):
            stale_run(sync)
            (resumed,) = runs_recover()
            SyncRun.objects.filter(pk=resumed.pk).delete()
        last = stale_run(sync)
        assert runs_recover() == []
        last.refresh_from_db()
        assert last.status == SyncRun.Status.ABANDONED
        assert f"the last {RESUME_LIMIT} runs of this sync were abandoned before saving any progress" in last.error
        # A request still starts a run, resuming from the checkpoint.
        assert run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)[1]

    def test_the_watchdog_keeps_resuming_runs_that_get_further_each_time(self, sync):
        for _ in range(RESUME_LIMIT + 1):
            dead = stale_run(sync)
            SyncRun.objects.filter(pk=dead.pk).update(read_count=100)
            (resumed,) = runs_recover()
            SyncRun.objects.filter(pk=resumed.pk).delete()


    def test_the_watchdog_waits_for_a_silent_runs_lease_to_expire_and_resumes_it_then(self, sync, settings):
        settings.SYNC_RUN_STALE_SECONDS = 4
        silent, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        # Two renewals missed (a live worker renews every second here), the lease not yet expired.
        SyncRun.objects.filter(pk=silent.pk).update(status=SyncRun.Status.RUNNING,
                                                    heartbeat_at=Now() - timedelta(seconds=2.5))
        waits = []

        def sleep(seconds):
            waits.append(seconds)
            time.sleep(seconds)

        (resumed,) = runs_recover(sleep=sleep)
        silent.refresh_from_db()
        assert silent.status == SyncRun.Status.ABANDONED
        assert resumed.trigger == SyncRun.Trigger.RETRY
        # Until the lease expires by the database's clock (1.5 s), and a second more; never a whole lease.
        assert len(waits) == 1 and 1.0 < waits[0] <= 3.0

    def test_the_watchdog_does_not_wait_for_runs_that_renew_their_lease(self, sync, settings):
        settings.SYNC_RUN_STALE_SECONDS = 60
        live, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=live.pk).update(status=SyncRun.Status.RUNNING,
                                                  heartbeat_at=Now() - timedelta(seconds=14))
        waits = []
        assert runs_recover(sleep=waits.append) == []
        assert waits == []
        live.refresh_from_db()
        assert live.status == SyncRun.Status.RUNNING


class TestDeliveredAgain:
    def test_a_queued_run_is_executed(self, sync, world):
        world.add("1", email="a@example.com")
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        assert run_execute_delivered(run_id=run.pk, provider_for=world.provider_for).status == "succeeded"

    def test_a_finished_run_is_left_alone(self, sync, world):
        world.add("1", email="a@example.com")
        run = execute(sync, world)
        again = run_execute_delivered(run_id=run.pk, provider_for=world.provider_for)
        assert (again.pk, again.status) == (run.pk, SyncRun.Status.SUCCEEDED)
        assert SyncRun.objects.count() == 1 and len(world.upsert_calls) == 1

    def test_a_run_a_live_worker_holds_is_left_alone(self, sync, world):
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, heartbeat_at=Now())
        again = run_execute_delivered(run_id=run.pk, provider_for=world.provider_for)
        assert (again.pk, again.status) == (run.pk, SyncRun.Status.RUNNING)
        assert SyncRun.objects.count() == 1

    @pytest.mark.parametrize("status", [SyncRun.Status.RUNNING, SyncRun.Status.QUEUED])
    def test_a_run_whose_worker_died_is_resumed_here_and_now(self, sync, world, status):
        world.add("1", email="a@example.com")
        dead = stale_run(sync, status=status)
        resumed = run_execute_delivered(run_id=dead.pk, provider_for=world.provider_for)
        dead.refresh_from_db()
        if status == SyncRun.Status.QUEUED:
            # Never taken by a worker: this delivery simply executes it.
            assert (resumed.pk, resumed.status) == (dead.pk, SyncRun.Status.SUCCEEDED)
        else:
            assert dead.status == SyncRun.Status.ABANDONED
            assert (resumed.trigger, resumed.status) == (SyncRun.Trigger.RETRY, SyncRun.Status.SUCCEEDED)
        assert world.members.keys() == {"a@example.com"}


@pytest.mark.django_db(transaction=True)
def test_run_now_while_the_worker_writes_a_page_gets_the_run_under_way_and_deadlocks_nothing(sync):
    """Found by bench/scaleout_bench.py on PostgreSQL: "deadlock detected" on syncapp_syncrun.

    A page's transaction updates its run's row, then inserts pending marks, whose foreign
    key takes a share lock on the sync's row. A request for a run locked the sync first
    and then waited for the run's row: each waited for the other. The request now locks
    the sync only against other requests (FOR NO KEY UPDATE), which the marks' key lock
    does not wait for.
    """
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING, started_at=Now(), heartbeat_at=Now())
    audience = Connection.objects.get(name="Audience")
    link = RecordLink.objects.create(contact=Contact.objects.create(email="page@example.com"), connection=audience)
    page_started, page_failed = threading.Event(), []

    def write_a_page() -> None:
        try:
            with transaction.atomic():
                SyncRun.objects.filter(pk=run.pk).update(progress_done=F("progress_done") + 100)
                page_started.set()
                # Long enough for the request below to lock the sync and wait for this row.
                time.sleep(0.5)
                PendingPush.objects.create(sync=sync, connection=audience, link=link)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            page_failed.append(error)
        finally:
            db_connections.close_all()

    page = threading.Thread(target=write_a_page)
    page.start()
    page_started.wait(10)
    again, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    page.join(30)

    assert page_failed == []
    assert (again.pk, created) == (run.pk, False)
    assert PendingPush.objects.filter(sync=sync).count() == 1
    assert SyncRun.objects.get(pk=run.pk).progress_done == 100
