import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connections.forms import ConnectionForm
from connections.models import Connection
from syncapp.roles import MARKETER
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

API_KEY = "mc-secret-key-7f3a9-us1"
TOKEN = "hs-secret-token-5d21c"


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    return client


@pytest.fixture
def connection():
    return connection_make("Mailchimp", "mailchimp", api_key=API_KEY, access_token=TOKEN, settings={"list_id": "abc"})


def change_url(connection: Connection) -> str:
    return reverse("admin:connections_connection_change", args=[connection.pk])


def form_data(connection: Connection, **overrides) -> dict:
    """What the change form posts when the user edits nothing."""
    data = {
        "name": connection.name,
        "provider": connection.provider,
        "base_url": connection.base_url,
        "settings": json.dumps(connection.settings),
        "default_phone_region": connection.default_phone_region,
        "new_api_key": "",
        "new_access_token": "",
        "new_refresh_token": "",
        "new_webhook_secret": "",
        "token_expires_at_0": "",
        "token_expires_at_1": "",
        "scopes": connection.scopes,
        "rate_limit_requests": "",
        "rate_limit_window_seconds": "",
        "max_concurrency": "",
        "rate_budget": connection.rate_budget,
        "status": connection.status,
    }
    data.update(overrides)
    return data


def test_the_change_form_never_renders_a_stored_secret(marketer_client, connection):
    html = marketer_client.get(change_url(connection)).content.decode()
    assert API_KEY not in html and TOKEN not in html
    assert 'name="new_api_key"' in html and 'type="password"' in html
    assert "Set. Leave empty to keep it." in html
    assert "Not set." in html  # the refresh token and webhook secret
    assert 'name="clear_api_key"' in html


def test_the_list_shows_status_and_escaped_last_error_but_no_secret(marketer_client, connection, hostile_contacts):
    hostile = hostile_contacts[0]["firstname"]
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.ERROR,
                                                       last_error=f"Upstream said {hostile}")
    html = marketer_client.get(reverse("admin:connections_connection_changelist")).content.decode()
    assert API_KEY not in html and TOKEN not in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Error" in html


def test_an_empty_submission_keeps_the_stored_secrets(marketer_client, connection):
    response = marketer_client.post(change_url(connection), form_data(connection, name="Mailchimp main"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Mailchimp main"
    assert connection.api_key == API_KEY and connection.access_token == TOKEN


def test_a_new_value_replaces_the_secret_and_the_audit_row_holds_no_value(marketer_client, connection):
    response = marketer_client.post(change_url(connection), form_data(connection, new_api_key="mc-rotated-key-1-us1"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.api_key == "mc-rotated-key-1-us1"
    event = AuditEvent.objects.get(action="connection.updated")
    assert event.actor.username == "maria"
    assert event.changes == {"api_key": ["(secret changed)", "(secret changed)"]}
    trail = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert "mc-rotated-key-1-us1" not in trail and API_KEY not in trail


def test_the_clear_box_clears_the_secret(marketer_client, connection):
    response = marketer_client.post(change_url(connection), form_data(connection, clear_access_token="on"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.access_token is None
    assert connection.api_key == API_KEY


def test_a_new_value_and_clear_together_are_refused(marketer_client, connection):
    response = marketer_client.post(
        change_url(connection), form_data(connection, new_api_key="other-key-1234", clear_api_key="on")
    )
    assert response.status_code == 200
    assert "not both" in response.content.decode()
    connection.refresh_from_db()
    assert connection.api_key == API_KEY
    assert "other-key-1234" not in response.content.decode()


def test_a_rejected_form_does_not_echo_the_typed_secret(marketer_client, connection):
    response = marketer_client.post(
        change_url(connection), form_data(connection, name="", new_webhook_secret="typed-webhook-secret-99")
    )
    assert response.status_code == 200
    assert "typed-webhook-secret-99" not in response.content.decode()


def test_a_private_base_url_is_refused(marketer_client, connection):
    response = marketer_client.post(change_url(connection), form_data(connection, base_url="http://169.254.169.254/"))
    assert response.status_code == 200
    assert "private or local network" in response.content.decode()


def test_a_plain_http_base_url_outside_the_allowlist_asks_for_https(marketer_client, connection, settings, resolver):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    resolver.answer("us1.api.example.test", ["93.184.216.34"])
    response = marketer_client.post(change_url(connection),
                                    form_data(connection, base_url="http://us1.api.example.test/3.0"))
    assert response.status_code == 200
    assert "Use https" in response.content.decode()
    connection.refresh_from_db()
    assert connection.base_url != "http://us1.api.example.test/3.0"


def test_adding_a_connection_goes_through_the_audited_service(marketer_client):
    data = form_data(
        Connection(name="HubSpot", provider="hubspot", base_url="http://127.0.0.1:8765/hubspot", settings={}),
        new_access_token="pat-na1-abcdef",
    )
    response = marketer_client.post(reverse("admin:connections_connection_add"), data)
    assert response.status_code == 302
    connection = Connection.objects.get(name="HubSpot")
    assert connection.access_token == "pat-na1-abcdef"
    event = AuditEvent.objects.get(action="connection.created")
    assert event.object_id == str(connection.pk)
    assert "pat-na1-abcdef" not in json.dumps(event.changes)


def test_deleting_a_connection_is_audited(marketer_client, connection):
    url = reverse("admin:connections_connection_delete", args=[connection.pk])
    response = marketer_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Connection.objects.exists()
    assert AuditEvent.objects.filter(action="connection.deleted", object_id=str(connection.pk)).exists()


def test_a_connection_saved_without_saying_where_its_budget_is_kept_keeps_it_shared():
    form = ConnectionForm(data={
        "name": "CRM", "provider": "hubspot", "base_url": "https://api.hubapi.com", "settings": "{}",
        "default_phone_region": "US", "status": "connected", "scopes": "",
        "new_access_token": "pat-na1-0123456789",
    })
    assert form.is_valid(), form.errors
    assert form.save().rate_budget == "shared"
