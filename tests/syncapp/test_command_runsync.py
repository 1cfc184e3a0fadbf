"""`manage.py runsync`: runs in the foreground, reports, and exits non-zero on failure."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from syncapp.models import SyncRun
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(monkeypatch):
    world = World(page_size=2, max_batch=2)
    monkeypatch.setattr("syncapp.services.runs.registry_provider_for", world.provider_for)
    return world


@pytest.fixture
def sync():
    return fake_workspace()


def runsync(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("runsync", *args, stdout=out, stderr=err)
    except SystemExit as exit:
        return exit.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_a_successful_run_prints_counts_calls_and_duration(sync, world):
    for i in range(3):
        world.add(str(i), email=f"p{i}@example.com")
    code, out, _ = runsync(sync.name)
    assert code == 0
    assert f"Run #{SyncRun.objects.get().pk}: Succeeded" in out
    assert "read 3, created 3, updated 0, unchanged 0, pushed 3, conflicts 0, record errors 0, warnings 0" in out
    assert "API calls: Audience 2, CRM 2 (4 in all)" in out
    assert "duration:" in out
    assert "Reading CRM" in out and "Writing Audience" in out
    assert SyncRun.objects.get().trigger == SyncRun.Trigger.COMMAND


def test_a_failed_run_exits_1_with_its_error(sync, world):
    world.add("1", email="a@example.com")
    world.fail_upsert = RuntimeError("boom")
    code, out, _ = runsync(sync.name)
    assert code == 1
    assert "Failed" in out and "error: Audience: RuntimeError: boom" in out


def test_a_partial_run_exits_0_unless_asked_otherwise(sync, world):
    world.add("1", email="nodomain@")
    world.add("2", email="fine@example.com")
    code, out, _ = runsync(sync.name)
    assert code == 0 and "Partial" in out and "record errors 1" in out
    world.add("1", firstname="again")
    code, _, _ = runsync(sync.name, "--fail-on-partial")
    assert code == 1


def test_all_runs_every_sync_that_is_not_paused(sync, world):
    world.add("1", email="a@example.com")
    code, out, _ = runsync("--all")
    assert code == 0 and sync.name in out


def test_unknown_names_and_missing_arguments_are_refused(sync):
    with pytest.raises(CommandError, match="No sync named 'nope'. Known syncs: CRM to audience"):
        call_command("runsync", "nope")
    with pytest.raises(CommandError, match="or pass --all"):
        call_command("runsync")


def test_a_paused_or_busy_sync_is_not_run(sync, world):
    SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.RUNNING)
    code, _, err = runsync(sync.name)
    assert code == 1 and "already under way" in err
    sync.paused = True
    sync.save()
    code, _, err = runsync(sync.name)
    assert code == 1 and "paused" in err
