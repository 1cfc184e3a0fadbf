"""Schema drift over the fake providers: who a pause is audited as, a person's pause kept, resume refused."""
import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from connections.models import Connection
from connections.providers.base import FieldInfo
from mappings.discovery import field_catalog_store
from mappings.models import FieldMapping
from syncapp.models import Sync, SyncRun
from syncapp.roles import MARKETER
from syncapp.services.runs import run_execute, run_request
from syncapp.services.schema_drift import sync_schema_check, sync_stored_drift
from syncapp.services.syncs import sync_pause, sync_resume
from tests.syncapp.fake_providers import World, fake_workspace
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db(transaction=True)

REMOVED = "The field FNAME in Audience was removed."


@pytest.fixture
def world():
    return World(page_size=10)


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", email="owner@example.com")


@pytest.fixture
def sync(owner):
    return fake_workspace(owner=owner)


def execute(sync, world) -> SyncRun:
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert created
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def store_fields(world) -> None:
    """Store each system's fields as a refresh would, asking no system."""
    for name, fields in (("CRM", world.crm_fields), ("Audience", world.audience_fields)):
        field_catalog_store(connection=Connection.objects.get(name=name),
                            fields=[FieldInfo(field, field, kind) for field, kind in fields.items()])


def test_a_pause_syncapp_decided_is_audited_as_syncapp(sync, world):
    world.add("1", email="ann@example.com", firstname="Ann")
    del world.audience_fields["FNAME"]
    run = execute(sync, world)
    assert run.status == SyncRun.Status.PAUSED
    event = AuditEvent.objects.get(action="sync.paused", object_id=str(sync.pk))
    assert (event.actor, event.system) == (None, "Syncapp")
    assert REMOVED in event.changes["paused_reason"][1]


def test_a_sync_a_person_paused_stays_paused_and_gets_the_drift_as_its_reason(sync, world, owner):
    sync_pause(sync=sync, user=owner)
    mail.outbox.clear()
    del world.audience_fields["FNAME"]

    drifts = sync_schema_check(sync=sync, run=None, provider_for=world.provider_for)

    assert [drift.field for drift in drifts] == ["FNAME"]
    sync.refresh_from_db()
    assert sync.paused and REMOVED in sync.paused_reason
    recorded = AuditEvent.objects.filter(action="sync.paused").order_by("pk").last()
    assert (recorded.actor, recorded.system) == (None, "Syncapp")
    assert recorded.changes == {"paused_reason": ["", sync.paused_reason]}
    (message,) = mail.outbox
    assert message.to == ["owner@example.com"] and "Audience: FNAME was removed" in message.body
    # Found again: nothing new to record or tell.
    sync_schema_check(sync=sync, run=None, provider_for=world.provider_for)
    assert AuditEvent.objects.filter(action="sync.paused").count() == 2
    assert len(mail.outbox) == 1


class TestResume:
    def test_refused_while_the_fields_last_seen_still_drift_and_allowed_once_the_mapping_is_fixed(
            self, sync, world, owner):
        del world.audience_fields["FNAME"]
        store_fields(world)
        sync_pause(sync=sync, user=owner)
        assert [drift.field for drift in sync_stored_drift(sync=sync)] == ["FNAME"]

        with pytest.raises(ValidationError) as refused:
            sync_resume(sync=sync, user=owner)
        assert refused.value.messages == [
            f"Not resumed: {REMOVED} Fix the mapping; or, if you fixed the field in the system, refresh its fields "
            "on the connection's page. Then resume."]
        sync.refresh_from_db()
        assert sync.paused
        assert not AuditEvent.objects.filter(action="sync.resumed").exists()

        FieldMapping.objects.filter(sync=sync, external_field="FNAME").delete()
        sync_resume(sync=sync, user=owner)
        sync.refresh_from_db()
        assert not sync.paused and sync.paused_reason == ""

    def test_a_field_restored_in_the_system_resumes_once_its_fields_are_refreshed(self, sync, world, owner):
        del world.audience_fields["FNAME"]
        store_fields(world)
        sync_pause(sync=sync, user=owner)
        world.audience_fields["FNAME"] = "text"
        store_fields(world)
        sync_resume(sync=sync, user=owner)
        sync.refresh_from_db()
        assert not sync.paused

    def test_systems_never_discovered_are_left_to_the_run(self, sync, owner):
        sync_pause(sync=sync, user=owner)
        assert sync_stored_drift(sync=sync) == []
        sync_resume(sync=sync, user=owner)
        assert not Sync.objects.get(pk=sync.pk).paused

    def test_the_page_says_why_and_keeps_the_sync_paused(self, client, sync, world):
        client.force_login(user_with_role("maria", MARKETER))
        del world.audience_fields["FNAME"]
        store_fields(world)
        sync_pause(sync=sync, user=None)
        response = client.post(reverse("sync_resume", args=[sync.pk]), follow=True)
        assert response.status_code == 200
        page = response.content.decode()
        assert f"Not resumed: {REMOVED}" in page and "Resumed:" not in page
        assert Sync.objects.get(pk=sync.pk).paused
