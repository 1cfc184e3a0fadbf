"""OAuth 2.0 authorization code flow for HubSpot and Mailchimp, with requests-oauthlib.

A flow has two halves. `authorization_start` returns the provider's authorize URL
and the facts to keep in the user's session (a random `state` and a PKCE verifier);
`authorization_finish` checks the callback against them and exchanges the code for
tokens. `token_refresh` trades a refresh token for a new access token (and, with
rotation, a new refresh token).

Endpoints and the OAuth app's credentials come from settings (`OAUTH_ENDPOINTS`,
`OAUTH_CLIENTS`). A connection whose API root is not the provider's real one points at
the sandbox: its OAuth pages are at the same origin, in the sandbox's layout, and it
uses `OAUTH_SANDBOX_CLIENT`.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils import timezone
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from requests_oauthlib import OAuth2Session

from connections.providers.base import ProviderError
from connections.registry import provider_class

# The scopes each provider's sync needs, and nothing more: HubSpot's contacts read and
# write, and communication preferences write (an opt-out reaches HubSpot only through
# its subscriptions API); `oauth` is required by HubSpot for every app. Mailchimp has no
# scopes.
SCOPES: dict[str, tuple[str, ...]] = {
    "hubspot": ("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
                "communication_preferences.write"),
    "mailchimp": (),
}
# The sandbox's paths for each provider's OAuth endpoints (see sandbox.oauth).
SANDBOX_PATHS = {
    "hubspot": {"authorize_url": "/hubspot/oauth/authorize", "token_url": "/hubspot/oauth/v1/token"},
    "mailchimp": {
        "authorize_url": "/mailchimp-login/oauth2/authorize",
        "token_url": "/mailchimp-login/oauth2/token",
        "metadata_url": "/mailchimp-login/oauth2/metadata",
    },
}
TIMEOUT = (5.0, 30.0)


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
    metadata_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    sandbox: bool


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
    """Return the providers that connect with OAuth."""
    return list(SCOPES)


def scopes_for(provider: str) -> tuple[str, ...]:
    if provider not in SCOPES:
        raise OAuthError(f"{provider!r} does not connect with OAuth.")
    return SCOPES[provider]


def oauth_endpoints(provider: str, base_url: str = "") -> OAuthEndpoints:
    """Return where `provider`'s OAuth lives for a connection with API root `base_url`."""
    scopes = scopes_for(provider)
    default_root = provider_class(provider).default_base_url
    sandbox = bool(base_url) and not _same_host(base_url, default_root)
    if sandbox:
        parts = urlsplit(base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        urls = {name: origin + path for name, path in SANDBOX_PATHS[provider].items()}
        client = settings.OAUTH_SANDBOX_CLIENT
        if parts.scheme == "http" and parts.hostname in settings.CONNECTION_URL_ALLOWLIST:
            # oauthlib refuses plain HTTP unless told; the sandbox on loopback speaks it.
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    else:
        urls = settings.OAUTH_ENDPOINTS[provider]
        client = settings.OAUTH_CLIENTS[provider]
    if not client.get("client_id") or not client.get("client_secret"):
        raise OAuthError(f"No OAuth app is configured for {provider}: set its client id and secret in the environment.")
    return OAuthEndpoints(
        provider=provider,
        authorize_url=urls["authorize_url"],
        token_url=urls["token_url"],
        metadata_url=urls.get("metadata_url", ""),
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        scopes=scopes,
        sandbox=sandbox,
    )


def authorization_start(endpoints: OAuthEndpoints, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """Return the authorize URL to send the user to, and the flow facts to keep in their session."""
    client = WebApplicationClient(endpoints.client_id)
    verifier = client.create_code_verifier(64)
    session = OAuth2Session(
        client=client, redirect_uri=redirect_uri, scope=list(endpoints.scopes) or None,
        state=secrets.token_urlsafe(32),
    )
    url, state = session.authorization_url(
        endpoints.authorize_url,
        code_challenge=client.create_code_challenge(verifier, "S256"),
        code_challenge_method="S256",
    )
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
    session = OAuth2Session(client=WebApplicationClient(endpoints.client_id), redirect_uri=flow["redirect_uri"])
    try:
        token = session.fetch_token(
            endpoints.token_url,
            code=code,
            client_secret=endpoints.client_secret,
            include_client_id=True,
            code_verifier=flow["code_verifier"],
            timeout=TIMEOUT,
        )
    except (OAuth2Error, ValueError) as error:
        raise OAuthError(f"{_label(endpoints)} refused the authorization code: {_describe(error)}") from None
    except requests.RequestException as error:
        raise OAuthError(
            f"{_label(endpoints)}'s token endpoint could not be reached ({type(error).__name__})."
        ) from None
    grant = _grant(token)
    if not grant.scopes:
        # HubSpot's token reply leaves out the scopes; they are the ones approved.
        grant = replace(grant, scopes=" ".join(endpoints.scopes))
    if endpoints.provider == "mailchimp":
        return _with_mailchimp_metadata(endpoints, grant)
    return grant


def token_refresh(endpoints: OAuthEndpoints, refresh_token: str) -> TokenGrant:
    """Trade `refresh_token` for new tokens; raise GrantRevoked when the provider refuses it."""
    session = OAuth2Session(client=WebApplicationClient(endpoints.client_id))
    session.register_compliance_hook("refresh_token_response", _standard_error)
    try:
        token = session.refresh_token(
            endpoints.token_url,
            refresh_token=refresh_token,
            client_id=endpoints.client_id,
            client_secret=endpoints.client_secret,
            timeout=TIMEOUT,
        )
    except OAuth2Error as error:
        if error.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
            raise GrantRevoked(f"{_label(endpoints)} refused the refresh token: {_describe(error)}") from None
        raise ProviderError(
            f"{_label(endpoints)} token refresh failed: {_describe(error)}", status=error.status_code
        ) from None
    except requests.RequestException as error:
        raise ProviderError(f"{_label(endpoints)} token refresh failed ({type(error).__name__}).") from None
    grant = _grant(token)
    if grant.refresh_token is None:
        # Without rotation a provider may leave the refresh token out: it stays valid.
        grant = replace(grant, refresh_token=refresh_token)
    return grant


def _standard_error(response: requests.Response) -> requests.Response:
    """Rewrite HubSpot's `{status: "BAD_REFRESH_TOKEN", message}` as RFC 6749's invalid_grant."""
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return response
        if isinstance(body, dict) and "error" not in body and body.get("status"):
            error = "invalid_grant" if body["status"] == "BAD_REFRESH_TOKEN" else "invalid_request"
            if body["status"] == "BAD_CLIENT_ID":
                error = "invalid_client"
            response._content = json.dumps(
                {"error": error, "error_description": f"{body['status']}: {body.get('message', '')}"}
            ).encode()
    return response


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


def _with_mailchimp_metadata(endpoints: OAuthEndpoints, grant: TokenGrant) -> TokenGrant:
    """Ask Mailchimp which data center the account lives in: the API root depends on it."""
    try:
        response = requests.get(
            endpoints.metadata_url, headers={"Authorization": f"OAuth {grant.access_token}"}, timeout=TIMEOUT
        )
        response.raise_for_status()
        metadata = response.json()
        api_endpoint = metadata["api_endpoint"].rstrip("/")
        dc = str(metadata["dc"])
    except (requests.RequestException, ValueError, KeyError, AttributeError) as error:
        raise OAuthError(f"Mailchimp's metadata call failed ({type(error).__name__}).") from None
    return replace(grant, base_url=f"{api_endpoint}/3.0",
                   settings={"dc": dc, "accountname": str(metadata.get("accountname", ""))[:200]})


def _same_host(url: str, other: str) -> bool:
    host = urlsplit(url).hostname or ""
    # Mailchimp's default root carries a {dc} placeholder: compare the registrable part.
    other_host = (urlsplit(other).hostname or "").replace("{dc}.", "")
    return host == other_host or host.endswith("." + other_host)


def _label(endpoints: OAuthEndpoints) -> str:
    return provider_class(endpoints.provider).label


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or getattr(error, "error", None) or str(error)
    return str(description)[:300]
