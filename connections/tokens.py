"""OAuth access tokens that stay fresh without ever losing a rotated refresh token.

A refresh happens in one transaction holding the connection's row (`select_for_update`
on PostgreSQL; on SQLite the IMMEDIATE transaction takes the database's write lock).
After taking it the row is read again: when another worker refreshed meanwhile, its
token is used and no second refresh is sent, so a rotated refresh token is never
spent twice. The new access token and the new refresh token are saved together in
that transaction, so no reader ever sees one without the other.

A provider that refuses the refresh token (revoked grant) marks the connection "needs
reauthorization" (`connections.reauth`) and raises `ReauthorizationNeeded`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections.models import Connection
from connections.oauth import GrantRevoked, OAuthError, oauth_endpoints, token_refresh
from connections.providers.base import AuthenticationError
from connections.reauth import connection_reauthorization_needed, connection_store_grant


class ReauthorizationNeeded(AuthenticationError):
    """The connection's grant is gone: someone must connect it again."""


@dataclass(frozen=True)
class FreshToken:
    access_token: str
    # When to stop using it without asking again (None: it does not expire).
    use_until: datetime | None


def access_token_fresh(connection_id: int) -> str:
    """Return an access token for the connection, refreshed first when it is close to expiry."""
    return fresh_token(connection_id).access_token


def access_token_refresh_after_401(connection_id: int, stale_token: str) -> str:
    """Return a token to retry with after `stale_token` got a 401: another worker's newer one, or a refreshed one."""
    return fresh_token(connection_id, stale=stale_token).access_token


def fresh_token(connection_id: int, *, stale: str | None = None) -> FreshToken:
    """Return a usable token and how long to keep using it; refresh under the row lock when needed."""
    revoked: str | None = None
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(pk=connection_id)
        if connection.status == Connection.Status.NEEDS_REAUTH:
            raise ReauthorizationNeeded(_needs_reauth_message(connection))
        token = connection.access_token or ""
        if token and (token != stale if stale is not None else not _due(connection)):
            return FreshToken(token, _use_until(connection))
        if not connection.refresh_token:
            revoked = f"{connection.name}: the provider refused the access token and there is no refresh token."
        else:
            try:
                grant = token_refresh(oauth_endpoints(connection.provider, connection.base_url),
                                      connection.refresh_token)
            except GrantRevoked as error:
                revoked = str(error)
            except OAuthError as error:
                raise AuthenticationError(str(error)) from None
            else:
                connection_store_grant(connection, grant)
                connection.save(update_fields=["access_token", "refresh_token", "token_expires_at", "scopes",
                                               "base_url", "settings", "updated_at"])
                return FreshToken(grant.access_token, _use_until(connection))
    # Outside the refresh transaction: marking the connection is its own change.
    connection_reauthorization_needed(connection_id, revoked)
    raise ReauthorizationNeeded(revoked)


def token_rejected(connection_id: int) -> None:
    """A token fresh from a refresh still got a 401: the grant no longer works."""
    connection_reauthorization_needed(
        connection_id, "The provider refused a freshly refreshed access token: the grant was revoked."
    )


class ConnectionTokens:
    """An HTTP client's token source for one connection, caching the token in memory until it is due."""

    scheme = "Bearer"

    def __init__(self, connection_id: int):
        self.connection_id = connection_id
        self._lock = threading.Lock()
        self._cached: FreshToken | None = None

    def current(self) -> str:
        with self._lock:
            cached = self._cached
            if cached is None or (cached.use_until is not None and timezone.now() >= cached.use_until):
                cached = self._cached = fresh_token(self.connection_id)
            return cached.access_token

    def after_unauthorized(self, stale: str) -> str:
        with self._lock:
            self._cached = fresh_token(self.connection_id, stale=stale)
            return self._cached.access_token

    def rejected(self) -> None:
        with self._lock:
            self._cached = None
        token_rejected(self.connection_id)


def refresh_margin(connection: Connection) -> timedelta:
    """How long before expiry to refresh: the setting, but at most a fraction of the token's lifetime."""
    margin = settings.OAUTH_REFRESH_MARGIN_SECONDS
    lifetime = ((connection.settings or {}).get("oauth") or {}).get("lifetime_seconds")
    if lifetime:
        margin = min(margin, lifetime * settings.OAUTH_REFRESH_MARGIN_FRACTION)
    return timedelta(seconds=margin)


def _due(connection: Connection) -> bool:
    expires_at = connection.token_expires_at
    return expires_at is not None and timezone.now() >= expires_at - refresh_margin(connection)


def _use_until(connection: Connection) -> datetime | None:
    if connection.token_expires_at is None:
        return None
    return connection.token_expires_at - refresh_margin(connection)


def _needs_reauth_message(connection: Connection) -> str:
    return connection.last_error or f"The connection {connection.name!r} needs to be connected again."
