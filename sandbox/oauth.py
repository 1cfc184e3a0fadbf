"""OAuth 2.0 for the emulated providers: approval screens, token endpoints, grants.

HubSpot (stands for https://app.hubspot.com/oauth/authorize and
https://api.hubapi.com/oauth/v1/token):

GET  /hubspot/oauth/authorize?client_id&redirect_uri&scope&state[&code_challenge&code_challenge_method]
    An approval screen listing the requested scopes, with Approve and Deny buttons
    (they POST back to the same path). Approve redirects to `redirect_uri` with `code`
    and `state`; Deny with `error=access_denied`.
POST /hubspot/oauth/v1/token
    Form-encoded `grant_type=authorization_code` (code, redirect_uri[, code_verifier]) or
    `grant_type=refresh_token` (refresh_token), with client_id and client_secret in the
    body or as HTTP Basic. Replies `{access_token, refresh_token, expires_in, token_type}`;
    errors as HubSpot's 400 `{status: "BAD_REFRESH_TOKEN" | "BAD_AUTH_CODE" |
    "BAD_CLIENT_ID" | ..., message}`.

Mailchimp (stands for https://login.mailchimp.com/oauth2/...):

GET  /mailchimp-login/oauth2/authorize    The approval screen, as above (no scopes).
POST /mailchimp-login/oauth2/token         `{access_token, expires_in: 0, scope: null}`: never expires.
GET  /mailchimp-login/oauth2/metadata
    `Authorization: OAuth <token>` → `{dc, api_endpoint, login_url, accountname}`.

Access tokens issued here are accepted by the emulated APIs as Bearer credentials.
An access token lives `access_token_lifetime` seconds (HubSpot only); with rotation on,
each refresh issues a new refresh token and the old one is refused from then on.
Revocation ends every grant: refreshes get BAD_REFRESH_TOKEN and API calls get 401.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.wrappers import Request, Response

from .errors import HubSpotError, MailchimpError, json_response

HUBSPOT_AUTHORIZE = "/hubspot/oauth/authorize"
HUBSPOT_TOKEN = "/hubspot/oauth/v1/token"
MAILCHIMP_AUTHORIZE = "/mailchimp-login/oauth2/authorize"
MAILCHIMP_TOKEN = "/mailchimp-login/oauth2/token"
MAILCHIMP_METADATA = "/mailchimp-login/oauth2/metadata"
PATHS = (HUBSPOT_AUTHORIZE, HUBSPOT_TOKEN, MAILCHIMP_AUTHORIZE, MAILCHIMP_TOKEN, MAILCHIMP_METADATA)

DEFAULT_CLIENT_ID = "syncapp-sandbox-client"
DEFAULT_CLIENT_SECRET = "syncapp-sandbox-secret"
DEFAULT_ACCESS_TOKEN_LIFETIME = 1800
# Authorization codes are single use and short-lived, as HubSpot's are.
CODE_LIFETIME_SECONDS = 600
MAILCHIMP_ACCOUNT_NAME = "Sandbox Audience Co"


class OAuthControlError(ValueError):
    """A control request with a bad value."""


@dataclass
class Grant:
    provider: str
    scopes: list[str]
    refresh_token: str | None
    revoked: bool = False


@dataclass
class AccessToken:
    grant: Grant
    expires_at: float | None


@dataclass
class Code:
    provider: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str | None
    expires_at: float


@dataclass
class Counters:
    codes_exchanged: int = 0
    refreshes: int = 0
    rotations: int = 0
    refused_refreshes: int = 0


class OAuthAuthority:
    """The sandbox's OAuth server for both providers; all state in memory, behind one lock."""

    def __init__(self, mailchimp_dc: str, clock=time.time):
        self.mailchimp_dc = mailchimp_dc
        self._clock = clock
        self._lock = threading.Lock()
        self._clear()

    def reset(self) -> None:
        """Forget every grant and restore the default client and token settings."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self.client_id = DEFAULT_CLIENT_ID
        self.client_secret = DEFAULT_CLIENT_SECRET
        self.access_token_lifetime = DEFAULT_ACCESS_TOKEN_LIFETIME
        self.rotate_refresh_tokens = False
        self._codes: dict[str, Code] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, Grant] = {}
        self._grants: list[Grant] = []
        self.counters = Counters()

    # Control.

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "client_id": self.client_id,
                "access_token_lifetime": self.access_token_lifetime,
                "rotate_refresh_tokens": self.rotate_refresh_tokens,
                "grants": sum(not grant.revoked for grant in self._grants),
                "revoked_grants": sum(grant.revoked for grant in self._grants),
                "codes_exchanged": self.counters.codes_exchanged,
                "refreshes": self.counters.refreshes,
                "rotations": self.counters.rotations,
                "refused_refreshes": self.counters.refused_refreshes,
            }

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a control body: client_id, client_secret, access_token_lifetime, rotate_refresh_tokens."""
        unknown = sorted(set(body) - {"client_id", "client_secret", "access_token_lifetime", "rotate_refresh_tokens"})
        if unknown:
            raise OAuthControlError(f"unknown keys: {', '.join(unknown)}")
        for name in ("client_id", "client_secret"):
            if name in body and (not isinstance(body[name], str) or not body[name].strip()):
                raise OAuthControlError(f"{name} must be a non-empty string")
        lifetime = body.get("access_token_lifetime", self.access_token_lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            raise OAuthControlError("access_token_lifetime must be a positive number of seconds")
        rotate = body.get("rotate_refresh_tokens", self.rotate_refresh_tokens)
        if not isinstance(rotate, bool):
            raise OAuthControlError("rotate_refresh_tokens must be true or false")
        with self._lock:
            self.client_id = body.get("client_id", self.client_id)
            self.client_secret = body.get("client_secret", self.client_secret)
            self.access_token_lifetime = lifetime
            self.rotate_refresh_tokens = rotate
        return self.describe()

    def revoke(self, provider: str | None) -> dict[str, Any]:
        """End every grant (of `provider`, or of both); return how many were revoked."""
        if provider not in (None, "hubspot", "mailchimp"):
            raise OAuthControlError("provider must be hubspot, mailchimp or left out for both")
        with self._lock:
            revoked = 0
            for grant in self._grants:
                if not grant.revoked and provider in (None, grant.provider):
                    grant.revoked = True
                    revoked += 1
        return {"revoked": revoked, **self.describe()}

    # The API gateway's question.

    def authenticate(self, provider: str, request: Request) -> bool | None:
        """Say whether the request carries an access token issued here for `provider`.

        True: a live token. False: one that expired or whose grant was revoked. None: not
        a token of ours (the API's own credential check decides).
        """
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return None
        with self._lock:
            token = self._access.get(credential.strip())
            if token is None or token.grant.provider != provider:
                return None
            if token.grant.revoked:
                return False
            return token.expires_at is None or token.expires_at > self._clock()

    def seconds_since_expiry(self, request: Request) -> int:
        credential = request.headers.get("Authorization", "").partition(" ")[2].strip()
        with self._lock:
            token = self._access.get(credential)
            if token is None or token.expires_at is None:
                return 0
            return max(0, int(self._clock() - token.expires_at))

    # Pages and endpoints.

    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == HUBSPOT_AUTHORIZE:
            return self.authorize(request, "hubspot")
        if path == MAILCHIMP_AUTHORIZE:
            return self.authorize(request, "mailchimp")
        if path == HUBSPOT_TOKEN and request.method == "POST":
            return self.hubspot_token(request)
        if path == MAILCHIMP_TOKEN and request.method == "POST":
            return self.mailchimp_token(request)
        if path == MAILCHIMP_METADATA and request.method == "GET":
            return self.mailchimp_metadata(request)
        return json_response({"error": f"use {'GET' if path == MAILCHIMP_METADATA else 'POST'} on {path}"}, 405)

    def authorize(self, request: Request, provider: str) -> Response:
        """Show the approval screen (GET) or carry out the person's decision (POST)."""
        if request.method not in ("GET", "POST"):
            return _page("Method not allowed", "<p>Use GET to see the approval screen.</p>", 405)
        values = request.args if request.method == "GET" else request.form
        client_id = values.get("client_id", "")
        redirect_uri = values.get("redirect_uri", "")
        state = values.get("state", "")
        scopes = values.get("scope", "").split()
        challenge = values.get("code_challenge") or None
        method = values.get("code_challenge_method") or ("S256" if challenge else None)
        with self._lock:
            known_client = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        if not known_client:
            return _page("Unknown app", "<p>No app is registered with this client_id.</p>", 400)
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _page("Bad redirect", "<p>redirect_uri must be an http or https URL.</p>", 400)
        if values.get("response_type", "code") != "code":
            return _page("Unsupported response type", "<p>Only response_type=code is supported.</p>", 400)
        if challenge is not None and method != "S256":
            return _page("Unsupported PKCE method", "<p>Only code_challenge_method=S256 is supported.</p>", 400)
        if request.method == "GET":
            return self._approval_screen(request, provider, scopes)
        if request.form.get("decision") != "approve":
            return _redirect(redirect_uri, {"error": "access_denied", "state": state})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = Code(provider, redirect_uri, scopes, challenge, self._clock() + CODE_LIFETIME_SECONDS)
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _approval_screen(self, request: Request, provider: str, scopes: list[str]) -> Response:
        label = {"hubspot": "HubSpot", "mailchimp": "Mailchimp"}[provider]
        hidden = "".join(
            f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
            for name, value in request.args.items(multi=True)
        )
        listed = "".join(f"<li>{escape(scope)}</li>" for scope in scopes) or "<li>Your account's audiences</li>"
        body = (
            f"<p>An app wants to connect to your {label} sandbox account. It asks for:</p>"
            f'<ul id="requested-scopes">{listed}</ul>'
            f'<form method="post" action="{escape(request.path)}">{hidden}'
            '<button type="submit" name="decision" value="approve" id="approve">Approve</button> '
            '<button type="submit" name="decision" value="deny" id="deny">Deny</button></form>'
        )
        return _page(f"Connect to {label} (sandbox)", body, 200)

    def hubspot_token(self, request: Request) -> Response:
        if not self._client_ok(request):
            return _hubspot_error("BAD_CLIENT_ID", "missing or unknown client id or secret")
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            grant, error = self._exchange_code(request, "hubspot")
            if error:
                return _hubspot_error("BAD_AUTH_CODE", error)
            return json_response(self._issue(grant))
        if grant_type == "refresh_token":
            with self._lock:
                grant = self._refresh.get(request.form.get("refresh_token", ""))
                if grant is None or grant.revoked or grant.provider != "hubspot":
                    self.counters.refused_refreshes += 1
                    return _hubspot_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
                self.counters.refreshes += 1
                if self.rotate_refresh_tokens:
                    del self._refresh[grant.refresh_token]
                    grant.refresh_token = secrets.token_urlsafe(32)
                    self._refresh[grant.refresh_token] = grant
                    self.counters.rotations += 1
            return json_response(self._issue(grant))
        return _hubspot_error("BAD_GRANT_TYPE", "grant_type must be authorization_code or refresh_token")

    def mailchimp_token(self, request: Request) -> Response:
        if not self._client_ok(request):
            return json_response({"error": "invalid_client", "error_description": "Invalid client credentials"}, 401)
        if request.form.get("grant_type") != "authorization_code":
            return json_response({"error": "unsupported_grant_type"}, 400)
        grant, error = self._exchange_code(request, "mailchimp")
        if error:
            return json_response({"error": "invalid_grant", "error_description": error}, 400)
        return json_response(self._issue(grant, expires=False))

    def mailchimp_metadata(self, request: Request) -> Response:
        if not self.authenticate("mailchimp", request):
            return MailchimpError(401, "Invalid Token", "The OAuth token is invalid or was revoked.").response()
        root = request.host_url.rstrip("/")
        return json_response({
            "dc": self.mailchimp_dc,
            "role": "owner",
            "accountname": MAILCHIMP_ACCOUNT_NAME,
            "api_endpoint": f"{root}/mailchimp",
            "login_url": f"{root}/mailchimp-login",
        })

    def _client_ok(self, request: Request) -> bool:
        client_id = request.form.get("client_id", "")
        client_secret = request.form.get("client_secret", "")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id = request.authorization.username or ""
            client_secret = request.authorization.password or ""
        with self._lock:
            return hmac.compare_digest(client_id.encode(), self.client_id.encode()) and hmac.compare_digest(
                client_secret.encode(), self.client_secret.encode())

    def _exchange_code(self, request: Request, provider: str) -> tuple[Grant | None, str | None]:
        with self._lock:
            code = self._codes.pop(request.form.get("code", ""), None)
            if code is None or code.provider != provider or code.expires_at < self._clock():
                return None, "missing or unknown auth code"
            if code.redirect_uri != request.form.get("redirect_uri"):
                return None, "redirect_uri does not match the one the code was issued for"
            if code.code_challenge is not None:
                verifier = request.form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if not hmac.compare_digest(digest, code.code_challenge):
                    return None, "code_verifier does not match the code_challenge"
            grant = Grant(provider, code.scopes, secrets.token_urlsafe(32) if provider == "hubspot" else None)
            self._grants.append(grant)
            if grant.refresh_token:
                self._refresh[grant.refresh_token] = grant
            self.counters.codes_exchanged += 1
            return grant, None

    def _issue(self, grant: Grant, *, expires: bool = True) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        with self._lock:
            lifetime = self.access_token_lifetime
            self._access[token] = AccessToken(grant, self._clock() + lifetime if expires else None)
            refresh_token = grant.refresh_token
        if not expires:
            return {"access_token": token, "expires_in": 0, "scope": None}
        # The rotated (or unchanged) refresh token comes with every HubSpot reply.
        return {"access_token": token, "refresh_token": refresh_token, "expires_in": lifetime,
                "token_type": "bearer"}

    def expired_error(self, provider: str, request: Request) -> Exception:
        """Return the provider's 401 for an expired or revoked token of ours."""
        if provider == "hubspot":
            ago = self.seconds_since_expiry(request)
            return HubSpotError(401, f"The OAuth token used to make this call expired {ago} second(s) ago.",
                                "EXPIRED_AUTHENTICATION")
        return MailchimpError(401, "API Key Invalid", "Your OAuth token is invalid or was revoked.")


def _hubspot_error(status: str, message: str) -> Response:
    return json_response({"status": status, "message": message, "correlationId": secrets.token_hex(8)}, 400)


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if urlsplit(uri).query else "?"
    return Response(status=302, headers={"Location": f"{uri}{separator}{urlencode(params)}"})


def _page(title: str, body: str, status: int) -> Response:
    html = (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return Response(html, status=status, content_type="text/html; charset=utf-8")
