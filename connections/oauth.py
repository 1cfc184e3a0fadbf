"""OAuth 2.0 authorization code flow, with oauthlib, for every provider that declares it.

A flow has two halves. `authorization_start` returns the provider's authorize URL
and the facts to keep in the user's session (a random `state` and a PKCE verifier);
`authorization_finish` checks the callback against them and exchanges the code for
tokens. `token_refresh` trades a refresh token for a new access token (and, with
rotation, a new refresh token).

Nothing here knows a provider by name. A provider connects with OAuth by declaring
`oauth` (a `connections.providers.base.OAuthSpec`: its endpoints, scopes and the
sandbox's paths for them) and, where the standard flow is not all, overriding its hooks:
`oauth_grant_complete` (after the code exchange; Mailchimp asks its metadata endpoint
for the API root there) and `oauth_token_error` (HubSpot's token errors are not RFC
6749's). The OAuth app's credentials come from settings (`OAUTH_CLIENTS`, by provider
name), and an installation may move any endpoint (`OAUTH_ENDPOINTS`).

A connection uses the sandbox's OAuth (its approval screens, in its layout, and the
sandbox's app, `OAUTH_SANDBOX_CLIENT`) only when its base URL is at the origin of
`settings.SANDBOX_URL` (scheme, host and port), and only while that is set: production
sets none. Every other base URL, the provider's default or not, authorizes through the
provider's own endpoints with the installation's app for it.

Every request goes through `connections.http.GuardedSession`, like the provider
clients' requests, the providers' hooks included (they are handed the session). The
token requests are built with oauthlib's client helpers and sent through it, rather
than with `OAuth2Session.fetch_token`: that refuses plain http unless
`OAUTHLIB_INSECURE_TRANSPORT` is set in the process's environment, which would let
every flow in the process speak plain http. The guarded session allows plain http to
allowlisted hosts (the sandbox on loopback) and to nothing else.
"""
from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils import timezone
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from oauthlib.oauth2.rfc6749.utils import list_to_scope

from connections.addresses import AddressRefused, allowlisted, normalized_host
from connections.http import USER_AGENT, GuardedSession, RequestRefused
from connections.providers.base import Provider, ProviderError
from connections.registry import PROVIDERS, UnknownProvider, provider_class

TIMEOUT = (5.0, 30.0)
DEFAULT_PORTS = {"http": 80, "https": 443}


class OAuthError(Exception):
    """The flow cannot go on; the message is safe to show and holds no secret."""


class StateMismatch(OAuthError):
    """The callback's state is not the one this session started with."""


class GrantRevoked(OAuthError):
    """The provider refused the refresh token: the grant was revoked or has expired."""


@dataclass(frozen=True)
class OAuthEndpoints:
    provider: str
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    sandbox: bool
    # Every endpoint of the flow by name, the two above and those the provider's hooks call.
    urls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenGrant:
    """What a code exchange or a refresh gives: store all of it together."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    lifetime_seconds: int | None
    scopes: str
    settings: dict[str, Any]
    base_url: str | None = None


def oauth_providers() -> list[str]:
    """Return the registered providers that connect with OAuth: those that declare it."""
    return [name for name, cls in PROVIDERS.items() if cls.oauth is not None]


def scopes_for(provider: str) -> tuple[str, ...]:
    """Return the scopes a flow for `provider` asks for."""
    return tuple(_oauth_class(provider).oauth.scopes)


def sandbox_origin() -> str | None:
    """Return the configured sandbox's origin (`http://127.0.0.1:8765`), or None when there is no sandbox."""
    origin = _origin(settings.SANDBOX_URL or "")
    if origin is None:
        return None
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def at_sandbox(base_url: str) -> bool:
    """Return whether `base_url` is at the configured sandbox's origin (scheme, host and port)."""
    sandbox = _origin(settings.SANDBOX_URL or "")
    return sandbox is not None and _origin(base_url or "") == sandbox


def oauth_endpoints(provider: str, base_url: str = "") -> OAuthEndpoints:
    """Return where `provider`'s OAuth lives for a connection with API root `base_url`, and the app to use."""
    cls = _oauth_class(provider)
    spec = cls.oauth
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme != "https" and not allowlisted(parts.hostname or ""):
            raise OAuthError(
                f"{base_url} uses plain {parts.scheme}: use https (plain http is only for the sandbox "
                "and other hosts in CONNECTION_URL_ALLOWLIST)."
            )
    sandbox = bool(base_url) and at_sandbox(base_url)
    if sandbox:
        if not spec.sandbox_paths:
            raise OAuthError(f"The sandbox does not emulate {cls.label}'s OAuth: leave the API root empty "
                             f"to connect to {cls.label} itself.")
        origin = sandbox_origin()
        urls = {name: origin + path for name, path in spec.sandbox_paths.items()}
        client = settings.OAUTH_SANDBOX_CLIENT or {}
        if not client.get("client_id") or not client.get("client_secret"):
            raise OAuthError("No OAuth app is configured for the sandbox: set SANDBOX_OAUTH_CLIENT_ID and "
                             "SANDBOX_OAUTH_CLIENT_SECRET in the environment.")
    else:
        urls = {"authorize_url": spec.authorize_url, "token_url": spec.token_url, **spec.extra_urls,
                **(settings.OAUTH_ENDPOINTS.get(provider) or {})}
        client = settings.OAUTH_CLIENTS.get(provider) or {}
        if not client.get("client_id") or not client.get("client_secret"):
            raise OAuthError(f"No OAuth app is configured for {cls.label}: set its client id and secret "
                             "in the environment.")
    return OAuthEndpoints(
        provider=provider,
        authorize_url=urls["authorize_url"],
        token_url=urls["token_url"],
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        scopes=tuple(spec.scopes),
        sandbox=sandbox,
        urls=urls,
    )


def authorization_start(endpoints: OAuthEndpoints, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """Return the authorize URL to send the user to, and the flow facts to keep in their session."""
    client = WebApplicationClient(endpoints.client_id)
    verifier = client.create_code_verifier(64)
    state = secrets.token_urlsafe(32)
    # The parameters oauthlib's prepare_grant_uri sends (RFC 6749 4.1.1 and RFC 7636
    # 4.3); built here because it refuses a plain-http sandbox without the process-wide
    # OAUTHLIB_INSECURE_TRANSPORT.
    params = [("response_type", "code"), ("client_id", endpoints.client_id), ("redirect_uri", redirect_uri)]
    if endpoints.scopes:
        params.append(("scope", list_to_scope(list(endpoints.scopes))))
    params += [
        ("state", state),
        ("code_challenge", client.create_code_challenge(verifier, "S256")),
        ("code_challenge_method", "S256"),
    ]
    url = add_params_to_uri(endpoints.authorize_url, params)
    return url, {"state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}


def authorization_finish(endpoints: OAuthEndpoints, flow: dict[str, str], params: dict[str, str]) -> TokenGrant:
    """Check the callback's `params` against `flow` and exchange the code for tokens."""
    expected = flow.get("state", "")
    if not expected or not hmac.compare_digest(params.get("state", "").encode(), expected.encode()):
        raise StateMismatch(
            "The sign-in answer does not belong to this session (its state does not match). "
            "Start connecting again from Syncapp."
        )
    if params.get("error"):
        if params["error"] == "access_denied":
            raise OAuthError(f"Access was denied on {_label(endpoints)}: nothing was connected.")
        raise OAuthError(f"{_label(endpoints)} answered with the error {params['error'][:100]!r}.")
    code = params.get("code")
    if not code:
        raise OAuthError(f"{_label(endpoints)} sent no authorization code.")
    client = WebApplicationClient(endpoints.client_id)
    body = client.prepare_request_body(
        code=code,
        redirect_uri=flow["redirect_uri"],
        include_client_id=True,
        client_secret=endpoints.client_secret,
        code_verifier=flow["code_verifier"],
    )
    try:
        token = client.parse_request_body_response(_token_reply(endpoints, body))
    except (OAuth2Error, ValueError) as error:
        raise OAuthError(f"{_label(endpoints)} refused the authorization code: {_describe(error)}") from None
    except (AddressRefused, RequestRefused) as refusal:
        raise OAuthError(f"{_label(endpoints)}'s token request was refused: {refusal}") from None
    except requests.RequestException as error:
        raise OAuthError(
            f"{_label(endpoints)}'s token endpoint could not be reached ({type(error).__name__})."
        ) from None
    grant = _grant(token)
    if not grant.scopes:
        # A token reply may leave out the scopes (HubSpot's does); they are the ones approved.
        grant = replace(grant, scopes=" ".join(endpoints.scopes))
    return _completed(endpoints, grant)


def token_refresh(endpoints: OAuthEndpoints, refresh_token: str) -> TokenGrant:
    """Trade `refresh_token` for new tokens; raise GrantRevoked when the provider refuses it."""
    client = WebApplicationClient(endpoints.client_id)
    body = client.prepare_refresh_body(
        refresh_token=refresh_token, client_id=endpoints.client_id, client_secret=endpoints.client_secret
    )
    try:
        token = client.parse_request_body_response(_token_reply(endpoints, body))
    except OAuth2Error as error:
        if error.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            raise GrantRevoked(f"{_label(endpoints)} refused the refresh token: {_describe(error)}") from None
        raise ProviderError(
            f"{_label(endpoints)} token refresh failed: {_describe(error)}", status=error.status_code
        ) from None
    except ValueError:
        raise ProviderError(f"{_label(endpoints)} token refresh failed: the reply is not a token.") from None
    except (AddressRefused, RequestRefused) as refusal:
        raise type(refusal)(
            f"{_label(endpoints)} token refresh was refused: {refusal}", status=refusal.status
        ) from None
    except requests.RequestException as error:
        raise ProviderError(f"{_label(endpoints)} token refresh failed ({type(error).__name__}).") from None
    grant = _grant(token)
    if grant.refresh_token is None:
        # Without rotation a provider may leave the refresh token out: it stays valid.
        grant = replace(grant, refresh_token=refresh_token)
    return grant


def _token_post(token_url: str, body: str) -> requests.Response:
    """POST a form-encoded token request (RFC 6749 4.1.3, 6) through the guarded session."""
    with GuardedSession() as session:
        return session.post(
            token_url,
            data=body,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=TIMEOUT,
        )


def _token_reply(endpoints: OAuthEndpoints, body: str) -> str:
    """POST a token request and return the reply's text.

    An error reply that is not RFC 6749's is rewritten as one where the provider's hook
    (`oauth_token_error`) reads it: oauthlib then raises the matching error.
    """
    response = _token_post(endpoints.token_url, body)
    if response.status_code < 400:
        return response.text
    try:
        reply = response.json()
    except ValueError:
        return response.text
    if isinstance(reply, dict) and "error" in reply:
        return response.text
    translated = provider_class(endpoints.provider).oauth_token_error(response.status_code, reply)
    return json.dumps(translated) if translated else response.text


def _grant(token: dict[str, Any]) -> TokenGrant:
    lifetime = token.get("expires_in")
    try:
        lifetime = int(lifetime) if lifetime else None
    except (TypeError, ValueError):
        lifetime = None
    scope = token.get("scope") or ""
    return TokenGrant(
        access_token=token["access_token"],
        refresh_token=token.get("refresh_token") or None,
        expires_at=timezone.now() + timedelta(seconds=lifetime) if lifetime else None,
        lifetime_seconds=lifetime,
        scopes=" ".join(scope) if isinstance(scope, list) else str(scope),
        settings={},
    )


def _completed(endpoints: OAuthEndpoints, grant: TokenGrant) -> TokenGrant:
    """Hand a new grant to the provider's `oauth_grant_complete`, its requests going through the guard."""
    cls = provider_class(endpoints.provider)
    try:
        with GuardedSession() as session:
            session.headers["User-Agent"] = USER_AGENT
            return cls.oauth_grant_complete(grant, urls=endpoints.urls, session=session, timeout=TIMEOUT)
    except ProviderError as error:
        # The provider's message, safe to show (AddressRefused and RequestRefused too).
        raise OAuthError(str(error)) from None


def _oauth_class(provider: str) -> type[Provider]:
    """Return the provider class registered under `provider`, which must declare OAuth."""
    try:
        cls = provider_class(provider)
    except UnknownProvider:
        raise OAuthError(f"{provider!r} does not connect with OAuth.") from None
    if cls.oauth is None:
        raise OAuthError(f"{cls.label} does not connect with OAuth; it takes other credentials.")
    return cls


def _origin(url: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of an http(s) URL, the port made explicit; None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, normalized_host(parts.hostname), port or DEFAULT_PORTS[scheme]


def _label(endpoints: OAuthEndpoints) -> str:
    return provider_class(endpoints.provider).label


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or getattr(error, "error", None) or str(error)
    return str(description)[:300]
