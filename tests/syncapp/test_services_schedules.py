"""Each sync's schedule follows its settings; scheduled tasks request and execute runs."""
import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from syncapp import queue
from syncapp.engine.schedule import next_run_at
from syncapp.models import SyncRun
from syncapp.services.schedules import (
    SCHEDULED_RUN_TASK,
    WATCHDOG_SCHEDULE,
    schedule_name,
    sync_next_run,
    sync_schedule_delete,
    sync_schedule_save,
)
from syncapp.tasks import run_execute_task, run_scheduled_task
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync():
    return fake_workspace()


def schedule_of(sync):
    return Schedule.objects.filter(name=f"sync:{sync.pk}").first()


class TestScheduleSave:
    def test_a_sync_with_an_interval_gets_a_schedule(self, sync):
        sync.schedule_minutes = 15
        sync_schedule_save(sync=sync)
        schedule = schedule_of(sync)
        assert schedule_name(sync.pk) == schedule.name
        assert (schedule.func, schedule.args, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
            "syncapp.tasks.run_scheduled_task", f"({sync.pk},)", Schedule.MINUTES, 15, -1)

    def test_changing_the_interval_updates_the_one_schedule(self, sync):
        sync.schedule_minutes = 15
        sync_schedule_save(sync=sync)
        sync.schedule_minutes = 60
        sync_schedule_save(sync=sync)
        assert Schedule.objects.filter(func=SCHEDULED_RUN_TASK).count() == 1
        assert schedule_of(sync).minutes == 60

    def test_saving_unchanged_settings_keeps_the_next_run(self, sync):
        sync.schedule_minutes = 15
        sync_schedule_save(sync=sync)
        next_run = schedule_of(sync).next_run
        sync_schedule_save(sync=sync)
        assert schedule_of(sync).next_run == next_run

    @pytest.mark.parametrize(("minutes", "paused"), [(0, False), (15, True)])
    def test_off_or_paused_removes_the_schedule(self, sync, minutes, paused):
        sync.schedule_minutes = 15
        sync_schedule_save(sync=sync)
        sync.schedule_minutes, sync.paused = minutes, paused
        sync_schedule_save(sync=sync)
        assert schedule_of(sync) is None

    def test_deleting_removes_the_schedule(self, sync):
        sync.schedule_minutes = 5
        sync_schedule_save(sync=sync)
        sync_schedule_delete(sync=sync)
        assert not Schedule.objects.filter(func=SCHEDULED_RUN_TASK).exists()

    def test_an_interval_the_queue_cannot_hold_is_refused(self, sync):
        sync.schedule_minutes = queue.MAX_SCHEDULE_MINUTES + 1
        with pytest.raises(ValueError, match="between 1 and 32767 minutes"):
            sync_schedule_save(sync=sync)


class TestCronSchedule:
    def test_a_cron_expression_takes_the_interval_s_place(self, sync):
        sync.schedule_minutes, sync.schedule_cron = 15, "0 6 * * 1-5"
        before = timezone.localtime()
        sync_schedule_save(sync=sync)
        schedule = schedule_of(sync)
        assert (schedule.schedule_type, schedule.cron, schedule.minutes, schedule.func, schedule.args) == (
            Schedule.CRON, "0 6 * * 1-5", None, SCHEDULED_RUN_TASK, f"({sync.pk},)")
        assert schedule.next_run == next_run_at(minutes=0, cron="0 6 * * 1-5", now=before)
        assert sync_next_run(sync=sync) == schedule.next_run

    def test_changing_the_expression_moves_the_next_run(self, sync):
        sync.schedule_cron = "0 6 * * *"
        sync_schedule_save(sync=sync)
        sync.schedule_cron = "30 18 * * *"
        sync_schedule_save(sync=sync)
        schedule = schedule_of(sync)
        assert Schedule.objects.filter(func=SCHEDULED_RUN_TASK).count() == 1
        assert (schedule.cron, timezone.localtime(schedule.next_run).hour) == ("30 18 * * *", 18)

    def test_an_unchanged_expression_keeps_the_next_run(self, sync):
        sync.schedule_cron = "*/5 * * * *"
        sync_schedule_save(sync=sync)
        schedule_of(sync).__class__.objects.filter(pk=schedule_of(sync).pk).update(
            next_run=timezone.now() + timezone.timedelta(seconds=42))
        kept = schedule_of(sync).next_run
        sync_schedule_save(sync=sync)
        assert schedule_of(sync).next_run == kept

    def test_from_cron_back_to_an_interval(self, sync):
        sync.schedule_cron = "@hourly"
        sync_schedule_save(sync=sync)
        sync.schedule_cron, sync.schedule_minutes = "", 20
        sync_schedule_save(sync=sync)
        schedule = schedule_of(sync)
        assert (schedule.schedule_type, schedule.minutes, schedule.cron) == (Schedule.MINUTES, 20, None)

    def test_a_paused_cron_sync_has_no_schedule_and_no_next_run(self, sync):
        sync.schedule_cron = "@hourly"
        sync_schedule_save(sync=sync)
        sync.paused = True
        sync_schedule_save(sync=sync)
        assert schedule_of(sync) is None and sync_next_run(sync=sync) is None

    def test_without_a_schedule_row_the_next_run_is_computed(self, sync):
        sync.schedule_minutes = 30
        before = timezone.localtime()
        next_run = sync_next_run(sync=sync)
        assert before + timezone.timedelta(minutes=30) <= next_run <= timezone.localtime() + timezone.timedelta(
            minutes=30)


class TestWatchdogSchedule:
    def test_migrate_schedules_the_watchdog_every_minute_once(self):
        watchdog = Schedule.objects.get(name=WATCHDOG_SCHEDULE)
        assert (watchdog.func, watchdog.args, watchdog.schedule_type, watchdog.minutes, watchdog.repeats) == (
            "syncapp.tasks.runs_recover_task", "()", Schedule.MINUTES, 1, -1)
        call_command("migrate", verbosity=0)
        assert Schedule.objects.get(name=WATCHDOG_SCHEDULE).next_run == watchdog.next_run

    def test_a_watchdog_schedule_deleted_by_hand_comes_back_with_the_next_migrate(self):
        Schedule.objects.filter(name=WATCHDOG_SCHEDULE).delete()
        call_command("migrate", verbosity=0)
        assert Schedule.objects.filter(name=WATCHDOG_SCHEDULE).count() == 1


class TestTasks:
    @pytest.fixture
    def world(self, monkeypatch):
        world = World()
        monkeypatch.setattr("syncapp.services.runs.registry_provider_for", world.provider_for)
        return world

    def test_the_scheduled_task_requests_and_executes_a_run(self, sync, world):
        world.add("1", email="a@example.com")
        assert run_scheduled_task(sync.pk) == "succeeded"
        run = SyncRun.objects.get()
        assert (run.trigger, run.status) == (SyncRun.Trigger.SCHEDULE, SyncRun.Status.SUCCEEDED)
        assert "a@example.com" in world.members

    def test_the_scheduled_task_skips_a_turn_while_a_run_is_active(self, sync, world):
        SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.QUEUED)
        assert run_scheduled_task(sync.pk) == "skipped"
        assert SyncRun.objects.count() == 1

    def test_the_scheduled_task_of_a_paused_or_deleted_sync_does_nothing(self, sync, world):
        sync.paused = True
        sync.save()
        assert run_scheduled_task(sync.pk) == "paused"
        assert run_scheduled_task(sync.pk + 100) == "missing"
        assert not SyncRun.objects.exists()

    def test_the_execute_task_of_a_deleted_run_does_nothing(self, sync, world):
        assert run_execute_task(12345) == "missing"

    def test_the_execute_task_runs_a_queued_run_once(self, sync, world):
        world.add("1", email="a@example.com")
        run = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL)
        assert run_execute_task(run.pk) == "succeeded"
        assert run_execute_task(run.pk) == "succeeded"
        assert len(world.upsert_calls) == 1
