import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.roles import MARKETER
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    return client


def mapping_data(sync, connection, **overrides):
    data = {
        "sync": sync.pk,
        "connection": connection.pk,
        "hub_field": "company",
        "external_field": "COMPANY",
        "direction": "out",
        "transforms": '["trim"]',
        "conflict_policy": "owner_wins",
        "never_overwrite_with_empty": "on",
    }
    data.update(overrides)
    return data


def test_adding_a_mapping_goes_through_the_audited_service(marketer_client):
    sync = workspace_make()
    mailchimp = Connection.objects.get(name="Mailchimp")
    response = marketer_client.post(reverse("admin:mappings_fieldmapping_add"), mapping_data(sync, mailchimp))
    assert response.status_code == 302
    mapping = FieldMapping.objects.get(external_field="COMPANY")
    event = AuditEvent.objects.get(action="mapping.created")
    assert event.object_id == str(mapping.pk) and event.actor.username == "maria"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hub_field", "attributes.", "Unknown hub field"),
        ("hub_field", "<script>", "Unknown hub field"),
        ("transforms", '"trim"', "transforms must be a list"),
        ("transforms", '[{"name": "value_map"}]', "value_map"),
        ("transforms", '[{"name": "date"}]', "Date format: choose the system&#x27;s format"),
    ],
)
def test_invalid_mappings_are_refused_with_a_clear_message(marketer_client, field, value, message):
    sync = workspace_make()
    mailchimp = Connection.objects.get(name="Mailchimp")
    response = marketer_client.post(
        reverse("admin:mappings_fieldmapping_add"), mapping_data(sync, mailchimp, **{field: value})
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_deleting_a_mapping_is_audited(marketer_client):
    sync = workspace_make()
    mapping = sync.mappings.first()
    response = marketer_client.post(reverse("admin:mappings_fieldmapping_delete", args=[mapping.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="mapping.deleted", object_id=str(mapping.pk)).exists()
