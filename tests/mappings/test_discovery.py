"""The field catalog: discovered once, served from the cache, refreshed on demand, failures kept and audited."""
import pytest
import requests

from audit.models import AuditEvent
from connections.models import Connection
from mappings.discovery import DiscoveryFailed, field_catalog_fields, field_catalog_refresh
from mappings.models import FieldCatalog

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def connection(sandbox):
    return Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                                     api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("marketer")


def merge_fields_listed(sandbox) -> int:
    return sandbox.stats()["requests"].get("mailchimp", {}).get("GET /lists/{list_id}/merge-fields", 0)


def add_merge_field(sandbox, **body) -> dict:
    response = requests.post(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields", json=body,
                             auth=("any", sandbox.mailchimp_key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def refreshes():
    return AuditEvent.objects.filter(action="connection.fields_refreshed").order_by("pk")


def test_the_first_use_discovers_and_later_uses_read_the_cache(sandbox, connection):
    fields = field_catalog_fields(connection=connection)
    assert {"email_address", "FNAME", "PHONE"} <= {field.name for field in fields}
    assert merge_fields_listed(sandbox) == 1
    again = field_catalog_fields(connection=connection)
    assert again == fields
    assert merge_fields_listed(sandbox) == 1
    catalog = FieldCatalog.objects.get(connection=connection)
    assert catalog.refreshed_at is not None and catalog.error == ""


def test_without_refresh_if_missing_nothing_is_asked(sandbox, connection):
    assert field_catalog_fields(connection=connection, refresh_if_missing=False) == []
    assert merge_fields_listed(sandbox) == 0


def test_a_refresh_sees_a_new_field_and_audits_the_change_once(sandbox, connection, user):
    field_catalog_refresh(connection=connection, user=user)
    assert refreshes().count() == 1  # the first listing is news
    field_catalog_refresh(connection=connection, user=user)
    assert refreshes().count() == 1  # the same fields again are not

    add_merge_field(sandbox, name="Job title", type="text", tag="JOBTITLE")
    catalog = field_catalog_refresh(connection=connection, user=user)
    assert "JOBTITLE" in {row["name"] for row in catalog.fields}
    event = refreshes().last()
    assert (event.actor, event.system) == (user, "Mailchimp")
    assert event.changes["fields_added"] == [None, ["JOBTITLE"]]
    assert event.changes["fields_removed"] == [[], None]


def test_a_failed_refresh_keeps_the_fields_last_seen_and_stores_the_reason_without_secrets(sandbox, connection):
    field_catalog_refresh(connection=connection)
    before = FieldCatalog.objects.get(connection=connection)
    right_key, connection.api_key = connection.api_key, "revoked-key-0123456789-us1"
    connection.save()
    with pytest.raises(DiscoveryFailed) as failed:
        field_catalog_refresh(connection=connection)
    catalog = FieldCatalog.objects.get(connection=connection)
    assert "Mailchimp could not list its fields" in catalog.error and "401" in catalog.error
    assert str(failed.value) == catalog.error
    assert "revoked-key-0123456789" not in catalog.error
    assert (catalog.fields, catalog.refreshed_at) == (before.fields, before.refreshed_at)
    # Served from the cache meanwhile; the next good refresh clears the reason.
    assert field_catalog_fields(connection=connection)
    connection.api_key = right_key
    connection.save()
    assert field_catalog_refresh(connection=connection).error == ""


def test_a_first_discovery_that_fails_raises_to_the_caller(sandbox, connection):
    connection.api_key = "wrong-key-us1"
    connection.save()
    with pytest.raises(DiscoveryFailed, match="Mailchimp could not list its fields"):
        field_catalog_fields(connection=connection)
    assert FieldCatalog.objects.get(connection=connection).fields == []


def test_stored_labels_and_options_lose_nul_bytes_and_lone_surrogates_the_database_refuses(connection):
    from connections.providers.base import FieldInfo
    from mappings.discovery import field_catalog_store

    field = FieldInfo("nickname", "Nick\x00name \ud800", "text", "text", options=("a\x00b",))
    catalog = field_catalog_store(connection=connection, fields=[field])
    catalog.refresh_from_db()
    assert catalog.fields[0]["label"] == "Nickname \ufffd"
    assert catalog.fields[0]["options"] == ["ab"]
