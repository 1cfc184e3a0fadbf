import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from connections.models import Connection
from mappings.models import FieldMapping
from syncapp import queue
from syncapp.models import Sync, SyncConnection
from syncapp.services.schedules import schedule_name
from syncapp.services.syncs import (
    endpoint_delete,
    endpoint_save,
    mapping_delete,
    mapping_save,
    sync_delete,
    sync_save,
)
from tests.workspace import connection_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db


def test_creating_a_sync_audits_it_and_schedules_it():
    user = user_with_role("maria")
    sync = sync_save(sync=Sync(name="Nightly", schedule_minutes=60), user=user)
    event = AuditEvent.objects.get(action="sync.created")
    assert event.actor == user and event.object_id == str(sync.pk)
    assert event.changes["name"] == [None, "Nightly"]
    assert queue.schedule_minutes(name=schedule_name(sync.pk)) == 60


def test_pausing_a_sync_audits_it_and_removes_its_schedule():
    sync = sync_save(sync=Sync(name="Nightly", schedule_minutes=60), user=None)
    sync.paused = True
    sync_save(sync=sync, user=None)
    assert AuditEvent.objects.get(action="sync.updated").changes == {"paused": [False, True]}
    assert queue.schedule_minutes(name=schedule_name(sync.pk)) is None


def test_an_invalid_sync_is_refused_before_anything_is_written():
    sync_save(sync=Sync(name="Nightly"), user=None)
    with pytest.raises(ValidationError):
        sync_save(sync=Sync(name="Nightly"), user=None)
    assert AuditEvent.objects.count() == 1


def test_deleting_a_sync_removes_its_schedule_and_audits_every_part():
    sync = workspace_make()
    sync_save(sync=sync, user=None)
    sync.schedule_minutes = 5
    sync_save(sync=sync, user=None)
    sync_delete(sync=sync, user=None)
    assert queue.schedule_minutes(name=schedule_name(sync.pk)) is None
    assert AuditEvent.objects.filter(action="sync.deleted").count() == 1
    assert AuditEvent.objects.filter(action="mapping.deleted").count() == 4
    assert AuditEvent.objects.filter(action="endpoint.deleted").count() == 2


def test_endpoint_changes_are_audited_and_never_touch_the_cursor():
    sync = workspace_make()
    endpoint = sync.endpoints.first()
    stale = SyncConnection.objects.get(pk=endpoint.pk)
    SyncConnection.objects.filter(pk=endpoint.pk).update(cursor="engine-moved-it")
    stale.write = True
    endpoint_save(endpoint=stale, user=None)
    endpoint.refresh_from_db()
    assert endpoint.write is True and endpoint.cursor == "engine-moved-it"
    assert AuditEvent.objects.get(action="endpoint.updated").changes == {"write": [False, True]}
    endpoint_delete(endpoint=endpoint, user=None)
    assert AuditEvent.objects.filter(action="endpoint.deleted").exists()


def test_mapping_changes_are_audited():
    sync = workspace_make()
    klaviyo = connection_make("Klaviyo", "klaviyo")
    mapping = mapping_save(
        mapping=FieldMapping(sync=sync, connection=klaviyo, hub_field="phone", external_field="phone_number"),
        user=None,
    )
    mapping.transforms = ["phone_e164"]
    mapping_save(mapping=mapping, user=None)
    assert AuditEvent.objects.get(action="mapping.updated").changes == {"transforms": [[], ["phone_e164"]]}
    mapping_id = mapping.pk
    mapping_delete(mapping=mapping, user=None)
    assert AuditEvent.objects.filter(action="mapping.deleted", object_id=str(mapping_id)).exists()
    assert Connection.objects.filter(pk=klaviyo.pk).exists()


def test_a_duplicate_mapping_is_refused_with_a_validation_error():
    sync = workspace_make()
    hubspot = Connection.objects.get(name="HubSpot")
    with pytest.raises(ValidationError):
        mapping_save(mapping=FieldMapping(sync=sync, connection=hubspot, hub_field="email", external_field="email"), user=None)
    assert not AuditEvent.objects.exists()
