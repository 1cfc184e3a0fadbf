"""OAuth 2.0 authorization code flow for HubSpot and Mailchimp, with oauthlib.

A flow has two halves. `authorization_start` returns the provider's authorize URL
and the facts to keep in the user's session (a random `state` and a PKCE verifier);
`authorization_finish` checks the callback against them and exchanges the code for
tokens. `token_refresh` trades a refresh token for a new access token (and, with
rotation, a new refresh token).

Endpoints and the OAuth app's credentials come from settings (`OAUTH_ENDPOINTS`,
`OAUTH_CLIENTS`). A connection whose API root is not the provider's real one points at
the sandbox: its OAuth pages are at the same origin, in the sandbox's layout, and it
uses `OAUTH_SANDBOX_CLIENT`.

Every request goes through `connections.http.GuardedSession`, like the provider
clients' requests. The token requests are built with oauthlib's client helpers and
sent through it, rather than with `OAuth2Session.fetch_token`: that refuses plain http
unless `OAUTHLIB_INSECURE_TRANSPORT` is set in the process's environment, which would
let every flow in the process speak plain http. The guarded session allows plain http
to allowlisted hosts (the sandbox on loopback) and to nothing else.
"""
from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from oauthlib.oauth2.rfc6749.utils import list_to_scope

from connections.addresses import AddressRefused, allowlisted
from connections.http import USER_AGENT, GuardedSession, RequestRefused
from connections.providers.base import ProviderError
from connections.registry import provider_class
from connections.validators import validate_public_base_url

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
        if parts.scheme != "https" and not allowlisted(parts.hostname or ""):
            raise OAuthError(
                f"{base_url} uses plain {parts.scheme}: use https (plain http is only for the sandbox "
                "and other hosts in CONNECTION_URL_ALLOWLIST)."
            )
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
        token = client.parse_request_body_response(_token_post(endpoints.token_url, body).text)
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
        # HubSpot's token reply leaves out the scopes; they are the ones approved.
        grant = replace(grant, scopes=" ".join(endpoints.scopes))
    if endpoints.provider == "mailchimp":
        return _with_mailchimp_metadata(endpoints, grant)
    return grant


def token_refresh(endpoints: OAuthEndpoints, refresh_token: str) -> TokenGrant:
    """Trade `refresh_token` for new tokens; raise GrantRevoked when the provider refuses it."""
    client = WebApplicationClient(endpoints.client_id)
    body = client.prepare_refresh_body(
        refresh_token=refresh_token, client_id=endpoints.client_id, client_secret=endpoints.client_secret
    )
    try:
        token = client.parse_request_body_response(_standard_error(_token_post(endpoints.token_url, body)).text)
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
        with GuardedSession() as session:
            response = session.get(
                endpoints.metadata_url,
                headers={"User-Agent": USER_AGENT, "Authorization": f"OAuth {grant.access_token}"},
                timeout=TIMEOUT,
            )
        response.raise_for_status()
        metadata = response.json()
        api_endpoint = metadata["api_endpoint"].rstrip("/")
        dc = str(metadata["dc"])
    except (AddressRefused, RequestRefused) as refusal:
        raise OAuthError(f"Mailchimp's metadata call was refused: {refusal}") from None
    except (requests.RequestException, ValueError, KeyError, AttributeError) as error:
        raise OAuthError(f"Mailchimp's metadata call failed ({type(error).__name__}).") from None
    base_url = f"{api_endpoint}/3.0"
    try:
        # The same check as a typed base URL: the metadata comes from whichever host the
        # flow's token endpoint is on, which for the sandbox layout is the one typed.
        validate_public_base_url(base_url)
    except ValidationError as error:
        raise OAuthError(
            f"Mailchimp's metadata names an API root Syncapp will not call: {' '.join(error.messages)}"
        ) from None
    return replace(grant, base_url=base_url,
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
