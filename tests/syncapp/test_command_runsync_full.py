"""`manage.py runsync NAME --full`: a full resync from the command line."""
import pytest

from syncapp.models import SyncRun
from tests.syncapp.test_command_runsync import runsync, sync, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_full_reads_every_record_again_and_writes_only_what_differs(sync, world):  # noqa: F811
    for i in range(3):
        world.add(str(i), email=f"p{i}@example.com")
    assert runsync(sync.name)[0] == 0
    code, out, _ = runsync(sync.name)
    assert code == 0 and "read 0," in out

    code, out, _ = runsync(sync.name, "--full")
    assert code == 0
    assert "(full resync)" in out and "Reading every record of CRM" in out
    assert "read 3, created 0, updated 0, unchanged 3, pushed 0" in out
    run = SyncRun.objects.order_by("-pk").first()
    assert (run.trigger, run.full_read, run.backfill_fields) == (SyncRun.Trigger.FULL, True, [])


def test_full_does_not_take_a_queued_run_that_reads_only_the_changes(sync, world):  # noqa: F811
    queued = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL)
    code, _, err = runsync(sync.name, "--full")
    assert code == 1 and f"Run #{queued.pk}" in err and "reads only the changes" in err
    queued.refresh_from_db()
    assert queued.status == SyncRun.Status.QUEUED


def test_without_full_the_other_options_still_work(sync, world):  # noqa: F811
    world.add("1", email="nodomain@")
    code, out, _ = runsync(sync.name, "--fail-on-partial")
    assert code == 1 and "Partial" in out
    assert SyncRun.objects.get().full_read is False
