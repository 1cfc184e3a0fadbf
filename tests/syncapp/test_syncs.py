import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

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
    sync_builder_save,
    sync_delete,
    sync_pause,
    sync_resume,
    sync_save,
)
from tests.audit_order import statements_after_the_head
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


class TestAuditRowsComeLast:
    """After the rows saved or deleted: a run holding a cursor, or a reviewer a conflict the
    delete cascades to, takes the audit chain's head after those rows."""

    def test_deleting_a_sync(self):
        sync = workspace_make()
        with CaptureQueriesContext(connection) as queries:
            sync_delete(sync=sync, user=None)
        assert statements_after_the_head(queries) == []
        assert AuditEvent.objects.count() == 7

    def test_saving_a_sync_with_its_endpoints(self):
        sync = workspace_make()
        hubspot, mailchimp = sync.endpoints.all()
        sync.mappings.filter(connection=mailchimp.connection).delete()
        sync.schedule_minutes, hubspot.write = 5, True
        with CaptureQueriesContext(connection) as queries:
            sync_builder_save(sync=sync,
                              endpoints=[hubspot, SyncConnection(connection=connection_make("EU", "hubspot"))],
                              user=None)
        assert statements_after_the_head(queries) == []
        assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
            "sync.updated", "endpoint.deleted", "endpoint.updated", "endpoint.created"]

    def test_pausing_and_deleting_a_mapping_or_an_endpoint(self):
        sync = workspace_make()
        endpoint, mapping = sync.endpoints.first(), sync.mappings.first()
        ids = [str(sync.pk), str(mapping.pk), str(endpoint.pk)]
        for change in (lambda: sync_pause(sync=sync, user=None), lambda: mapping_delete(mapping=mapping, user=None),
                       lambda: endpoint_delete(endpoint=endpoint, user=None)):
            with CaptureQueriesContext(connection) as queries:
                change()
            assert statements_after_the_head(queries) == []
        assert list(AuditEvent.objects.order_by("id").values_list("action", "object_id")) == [
            ("sync.paused", ids[0]), ("mapping.deleted", ids[1]), ("endpoint.deleted", ids[2])]


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
        mapping_save(mapping=FieldMapping(sync=sync, connection=hubspot, hub_field="email", external_field="email"),
                     user=None)
    assert not AuditEvent.objects.exists()


class TestBuilderSave:
    def test_the_sync_and_its_endpoints_are_saved_and_audited_together(self):
        hubspot = connection_make("HubSpot", "hubspot")
        mailchimp = connection_make("Mailchimp", "mailchimp")
        user = user_with_role("maria")
        sync = sync_builder_save(
            sync=Sync(name="Nightly", schedule_minutes=60, owner=user),
            endpoints=[SyncConnection(connection=hubspot, read=True, write=False),
                       SyncConnection(connection=mailchimp, read=False, write=True, new_member_status="pending")],
            user=user,
        )
        assert [(e.connection.name, e.read, e.write) for e in sync.endpoints.all()] == [
            ("HubSpot", True, False), ("Mailchimp", False, True)]
        actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor"))
        assert actions == [("sync.created", user.pk), ("endpoint.created", user.pk), ("endpoint.created", user.pk)]

    def test_a_refused_endpoint_leaves_nothing_saved(self):
        hubspot = connection_make("HubSpot", "hubspot")
        with pytest.raises(ValidationError):
            # The same connection twice: the second endpoint breaks the one-per-sync rule.
            sync_builder_save(sync=Sync(name="Nightly", schedule_minutes=60),
                              endpoints=[SyncConnection(connection=hubspot), SyncConnection(connection=hubspot)],
                              user=None)
        assert not Sync.objects.exists() and not AuditEvent.objects.exists()
        assert not Schedule.objects.filter(name__startswith="sync:").exists()

    def test_endpoints_left_out_are_deleted_unless_they_have_mappings(self):
        sync = workspace_make()
        hubspot, mailchimp = [endpoint for endpoint in sync.endpoints.all()]
        third = connection_make("HubSpot EU", "hubspot")
        with pytest.raises(ValidationError, match="Mailchimp still has 2 field mappings"):
            sync_builder_save(sync=sync, endpoints=[hubspot, SyncConnection(connection=third, write=True)], user=None)
        assert sync.endpoints.count() == 2 and not AuditEvent.objects.exists()
        sync.mappings.filter(connection=mailchimp.connection).delete()
        sync_builder_save(sync=sync, endpoints=[hubspot, SyncConnection(connection=third, write=True)], user=None)
        assert sorted(sync.endpoints.values_list("connection__name", flat=True)) == ["HubSpot", "HubSpot EU"]
        assert AuditEvent.objects.filter(action="endpoint.deleted").count() == 1


class TestPauseResume:
    def test_a_pause_with_a_reason_and_a_resume_that_clears_it(self):
        sync = sync_save(sync=Sync(name="Nightly", schedule_minutes=60), user=None)
        sync_pause(sync=sync, user=None, reason="The Mailchimp field PHONE was removed.")
        sync.refresh_from_db()
        assert (sync.paused, sync.paused_reason) == (True, "The Mailchimp field PHONE was removed.")
        assert queue.schedule_minutes(name=schedule_name(sync.pk)) is None
        assert AuditEvent.objects.get(action="sync.paused").changes == {
            "paused": [False, True], "paused_reason": ["", "The Mailchimp field PHONE was removed."]}
        sync_resume(sync=sync, user=None)
        sync.refresh_from_db()
        assert (sync.paused, sync.paused_reason) == (False, "")
        assert queue.schedule_minutes(name=schedule_name(sync.pk)) == 60

    def test_pausing_a_paused_sync_keeps_its_reason(self):
        sync = sync_save(sync=Sync(name="Nightly"), user=None)
        sync_pause(sync=sync, user=None, reason="Drift")
        sync_pause(sync=sync, user=None)
        sync.refresh_from_db()
        assert sync.paused_reason == "Drift"
        assert AuditEvent.objects.filter(action="sync.paused").count() == 1

    def test_resuming_a_running_sync_changes_nothing(self):
        sync = sync_save(sync=Sync(name="Nightly"), user=None)
        sync_resume(sync=sync, user=None)
        assert not AuditEvent.objects.filter(action="sync.resumed").exists()


def test_a_cron_expression_the_scheduler_cannot_read_is_never_stored():
    with pytest.raises(ValidationError) as refused:
        sync_save(sync=Sync(name="Nightly", schedule_cron="9223372036854775808"), user=None)
    assert "has 5 fields" in str(refused.value.message_dict["schedule_cron"])
    assert not Sync.objects.exists() and not Schedule.objects.filter(name__startswith="sync:").exists()
