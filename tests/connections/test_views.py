"""The connection page's Fields section and its Refresh fields button."""
import pytest
import requests
from django.urls import reverse

from connections.models import Connection
from connections.providers.base import FieldInfo
from mappings.discovery import field_catalog_store
from mappings.models import FieldCatalog
from syncapp.roles import MARKETER, REVIEWER
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER))
    return client


@pytest.fixture
def mailchimp(sandbox):
    return Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                                     api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})


def detail(client, connection):
    response = client.get(reverse("connections:detail", args=[connection.pk]))
    assert response.status_code == 200
    return response.content.decode()


def refresh(client, connection):
    return client.post(reverse("connections:fields_refresh", args=[connection.pk]), follow=True)


@pytest.mark.integration
def test_refresh_lists_the_fields_with_their_kinds_and_rules(sandbox, marketer_client, mailchimp):
    requests.post(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields", auth=("any", sandbox.mailchimp_key),
                  json={"name": "Plan", "tag": "PLAN", "type": "dropdown", "required": True,
                        "options": {"choices": ["Free", "Pro", "Team", "Business", "Enterprise", "Custom"]}},
                  timeout=10).raise_for_status()
    page = detail(marketer_client, mailchimp)
    assert "Not listed yet" in page

    response = refresh(marketer_client, mailchimp)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("connections:detail", args=[mailchimp.pk])
    assert "fields found in Mailchimp" in page
    assert "First Name" in page and "FNAME" in page and "text <span class=\"muted mono\">(text)</span>" in page
    assert "Required" in page and "Free" in page and "and 1 more" in page
    assert "255" in page
    assert "Custom" not in page  # the sixth choice is counted, not shown
    assert FieldCatalog.objects.get(connection=mailchimp).refreshed_at is not None


@pytest.mark.integration
def test_a_failed_refresh_says_why_on_the_page_without_the_key(sandbox, marketer_client, mailchimp):
    mailchimp.api_key = "stale-key-0123456789-us1"
    mailchimp.save()
    response = refresh(marketer_client, mailchimp)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Mailchimp could not list its fields" in page and "The last refresh failed" in page
    assert "stale-key-0123456789" not in page


def test_hostile_and_huge_field_texts_are_escaped_and_cut(marketer_client, hostile_contacts):
    connection = Connection.objects.create(name="CRM", provider="hubspot", base_url="http://127.0.0.1:9/hubspot",
                                           access_token="hs-token-0123456789")
    names = [row["firstname"] for row in hostile_contacts if row.get("firstname")]
    fields = [{"name": f"field{index}", "label": name, "type": "string", "kind": "text", "options": [name]}
              for index, name in enumerate(names)]
    fields.append({"name": "n" * 10_000, "label": "L" * 10_000, "type": "t" * 10_000, "kind": "enum",
                   "options": ["o" * 10_000] * 8, "read_only": True, "calculated": True})
    catalog = field_catalog_store(connection=connection, fields=[FieldInfo.from_dict(row) for row in fields])
    catalog.error = "<b>bold</b> " + "e" * 10_000
    catalog.save(update_fields=["error"])
    page = detail(marketer_client, connection)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page
    assert "L" * 201 not in page.replace('title="' + "L" * 10_000, "")
    assert "o" * 41 not in page
    assert "Read-only" in page and "Calculated" in page and "and 3 more" in page
    assert 'class="table fields-table"' in page


def test_only_marketers_may_refresh(client, mailchimp_offline):
    client.force_login(user_with_role("rita", REVIEWER))
    response = client.post(reverse("connections:fields_refresh", args=[mailchimp_offline.pk]))
    assert response.status_code == 403
    assert not FieldCatalog.objects.exists()


def test_refresh_takes_no_get(marketer_client, mailchimp_offline):
    assert marketer_client.get(reverse("connections:fields_refresh", args=[mailchimp_offline.pk])).status_code == 405


@pytest.fixture
def mailchimp_offline():
    return Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url="http://127.0.0.1:9/mailchimp",
                                     api_key="mc-key-0123456789-us1", settings={"list_id": "abc"})


def test_the_page_says_when_syncs_ask_for_the_fields_again(marketer_client, settings):
    connection = Connection.objects.create(name="CRM", provider="hubspot", base_url="https://api.hubapi.com",
                                           access_token="t")
    settings.SCHEMA_CHECK_INTERVAL_SECONDS = 1800
    page = detail(marketer_client, connection)
    assert ("asks for these fields again before it writes anything, and at its first run once 30 minutes have "
            "passed since they were last listed") in page
