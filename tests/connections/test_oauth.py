"""The OAuth connect flow: endpoints, the start and finish of a flow, and the connect pages."""
from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connections.addresses import AddressRefused
from connections.http import RequestRefused
from connections.models import Connection
from connections.oauth import (
    GrantRevoked,
    OAuthError,
    StateMismatch,
    authorization_finish,
    authorization_start,
    oauth_endpoints,
    token_refresh,
)
from connections.views import FLOW_KEY
from syncapp.roles import MARKETER
from tests.connections.loopback import LoopbackServer, Reply
from tests.connections.oauth_sandbox import REDIRECT, approve_at, grant_from_sandbox
from tests.workspace import user_with_role


def test_real_providers_use_their_declared_endpoints_and_the_clients_from_settings(settings):
    settings.OAUTH_CLIENTS = {"hubspot": {"client_id": "app-1", "client_secret": "s"},
                              "mailchimp": {"client_id": "app-2", "client_secret": "t"}}
    settings.OAUTH_ENDPOINTS = {"hubspot": {"token_url": "https://api.hubapi.com/oauth/v3/token"}}
    endpoints = oauth_endpoints("hubspot", "https://api.hubapi.com")
    assert endpoints.authorize_url == "https://app.hubspot.com/oauth/authorize"
    assert endpoints.token_url == "https://api.hubapi.com/oauth/v3/token"
    assert endpoints.client_id == "app-1" and not endpoints.sandbox
    mailchimp = oauth_endpoints("mailchimp", "https://us6.api.mailchimp.com/3.0")
    assert mailchimp.token_url == "https://login.mailchimp.com/oauth2/token"
    assert mailchimp.urls["metadata_url"] == "https://login.mailchimp.com/oauth2/metadata"
    assert not mailchimp.sandbox


@pytest.fixture(autouse=True)
def sandbox_at_4321(settings):
    """Most tests here name a sandbox at http://127.0.0.1:4321 without needing one to answer."""
    settings.SANDBOX_URL = "http://127.0.0.1:4321"


def test_the_sandbox_origin_is_the_sandbox_with_its_own_client(settings):
    endpoints = oauth_endpoints("hubspot", "http://127.0.0.1:4321/hubspot")
    assert endpoints.sandbox
    assert endpoints.authorize_url == "http://127.0.0.1:4321/hubspot/oauth/authorize"
    assert endpoints.token_url == "http://127.0.0.1:4321/hubspot/oauth/v1/token"
    assert endpoints.client_id == settings.OAUTH_SANDBOX_CLIENT["client_id"]


def test_the_hubspot_scopes_are_what_the_sync_needs():
    assert oauth_endpoints("hubspot", "http://127.0.0.1:4321/hubspot").scopes == (
        "oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "communication_preferences.write")


def test_a_provider_without_a_configured_app_is_a_clear_error(settings):
    settings.OAUTH_CLIENTS = {"hubspot": {"client_id": "", "client_secret": ""}, "mailchimp": {}}
    with pytest.raises(OAuthError, match="No OAuth app is configured for HubSpot"):
        oauth_endpoints("hubspot", "")


def test_a_provider_without_oauth_is_refused():
    with pytest.raises(OAuthError, match="does not connect with OAuth"):
        oauth_endpoints("salesforce", "")


def test_the_authorize_url_carries_client_scopes_state_and_a_pkce_challenge():
    endpoints = oauth_endpoints("hubspot", "http://127.0.0.1:4321/hubspot")
    url, flow = authorization_start(endpoints, REDIRECT)
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert query["client_id"] == endpoints.client_id
    assert query["redirect_uri"] == REDIRECT
    assert query["scope"] == ("oauth crm.objects.contacts.read crm.objects.contacts.write "
                              "communication_preferences.write")
    assert query["state"] == flow["state"] and len(flow["state"]) >= 32
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert flow["code_verifier"] not in url


def test_each_flow_gets_its_own_state():
    endpoints = oauth_endpoints("hubspot", "http://127.0.0.1:4321/hubspot")
    assert authorization_start(endpoints, REDIRECT)[1]["state"] != authorization_start(endpoints, REDIRECT)[1]["state"]


def test_a_callback_with_another_state_is_refused_before_any_exchange():
    endpoints = oauth_endpoints("hubspot", "http://127.0.0.1:4321/hubspot")
    _, flow = authorization_start(endpoints, REDIRECT)
    with pytest.raises(StateMismatch, match="does not match"):
        authorization_finish(endpoints, flow, {"code": "abc", "state": "forged"})


def test_a_denied_approval_is_reported(sandbox):
    endpoints = oauth_endpoints("hubspot", sandbox.hubspot_url)
    url, flow = authorization_start(endpoints, REDIRECT)
    with pytest.raises(OAuthError, match="Access was denied on HubSpot"):
        authorization_finish(endpoints, flow, approve_at(url, decision="deny"))


def test_the_code_exchange_gives_tokens_with_their_expiry(sandbox):
    grant = grant_from_sandbox("hubspot", sandbox.hubspot_url)
    assert grant.access_token and grant.refresh_token
    assert grant.lifetime_seconds == 1800
    assert grant.expires_at is not None


def test_mailchimp_learns_its_api_root_from_the_metadata_call(sandbox):
    grant = grant_from_sandbox("mailchimp", sandbox.mailchimp_url)
    assert grant.refresh_token is None and grant.expires_at is None
    assert grant.base_url == sandbox.mailchimp_url
    assert grant.settings["dc"] == "us1"


def test_a_revoked_grant_raises_grant_revoked_on_refresh(sandbox):
    grant = grant_from_sandbox("hubspot", sandbox.hubspot_url)
    sandbox.oauth_revoke()
    with pytest.raises(GrantRevoked, match="BAD_REFRESH_TOKEN"):
        token_refresh(oauth_endpoints("hubspot", sandbox.hubspot_url), grant.refresh_token)


@pytest.fixture
def marketer_client(client, db):
    client.force_login(user_with_role("mara", MARKETER))
    return client


def start_connecting(client, base_url: str, name: str = "HubSpot (sales)", provider: str = "hubspot"):
    response = client.post(reverse("connections:connect"), {"provider": provider, "name": name, "base_url": base_url})
    assert response.status_code == 302 and response.url == reverse("connections:authorize")
    return client.session[FLOW_KEY]


@pytest.mark.django_db
def test_the_connect_page_shows_the_scopes_before_connecting(marketer_client):
    page = marketer_client.get(reverse("connections:connect")).content.decode()
    assert "crm.objects.contacts.read" in page and "crm.objects.contacts.write" in page


@pytest.mark.django_db
def test_the_authorize_page_links_to_the_provider_with_the_scopes(marketer_client, sandbox):
    flow = start_connecting(marketer_client, sandbox.hubspot_url)
    page = marketer_client.get(reverse("connections:authorize")).content.decode()
    assert flow["authorize_url"].replace("&", "&amp;") in page
    assert "<code>crm.objects.contacts.write</code>" in page


@pytest.mark.django_db
def test_connecting_stores_the_tokens_encrypted_marks_connected_and_audits_without_tokens(marketer_client, sandbox):
    flow = start_connecting(marketer_client, sandbox.hubspot_url)
    answer = approve_at(flow["authorize_url"])
    response = marketer_client.get(reverse("connections:oauth_callback"), answer)
    connection = Connection.objects.get(name="HubSpot (sales)")
    assert response.status_code == 302 and response.url == reverse("connections:detail", args=[connection.pk])
    assert connection.status == Connection.Status.CONNECTED
    assert connection.access_token and connection.refresh_token and connection.token_expires_at
    assert connection.scopes == ("oauth crm.objects.contacts.read crm.objects.contacts.write "
                                 "communication_preferences.write")
    event = AuditEvent.objects.get(action="connection.created", object_id=str(connection.pk))
    assert connection.access_token not in str(event.changes)
    assert connection.refresh_token not in str(event.changes)
    assert FLOW_KEY not in marketer_client.session


@pytest.mark.django_db
def test_a_callback_with_a_forged_state_is_a_400_with_a_clear_message(marketer_client, sandbox):
    flow = start_connecting(marketer_client, sandbox.hubspot_url)
    answer = {**approve_at(flow["authorize_url"]), "state": "forged"}
    response = marketer_client.get(reverse("connections:oauth_callback"), answer)
    assert response.status_code == 400
    assert "does not belong to this session" in response.content.decode()
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_a_callback_without_a_flow_in_the_session_is_a_400(marketer_client):
    response = marketer_client.get(reverse("connections:oauth_callback"), {"code": "x", "state": "y"})
    assert response.status_code == 400
    assert "No connection is being set up in this session" in response.content.decode()


@pytest.mark.django_db
def test_denying_at_the_provider_returns_to_the_connect_page_with_a_message(marketer_client, sandbox):
    flow = start_connecting(marketer_client, sandbox.hubspot_url)
    response = marketer_client.get(reverse("connections:oauth_callback"), approve_at(flow["authorize_url"], "deny"),
                                   follow=True)
    assert "Access was denied on HubSpot" in response.content.decode()
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_connecting_mailchimp_sets_its_api_root_from_the_metadata(marketer_client, sandbox):
    flow = start_connecting(marketer_client, sandbox.mailchimp_url, name="Mailchimp", provider="mailchimp")
    marketer_client.get(reverse("connections:oauth_callback"), approve_at(flow["authorize_url"]))
    connection = Connection.objects.get(name="Mailchimp")
    assert connection.base_url == sandbox.mailchimp_url
    assert connection.settings["dc"] == "us1"
    assert connection.refresh_token is None and connection.token_expires_at is None


@pytest.mark.django_db
def test_the_connect_form_refuses_a_taken_name_and_a_private_address(marketer_client, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    Connection.objects.create(name="Taken", provider="hubspot", base_url="https://api.hubapi.com")
    response = marketer_client.post(reverse("connections:connect"),
                                    {"provider": "hubspot", "name": "Taken", "base_url": "http://10.0.0.5/hubspot"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "A connection with this name exists already." in page
    assert "private or local network" in page


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["connections:list", "connections:connect"])
def test_the_connection_pages_are_for_marketers(client, url_name):
    client.force_login(user_with_role("rita", "Reviewer"))
    assert client.get(reverse(url_name)).status_code == 403


# Every OAuth request goes through the guarded HTTP layer, and plain http is allowed
# only for allowlisted hosts, without ever switching oauthlib's transport check off for
# the whole process.

INSECURE = "OAUTHLIB_INSECURE_TRANSPORT"
METADATA = "http://169.254.169.254/latest/meta-data/"
MAILCHIMP_TOKEN = ("POST", "/mailchimp-login/oauth2/token")
MAILCHIMP_METADATA = ("GET", "/mailchimp-login/oauth2/metadata")
HUBSPOT_TOKEN = ("POST", "/hubspot/oauth/v1/token")


def mailchimp_server(api_endpoint: str) -> LoopbackServer:
    """An OAuth server in the sandbox's layout whose metadata names `api_endpoint` (make it SANDBOX_URL)."""
    return LoopbackServer({
        MAILCHIMP_TOKEN: Reply(body={"access_token": "mc-token-1", "token_type": "bearer", "expires_in": 0}),
        MAILCHIMP_METADATA: Reply(body={"dc": "us9", "api_endpoint": api_endpoint, "accountname": "Acme"}),
    })


def finish_against(provider: str, base_url: str):
    endpoints = oauth_endpoints(provider, base_url)
    _, flow = authorization_start(endpoints, REDIRECT)
    return authorization_finish(endpoints, flow, {"state": flow["state"], "code": "code-1"})


def test_no_flow_sets_oauthlib_insecure_transport_for_the_process(sandbox, monkeypatch):
    monkeypatch.delenv(INSECURE, raising=False)
    grant = grant_from_sandbox("hubspot", sandbox.hubspot_url)
    token_refresh(oauth_endpoints("hubspot", sandbox.hubspot_url), grant.refresh_token)
    grant_from_sandbox("mailchimp", sandbox.mailchimp_url)
    assert INSECURE not in os.environ


@pytest.mark.parametrize("sandbox_url", ["http://api.example.test", ""])
def test_a_base_url_on_a_plain_http_host_outside_the_allowlist_is_refused(settings, sandbox_url):
    settings.CONNECTION_URL_ALLOWLIST = []
    settings.SANDBOX_URL = sandbox_url
    settings.OAUTH_CLIENTS = {"hubspot": {"client_id": "app-1", "client_secret": "s"}}
    with pytest.raises(OAuthError, match="use https"):
        oauth_endpoints("hubspot", "http://api.example.test/hubspot")


@pytest.mark.parametrize("api_endpoint", ["http://169.254.169.254", "https://[64:ff9b::a9fe:a9fe]",
                                          "https://10.0.0.5/"])
def test_a_mailchimp_api_root_off_the_public_internet_is_refused(api_endpoint, settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with mailchimp_server(api_endpoint) as server:
        settings.SANDBOX_URL = server.url
        with pytest.raises(OAuthError, match="names an API root Syncapp will not call.*private or local network"):
            finish_against("mailchimp", f"{server.url}/mailchimp/3.0")


def test_a_mailchimp_api_root_on_plain_http_is_refused(settings, resolver):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    resolver.answer("us9.api.example.test", ["93.184.216.34"])
    with mailchimp_server("http://us9.api.example.test") as server:
        settings.SANDBOX_URL = server.url
        with pytest.raises(OAuthError, match="Use https"):
            finish_against("mailchimp", f"{server.url}/mailchimp/3.0")


def test_a_public_mailchimp_api_root_is_taken(settings, resolver):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    resolver.answer("us9.api.example.test", ["93.184.216.34"])
    with mailchimp_server("https://us9.api.example.test/") as server:
        settings.SANDBOX_URL = server.url
        grant = finish_against("mailchimp", f"{server.url}/mailchimp/3.0")
    assert grant.base_url == "https://us9.api.example.test/3.0"
    assert grant.settings == {"dc": "us9", "accountname": "Acme"}
    assert [seen.headers["Authorization"] for seen in server.requests[1:]] == ["OAuth mc-token-1"]


def test_a_token_endpoint_that_redirects_is_not_followed(settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with LoopbackServer({HUBSPOT_TOKEN: Reply(307, {}, {"Location": METADATA})}) as server:
        settings.SANDBOX_URL = server.url
        with pytest.raises(OAuthError, match="token request was refused: HTTP 307.*redirects are not followed"):
            finish_against("hubspot", f"{server.url}/hubspot")
        with pytest.raises(RequestRefused, match="HubSpot token refresh was refused: HTTP 307"):
            token_refresh(oauth_endpoints("hubspot", f"{server.url}/hubspot"), "refresh-1")
    assert len(server.requests) == 2


def test_a_token_endpoint_resolving_to_the_metadata_service_is_not_called(settings, resolver):
    settings.CONNECTION_URL_ALLOWLIST = []
    settings.SANDBOX_URL = "https://api.example.test"
    resolver.answer("api.example.test", ["169.254.169.254"])
    with pytest.raises(OAuthError, match="api.example.test resolves to a link-local address"):
        finish_against("hubspot", "https://api.example.test/hubspot")
    with pytest.raises(AddressRefused, match="HubSpot token refresh was refused: Not connecting"):
        token_refresh(oauth_endpoints("hubspot", "https://api.example.test/hubspot"), "refresh-1")


@pytest.mark.django_db
def test_the_connect_form_asks_for_https_instead_of_failing(marketer_client, settings, resolver, monkeypatch):
    monkeypatch.delenv(INSECURE, raising=False)
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    resolver.answer("api.example.test", ["93.184.216.34"])
    response = marketer_client.post(reverse("connections:connect"), {
        "provider": "hubspot", "name": "HubSpot (plain)", "base_url": "http://api.example.test/hubspot"})
    assert response.status_code == 200
    assert "Use https" in response.content.decode()
    assert FLOW_KEY not in marketer_client.session


@pytest.mark.django_db
def test_reconnecting_a_connection_stored_with_plain_http_explains_instead_of_failing(marketer_client, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    connection = Connection.objects.create(name="Old", provider="hubspot", base_url="http://api.example.test/hubspot",
                                           settings={"oauth": {}})
    response = marketer_client.post(reverse("connections:reconnect", args=[connection.pk]), follow=True)
    assert response.status_code == 200
    assert "use https" in response.content.decode()
    assert FLOW_KEY not in marketer_client.session


@pytest.mark.django_db
def test_a_reconnect_whose_metadata_names_the_metadata_service_keeps_the_old_root(marketer_client, settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with mailchimp_server("http://169.254.169.254") as server:
        settings.SANDBOX_URL = server.url
        base_url = f"{server.url}/mailchimp/3.0"
        connection = Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=base_url,
                                               access_token="old-token", settings={"oauth": {}, "dc": "us1"})
        marketer_client.post(reverse("connections:reconnect", args=[connection.pk]))
        flow = marketer_client.session[FLOW_KEY]
        response = marketer_client.get(reverse("connections:oauth_callback"),
                                       {"state": flow["state"], "code": "code-1"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "names an API root Syncapp will not call" in page and "link-local" in page
    connection.refresh_from_db()
    assert connection.base_url == base_url
    assert connection.access_token == "old-token"
    assert connection.settings["dc"] == "us1"
