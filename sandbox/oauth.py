"""The sandbox's OAuth 2.0 server: approval screens, authorization codes, grants and tokens.

Emulators that stand in for a provider's OAuth server declare its paths
(`EmulatedAPI.oauth_routes`) and answer its token endpoints in the provider's own
shapes; the grants they hand out live here, in memory, for every provider alike:

- The approval screen (`authorize`) lists the requested scopes with Approve and Deny
  buttons, which POST back to the same path. Approve redirects to `redirect_uri` with
  `code` and `state`; Deny with `error=access_denied`. PKCE (S256) is supported.
- Codes are single use and live 10 minutes; `exchange_code` checks the redirect URI and
  the PKCE verifier. `refresh` renews a grant; with rotation on, each refresh issues a
  new refresh token and the old one is refused from then on.
- Access tokens issued here are accepted by the emulated APIs as Bearer credentials
  (`authenticate`). One lives `access_token_lifetime` seconds unless issued not to
  expire. Revocation ends every grant (of one provider): refreshes are refused and API
  calls with their access tokens get the provider's 401.
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

DEFAULT_CLIENT_ID = "syncapp-sandbox-client"
DEFAULT_CLIENT_SECRET = "syncapp-sandbox-secret"
DEFAULT_ACCESS_TOKEN_LIFETIME = 1800
# Authorization codes are single use and short-lived, as HubSpot's are.
CODE_LIFETIME_SECONDS = 600


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
    """The sandbox's OAuth server for the emulators that have one; all state in memory, behind one lock."""

    def __init__(self, providers: tuple[str, ...], clock=time.time):
        self.providers = providers
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
        """End every grant (of `provider`, or of every provider); return how many were revoked."""
        if provider is not None and provider not in self.providers:
            raise OAuthControlError(f"provider must be one of {', '.join(self.providers)}, or left out for all")
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

    def authorize(self, request: Request, provider: str, label: str) -> Response:
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
            return self._approval_screen(request, label, scopes)
        if request.form.get("decision") != "approve":
            return _redirect(redirect_uri, {"error": "access_denied", "state": state})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = Code(provider, redirect_uri, scopes, challenge, self._clock() + CODE_LIFETIME_SECONDS)
        return _redirect(redirect_uri, {"code": code, "state": state})

    @staticmethod
    def _approval_screen(request: Request, label: str, scopes: list[str]) -> Response:
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

    def refresh(self, provider: str, refresh_token: str) -> Grant | None:
        """Return the live grant of `provider` this refresh token renews, rotating the token when
        rotation is on; None (counted as refused) for an unknown, rotated-out or revoked one."""
        with self._lock:
            grant = self._refresh.get(refresh_token)
            if grant is None or grant.revoked or grant.provider != provider:
                self.counters.refused_refreshes += 1
                return None
            self.counters.refreshes += 1
            if self.rotate_refresh_tokens:
                del self._refresh[grant.refresh_token]
                grant.refresh_token = secrets.token_urlsafe(32)
                self._refresh[grant.refresh_token] = grant
                self.counters.rotations += 1
            return grant

    def client_ok(self, request: Request) -> bool:
        """Say whether the request carries the registered client id and secret (form or HTTP Basic)."""
        client_id = request.form.get("client_id", "")
        client_secret = request.form.get("client_secret", "")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id = request.authorization.username or ""
            client_secret = request.authorization.password or ""
        with self._lock:
            return hmac.compare_digest(client_id.encode(), self.client_id.encode()) and hmac.compare_digest(
                client_secret.encode(), self.client_secret.encode())

    def exchange_code(self, request: Request, provider: str, *, refreshable: bool) -> tuple[Grant | None, str | None]:
        """Turn the form's `code` into a grant of `provider` (with a refresh token when
        `refreshable`); return it, or None and why the code is refused."""
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
            grant = Grant(provider, code.scopes, secrets.token_urlsafe(32) if refreshable else None)
            self._grants.append(grant)
            if grant.refresh_token:
                self._refresh[grant.refresh_token] = grant
            self.counters.codes_exchanged += 1
            return grant, None

    def issue(self, grant: Grant, *, expires: bool = True) -> dict[str, Any]:
        """Issue an access token for the grant; return the token reply: `{access_token,
        refresh_token, expires_in, token_type}` (the refresh token rotated or unchanged), or
        `{access_token, expires_in: 0, scope: null}` for one that never expires."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            lifetime = self.access_token_lifetime
            self._access[token] = AccessToken(grant, self._clock() + lifetime if expires else None)
            refresh_token = grant.refresh_token
        if not expires:
            return {"access_token": token, "expires_in": 0, "scope": None}
        return {"access_token": token, "refresh_token": refresh_token, "expires_in": lifetime,
                "token_type": "bearer"}


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if urlsplit(uri).query else "?"
    return Response(status=302, headers={"Location": f"{uri}{separator}{urlencode(params)}"})


def _page(title: str, body: str, status: int) -> Response:
    html = (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return Response(html, status=status, content_type="text/html; charset=utf-8")
