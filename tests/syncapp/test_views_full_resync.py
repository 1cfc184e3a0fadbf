"""The Full resync action on the sync page."""
import pytest
from django.urls import reverse

from audit.models import AuditEvent
from syncapp.models import Sync, SyncRun
from syncapp.roles import MARKETER, REVIEWER
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER))
    return client


def test_the_sync_page_explains_the_full_resync_before_its_button(marketer_client, sync):
    page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
    assert reverse("sync_full_resync", args=[sync.pk]) in page
    assert "reads every record of every system in this sync again" in page
    assert "no opt-out becomes a subscription" in page
    assert "Start the full resync" in page


def test_a_marketer_queues_a_full_resync_audited(marketer_client, sync):
    response = marketer_client.post(reverse("sync_full_resync", args=[sync.pk]), follow=True)
    run = SyncRun.objects.get(sync=sync)
    assert (run.trigger, run.full_read, run.status, run.requested_by.username) == (
        SyncRun.Trigger.FULL, True, SyncRun.Status.QUEUED, "maria")
    assert f"Full resync queued as run #{run.pk}" in response.content.decode()
    event = AuditEvent.objects.get(action="sync.run_requested")
    assert event.changes["trigger"] == [None, "full"]


def test_a_run_under_way_is_said_and_nothing_is_queued(marketer_client, sync):
    active = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL)
    page = marketer_client.post(reverse("sync_full_resync", args=[sync.pk]), follow=True).content.decode()
    assert f"Run #{active.pk} is under way" in page
    assert SyncRun.objects.filter(sync=sync).count() == 1


def test_a_paused_sync_is_not_resynced(marketer_client, sync):
    Sync.objects.filter(pk=sync.pk).update(paused=True)
    page = marketer_client.post(reverse("sync_full_resync", args=[sync.pk]), follow=True).content.decode()
    assert "This sync is paused. Resume it before a full resync." in page
    assert not SyncRun.objects.exists()


def test_only_post_by_a_marketer(client, marketer_client, sync):
    url = reverse("sync_full_resync", args=[sync.pk])
    assert marketer_client.get(url).status_code == 405
    client.force_login(user_with_role("rita", REVIEWER))
    assert client.post(url).status_code == 403
    assert not SyncRun.objects.exists()


def test_the_sync_page_names_the_fields_of_a_waiting_backfill(marketer_client, sync):
    Sync.objects.filter(pk=sync.pk).update(backfill_pending_fields=["first_name", "attributes.job_title"],
                                           paused=True)
    page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
    assert 'data-testid="backfill-pending"' in page
    assert "A backfill is waiting</strong> for First name, job_title (custom attribute)" in page
    assert "once the sync is resumed" in page


def test_the_run_page_says_what_a_backfill_run_reads(marketer_client, sync):
    run = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.BACKFILL, full_read=True,
                                 backfill_fields=["first_name"], status=SyncRun.Status.SUCCEEDED)
    page = marketer_client.get(reverse("run_detail", args=[sync.pk, run.pk])).content.decode()
    assert "Backfill of First name: reads again in full the systems that read them" in page
