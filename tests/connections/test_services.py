import json

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db_connection
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.services import SECRET_PLACEHOLDER
from connections.models import Connection
from connections.services import connection_create, connection_delete, connection_update
from syncapp.models import Contact, RecordLink
from tests.audit_order import statements_after_the_head
from tests.workspace import connection_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

SECRET = "sk-live-do-not-leak-4242"


def trail_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("changes", "object_repr")))


def test_create_saves_the_connection_and_audits_it_without_the_secret():
    user = user_with_role("ann")
    connection = connection_create(
        user=user,
        fields={"name": "Mailchimp", "provider": "mailchimp", "base_url": "https://us1.api.mailchimp.com/3.0",
                "api_key": SECRET},
    )
    connection.refresh_from_db()
    assert connection.api_key == SECRET
    event = AuditEvent.objects.get(action="connection.created")
    assert event.actor == user
    assert event.object_id == str(connection.pk)
    assert event.changes["name"] == [None, "Mailchimp"]
    assert event.changes["api_key"] == [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER]
    assert SECRET not in trail_text()


def test_update_saves_and_audits_only_what_changed():
    connection = connection_make("HubSpot", "hubspot", access_token=SECRET)
    connection_update(connection=connection, user=None, fields={"name": "HubSpot EU", "default_phone_region": "US"})
    event = AuditEvent.objects.get(action="connection.updated")
    assert event.changes == {"name": ["HubSpot", "HubSpot EU"]}
    assert Connection.objects.get(pk=connection.pk).access_token == SECRET


def test_update_of_a_secret_records_only_that_it_changed():
    connection = connection_make("HubSpot", "hubspot", access_token="old-token-1234")
    connection_update(connection=connection, user=None, fields={"access_token": SECRET})
    assert Connection.objects.get(pk=connection.pk).access_token == SECRET
    event = AuditEvent.objects.get(action="connection.updated")
    assert event.changes == {"access_token": [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER]}
    assert SECRET not in trail_text() and "old-token-1234" not in trail_text()


def test_update_to_none_clears_a_secret():
    connection = connection_make("HubSpot", "hubspot", access_token=SECRET)
    connection_update(connection=connection, user=None, fields={"access_token": None})
    assert Connection.objects.get(pk=connection.pk).access_token is None


def test_an_update_that_changes_nothing_writes_no_audit_row():
    connection = connection_make("HubSpot", "hubspot")
    connection_update(connection=connection, user=None, fields={"name": "HubSpot"})
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "http://10.0.0.5/api", "http://[::1]:8080/", "ftp://example.com/"],
)
def test_base_urls_into_private_networks_are_refused(url):
    with pytest.raises(ValidationError) as caught:
        connection_create(user=None, fields={"name": "X", "provider": "hubspot", "base_url": url})
    assert "base_url" in caught.value.message_dict
    assert not Connection.objects.exists()
    assert not AuditEvent.objects.exists()


def test_the_sandbox_address_is_allowed_in_development():
    connection = connection_create(user=None, fields={"name": "S", "provider": "hubspot", "base_url": "http://127.0.0.1:8765/hubspot"})
    assert connection.pk


def test_delete_removes_the_connection_and_audits_it():
    connection = connection_make("Spare", "hubspot", api_key=SECRET)
    connection_delete(connection=connection, user=None)
    assert not Connection.objects.exists()
    event = AuditEvent.objects.get(action="connection.deleted")
    assert event.object_repr == "Spare"
    assert SECRET not in trail_text()


def test_delete_audits_after_the_links_it_removes():
    """A run or a reviewer locks a link before auditing; the delete locks it before taking the audit chain's head."""
    connection = connection_make("Spare", "hubspot", api_key=SECRET)
    RecordLink.objects.create(contact=Contact.objects.create(email="ann@example.com"), connection=connection,
                              external_id="1")
    connection_id = connection.pk
    with CaptureQueriesContext(db_connection) as queries:
        connection_delete(connection=connection, user=None)
    assert statements_after_the_head(queries) == []
    assert not RecordLink.objects.exists()
    assert AuditEvent.objects.get(action="connection.deleted").object_id == str(connection_id)


def test_a_connection_a_sync_uses_cannot_be_deleted_and_nothing_is_audited():
    sync = workspace_make()
    connection = sync.endpoints.first().connection
    with pytest.raises(ProtectedError):
        connection_delete(connection=connection, user=None)
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert not AuditEvent.objects.filter(action="connection.deleted").exists()
