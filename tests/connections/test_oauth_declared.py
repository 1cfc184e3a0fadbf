"""OAuth as each provider declares it: the sandbox only at its configured origin, no provider named in oauth.py.

A provider connects with OAuth by declaring an `OAuthSpec` (its endpoints, scopes and
the sandbox's paths for them) and, where it needs them, the hooks
`oauth_grant_complete` and `oauth_token_error`; `connections.oauth` asks the registry
and never names a provider. A connection uses the sandbox's OAuth layout and app only
when its base URL is at `SANDBOX_URL`'s origin (scheme, host and port); any other base
URL authorizes through the provider's own endpoints with the provider's own app.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import token
import tokenize
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

import connections.oauth
from connections.http import GuardedSession
from connections.oauth import (
    OAuthError,
    at_sandbox,
    authorization_finish,
    authorization_start,
    oauth_endpoints,
    oauth_providers,
    token_refresh,
)
from connections.providers.base import OAuthSpec, Provider, ProviderError
from connections.providers.hubspot import HubSpotProvider
from connections.providers.mailchimp import MailchimpProvider
from connections.registry import PROVIDERS
from connections.views import FLOW_KEY
from syncapp.roles import MARKETER
from tests.connections.loopback import LoopbackServer, Reply
from tests.connections.oauth_sandbox import REDIRECT
from tests.workspace import user_with_role

REAL_CLIENTS = {"hubspot": {"client_id": "real-hubspot-app", "client_secret": "real-hubspot-secret"},
                "mailchimp": {"client_id": "real-mailchimp-app", "client_secret": "real-mailchimp-secret"}}
SANDBOX_CLIENT = {"client_id": "sandbox-app", "client_secret": "sandbox-only-secret"}
REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def configured(settings):
    """A sandbox at http://127.0.0.1:8765 with its own app, and real apps for both providers."""
    settings.SANDBOX_URL = "http://127.0.0.1:8765"
    settings.OAUTH_SANDBOX_CLIENT = SANDBOX_CLIENT
    settings.OAUTH_CLIENTS = REAL_CLIENTS
    settings.OAUTH_ENDPOINTS = {}
    return settings


def form_of(body: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(body).items()}


# The sandbox only at its configured origin.

@pytest.mark.parametrize("base_url", [
    "https://api.example.test/hubspot",        # another https host
    "https://crm-proxy.example.test",          # another https host, no path
    "http://127.0.0.1:8766/hubspot",           # the sandbox's host on another port
    "https://127.0.0.1:8765/hubspot",          # the sandbox's host and port over another scheme
    "http://localhost:8765/hubspot",           # another name for the same machine is another origin
])
def test_a_base_url_off_the_sandbox_origin_gets_the_providers_own_oauth_and_app(configured, base_url):
    endpoints = oauth_endpoints("hubspot", base_url)

    assert not endpoints.sandbox
    assert endpoints.authorize_url == "https://app.hubspot.com/oauth/authorize"
    assert endpoints.token_url == "https://api.hubapi.com/oauth/v1/token"
    assert endpoints.client_id == "real-hubspot-app"
    assert endpoints.client_secret == "real-hubspot-secret"
    assert "/hubspot/oauth/" not in endpoints.authorize_url + endpoints.token_url
    url, _ = authorization_start(endpoints, REDIRECT)
    assert url.startswith("https://app.hubspot.com/oauth/authorize?")
    assert "sandbox" not in url


def test_a_token_request_for_another_host_never_carries_the_sandbox_secret(configured, resolver):
    """The regression: any base URL off the real host used to get the sandbox's layout and secret."""
    resolver.answer("api.example.test", ["93.184.216.34"])
    configured.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    token_path = ("POST", "/real/oauth/v1/token")
    with LoopbackServer({token_path: Reply(body={"access_token": "a-1", "refresh_token": "r-1",
                                                 "expires_in": 1800, "token_type": "bearer"})}) as real:
        # Where HubSpot's own token endpoint is, for this test (HUBSPOT_TOKEN_URL).
        configured.OAUTH_ENDPOINTS = {"hubspot": {"token_url": f"{real.url}/real/oauth/v1/token"}}
        endpoints = oauth_endpoints("hubspot", "https://api.example.test/hubspot")
        _, flow = authorization_start(endpoints, REDIRECT)
        grant = authorization_finish(endpoints, flow, {"state": flow["state"], "code": "code-1"})
        token_refresh(endpoints, grant.refresh_token)

    assert [(seen.method, seen.path) for seen in real.requests] == [token_path, token_path]
    for seen in real.requests:
        form = form_of(seen.body)
        assert form["client_id"] == "real-hubspot-app" and form["client_secret"] == "real-hubspot-secret"
        assert "sandbox-only-secret" not in seen.body + json.dumps(seen.headers)


def test_the_sandbox_origin_gets_the_sandbox_layout_and_app(configured):
    endpoints = oauth_endpoints("mailchimp", "http://127.0.0.1:8765/mailchimp/3.0")

    assert endpoints.sandbox
    assert endpoints.authorize_url == "http://127.0.0.1:8765/mailchimp-login/oauth2/authorize"
    assert endpoints.token_url == "http://127.0.0.1:8765/mailchimp-login/oauth2/token"
    assert endpoints.urls["metadata_url"] == "http://127.0.0.1:8765/mailchimp-login/oauth2/metadata"
    assert (endpoints.client_id, endpoints.client_secret) == ("sandbox-app", "sandbox-only-secret")


@pytest.mark.parametrize("sandbox_url, base_url", [
    ("http://127.0.0.1:8765/", "http://127.0.0.1:8765/hubspot"),
    ("http://LOCALHOST:8765", "http://localhost:8765/hubspot"),
    ("https://sandbox.example.test", "https://sandbox.example.test:443/hubspot"),
    ("http://sandbox.internal", "http://sandbox.internal:80/hubspot"),
])
def test_the_sandbox_origin_compares_scheme_host_and_port(settings, sandbox_url, base_url):
    settings.SANDBOX_URL = sandbox_url
    assert at_sandbox(base_url)


def test_without_a_sandbox_its_address_is_the_providers_own_oauth(configured):
    configured.SANDBOX_URL = ""
    assert not at_sandbox("http://127.0.0.1:8765/hubspot")
    endpoints = oauth_endpoints("hubspot", "http://127.0.0.1:8765/hubspot")
    assert not endpoints.sandbox and endpoints.token_url == "https://api.hubapi.com/oauth/v1/token"
    assert endpoints.client_secret == "real-hubspot-secret"


def test_the_sandbox_without_its_app_is_a_clear_error(configured):
    configured.OAUTH_SANDBOX_CLIENT = {"client_id": "", "client_secret": ""}
    with pytest.raises(OAuthError, match="No OAuth app is configured for the sandbox.*SANDBOX_OAUTH_CLIENT_ID"):
        oauth_endpoints("hubspot", "http://127.0.0.1:8765/hubspot")


def test_the_providers_own_endpoints_can_be_moved_in_settings(configured):
    configured.OAUTH_ENDPOINTS = {"hubspot": {"token_url": "https://api.hubapi.com/oauth/v3/token"}}
    endpoints = oauth_endpoints("hubspot", "")
    assert endpoints.token_url == "https://api.hubapi.com/oauth/v3/token"
    assert endpoints.authorize_url == "https://app.hubspot.com/oauth/authorize"


@pytest.mark.django_db
def test_the_connect_form_sends_another_host_to_the_providers_own_approval_screen(client, configured, resolver):
    resolver.answer("api.example.test", ["93.184.216.34"])
    client.force_login(user_with_role("mara", MARKETER))
    response = client.post(reverse("connections:connect"), {
        "provider": "hubspot", "name": "HubSpot (proxy)", "base_url": "https://api.example.test/hubspot"})
    assert response.status_code == 302
    flow = client.session[FLOW_KEY]
    query = form_of(urlsplit(flow["authorize_url"]).query)
    assert flow["authorize_url"].startswith("https://app.hubspot.com/oauth/authorize?")
    assert query["client_id"] == "real-hubspot-app"


# Declared by the provider.

def test_the_oauth_providers_are_the_registered_ones_that_declare_oauth(monkeypatch):
    class KeyOnly(HubSpotProvider):
        name = "keyonly"
        label = "Key Only"
        oauth = None

    monkeypatch.setitem(PROVIDERS, "keyonly", KeyOnly)
    assert oauth_providers() == [name for name, cls in PROVIDERS.items() if cls.oauth is not None]
    assert {"hubspot", "mailchimp"} <= set(oauth_providers())
    assert "keyonly" not in oauth_providers()
    with pytest.raises(OAuthError, match="Key Only does not connect with OAuth"):
        oauth_endpoints("keyonly", "")


def test_hubspot_and_mailchimp_declare_their_oauth():
    assert isinstance(HubSpotProvider.oauth, OAuthSpec) and isinstance(MailchimpProvider.oauth, OAuthSpec)
    assert HubSpotProvider.oauth.scopes == (
        "oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "communication_preferences.write")
    assert MailchimpProvider.oauth.scopes == ()
    assert set(MailchimpProvider.oauth.sandbox_paths) == {"authorize_url", "token_url", "metadata_url"}
    assert Provider.oauth is None


class Acme(Provider):
    """A provider this module does not know: everything comes from its declaration."""

    name = "acme"
    label = "Acme CRM"
    default_base_url = "https://api.acme.test"
    oauth = OAuthSpec(
        authorize_url="https://login.acme.test/authorize",
        token_url="https://login.acme.test/token",
        scopes=("contacts",),
        extra_urls={"account_url": "https://login.acme.test/account"},
        sandbox_paths={"authorize_url": "/acme/authorize", "token_url": "/acme/token", "account_url": "/acme/account"},
    )
    sessions: list = []

    @classmethod
    def oauth_grant_complete(cls, grant, *, urls, session, timeout):
        cls.sessions.append(session)
        account = session.get(urls["account_url"], headers={"Authorization": f"Bearer {grant.access_token}"},
                              timeout=timeout).json()
        if "region" not in account:
            raise ProviderError("Acme CRM's account call named no region.")
        return replace(grant, settings={"region": account["region"]})

    @classmethod
    def oauth_token_error(cls, status, body):
        if isinstance(body, dict) and body.get("code") == "EXPIRED":
            return {"error": "invalid_grant", "error_description": "EXPIRED"}
        return None

    auth_headers = discover_fields = read_changed = read_by_ids = upsert_batch = None
    archive = find_person = erase = None


def test_a_provider_is_driven_by_its_declaration_alone(settings, monkeypatch):
    monkeypatch.setitem(PROVIDERS, "acme", Acme)
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    settings.OAUTH_SANDBOX_CLIENT = SANDBOX_CLIENT
    routes = {
        ("POST", "/acme/token"): Reply(body={"access_token": "t-1", "refresh_token": "r-1", "token_type": "bearer"}),
        ("GET", "/acme/account"): Reply(body={"region": "eu"}),
    }
    with LoopbackServer(routes) as server:
        settings.SANDBOX_URL = server.url
        endpoints = oauth_endpoints("acme", f"{server.url}/acme")
        url, flow = authorization_start(endpoints, REDIRECT)
        grant = authorization_finish(endpoints, flow, {"state": flow["state"], "code": "c-1"})
        routes[("POST", "/acme/token")] = Reply(400, {"code": "EXPIRED"})
        with pytest.raises(connections.oauth.GrantRevoked, match="Acme CRM refused the refresh token: EXPIRED"):
            token_refresh(endpoints, "r-1")

    assert url.startswith(f"{server.url}/acme/authorize?") and "scope=contacts" in url
    assert grant.settings == {"region": "eu"} and grant.scopes == "contacts"
    assert [seen.path for seen in server.requests] == ["/acme/token", "/acme/account", "/acme/token"]
    assert server.requests[1].headers["Authorization"] == "Bearer t-1"
    # The hook's requests go through the guarded session too.
    assert isinstance(Acme.sessions[-1], GuardedSession)


def test_a_failing_grant_hook_is_an_oauth_error_with_its_message(settings, monkeypatch):
    monkeypatch.setitem(PROVIDERS, "acme", Acme)
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    settings.OAUTH_SANDBOX_CLIENT = SANDBOX_CLIENT
    with LoopbackServer({
        ("POST", "/acme/token"): Reply(body={"access_token": "t-1", "token_type": "bearer"}),
        ("GET", "/acme/account"): Reply(body={}),
    }) as server:
        settings.SANDBOX_URL = server.url
        endpoints = oauth_endpoints("acme", f"{server.url}/acme")
        _, flow = authorization_start(endpoints, REDIRECT)
        with pytest.raises(OAuthError, match="^Acme CRM's account call named no region.$"):
            authorization_finish(endpoints, flow, {"state": flow["state"], "code": "c-1"})


@pytest.mark.parametrize("reply, expected", [
    ({"status": "BAD_REFRESH_TOKEN", "message": "gone"}, "invalid_grant"),
    ({"status": "BAD_AUTH_CODE", "message": "used"}, "invalid_grant"),
    ({"status": "BAD_CLIENT_ID", "message": "who"}, "invalid_client"),
    ({"status": "BAD_GRANT_TYPE", "message": "what"}, "invalid_request"),
])
def test_hubspot_reads_its_token_errors_as_rfc_6749(reply, expected):
    translated = HubSpotProvider.oauth_token_error(400, reply)
    assert translated == {"error": expected, "error_description": f"{reply['status']}: {reply['message']}"}


def test_hubspot_leaves_other_token_replies_alone():
    assert HubSpotProvider.oauth_token_error(400, {"error": "invalid_grant"}) is None
    assert HubSpotProvider.oauth_token_error(400, ["not", "a", "dict"]) is None
    assert Provider.oauth_token_error(400, {"status": "BAD_REFRESH_TOKEN"}) is None


# No provider named in oauth.py's code (comments and docstrings may name them).

def code_tokens(source: str) -> list[tuple[int, str]]:
    """(line, text) of every name and string literal, docstrings and comments left out."""
    found, previous = [], token.NEWLINE
    for item in tokenize.generate_tokens(io.StringIO(source).readline):
        if item.type == token.NAME:
            found.append((item.start[0], item.string))
        elif item.type == token.STRING and previous not in (token.NEWLINE, token.INDENT, token.DEDENT, tokenize.NL):
            found.append((item.start[0], item.string))
        if item.type not in (tokenize.COMMENT, tokenize.NL):
            previous = item.type
    return found


def provider_words() -> set[str]:
    words = set()
    for name, cls in PROVIDERS.items():
        for word in (name, cls.label, cls.__name__.removesuffix("Provider")):
            words.add(re.sub(r"[^a-z0-9]", "", word.lower()))
    return words


def test_the_check_sees_code_but_not_comments_or_docstrings():
    source = ('"""HubSpot in a docstring."""\n# Mailchimp in a comment\n'
              'def f(x):\n    """Mailchimp again."""\n    return x == "mailchimp" or hubspot_scopes\n')
    named = [text for _, text in code_tokens(source)
             if any(word in re.sub(r"[^a-z0-9]", "", text.lower()) for word in provider_words())]
    assert named == ['"mailchimp"', "hubspot_scopes"]


def test_oauth_py_names_no_provider_in_its_code():
    source = Path(connections.oauth.__file__).read_text()
    words = provider_words()
    named = [f"line {line}: {text}" for line, text in code_tokens(source)
             if any(word in re.sub(r"[^a-z0-9]", "", text.lower()) for word in words)]
    assert not named, f"connections/oauth.py names a provider; declare it on the provider instead: {named}"


# The sandbox's app: development and tests have it, production has no sandbox at all.

SHOW_SANDBOX = """
import json
from django.conf import settings
print(json.dumps({"url": settings.SANDBOX_URL, "client": settings.OAUTH_SANDBOX_CLIENT}))
"""
SANDBOX_VARIABLES = ("SANDBOX_URL", "SANDBOX_OAUTH_CLIENT_ID", "SANDBOX_OAUTH_CLIENT_SECRET")


def sandbox_settings(module: str, **env: str) -> dict:
    """The sandbox settings `module` loads in a fresh interpreter, with `env` and no other SANDBOX_* variable."""
    environment = {name: value for name, value in os.environ.items()
                   if name not in (*SANDBOX_VARIABLES, "DATABASE_URL", "REDIS_URL")}
    environment.update(SECRET_KEY=secrets.token_urlsafe(50), SALT_KEY=secrets.token_urlsafe(32),
                       SUPPRESSION_KEYS=f"k1:{secrets.token_urlsafe(32)}",
                       RECEIPT_SIGNING_KEY=secrets.token_urlsafe(32), DJANGO_SETTINGS_MODULE=module, **env)
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup()\n{SHOW_SANDBOX}"],
                            cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_has_no_sandbox_whatever_the_environment_says():
    loaded = sandbox_settings("syncapp.settings.production", SANDBOX_URL="http://127.0.0.1:8765",
                              SANDBOX_OAUTH_CLIENT_ID="id", SANDBOX_OAUTH_CLIENT_SECRET="secret")
    assert loaded == {"url": "", "client": {"client_id": "", "client_secret": ""}}


def test_the_shared_settings_hold_no_sandbox_secret():
    assert sandbox_settings("syncapp.settings.base") == {"url": "", "client": {"client_id": "", "client_secret": ""}}


def test_development_has_the_demos_sandbox_and_its_built_in_app():
    from sandbox.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    assert sandbox_settings("syncapp.settings") == {
        "url": "http://127.0.0.1:8765",
        "client": {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET},
    }
    moved = sandbox_settings("syncapp.settings", SANDBOX_URL="http://127.0.0.1:9999",
                             SANDBOX_OAUTH_CLIENT_ID="id-2", SANDBOX_OAUTH_CLIENT_SECRET="secret-2")
    assert moved == {"url": "http://127.0.0.1:9999", "client": {"client_id": "id-2", "client_secret": "secret-2"}}
