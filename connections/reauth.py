"""Connections whose grant was revoked: mark them, pause their syncs, alert, and resume on reconnect.

`connection_reauthorization_needed` records which syncs it paused in the connection's
`settings["oauth"]["paused_sync_ids"]`, so `connection_reauthorized` unpauses exactly
those (a sync someone paused by hand stays paused). Cursors are not touched: the next
run resumes where the last one stopped.
"""
from __future__ import annotations

import logging

from django.core.mail import mail_admins
from django.db import transaction

from audit.services import audit_record
from connections.models import Connection
from connections.oauth import TokenGrant

logger = logging.getLogger(__name__)
ERROR_LIMIT = 1000


def connection_reauthorization_needed(connection_id: int, reason: str) -> bool:
    """Mark the connection "needs reauthorization", pause its syncs and alert the admins.

    Return False when it was already marked (nothing is paused or sent twice).
    """
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(pk=connection_id)
        # The engine may have set the status alone; the paused list says this ran.
        already = _oauth(connection).get("paused_sync_ids") is not None
        if connection.status == Connection.Status.NEEDS_REAUTH and already:
            return False
        syncs = connection.syncs.filter(paused=False).distinct()
        paused = sorted(syncs.values_list("pk", flat=True))
        connection.syncs.model.objects.filter(pk__in=paused).update(paused=True)
        previous = connection.status
        connection.status = Connection.Status.NEEDS_REAUTH
        connection.last_error = reason[:ERROR_LIMIT]
        connection.settings = {**connection.settings, "oauth": {**_oauth(connection), "paused_sync_ids": paused}}
        connection.save(update_fields=["status", "last_error", "settings", "updated_at"])
        audit_record(
            action="connection.needs_reauthorization",
            obj=connection,
            system=connection.provider,
            changes={"status": [previous, connection.status], "paused_syncs": [[], paused]},
        )
        name = connection.name
        transaction.on_commit(lambda: _alert_admins(name, reason, len(paused)))
    logger.warning("Connection %s needs reauthorization; paused %d sync(s).", connection_id, len(paused))
    return True


def connection_reauthorized(*, connection: Connection, grant: TokenGrant, user) -> list[int]:
    """Store a new grant on `connection`, mark it connected and unpause the syncs it paused; return their ids."""
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(pk=connection.pk)
        oauth = _oauth(connection)
        paused = list(oauth.pop("paused_sync_ids", None) or [])
        connection_store_grant(connection, grant, oauth=oauth)
        previous = connection.status
        connection.status = Connection.Status.CONNECTED
        connection.last_error = ""
        connection.save()
        resumed = list(connection.syncs.filter(pk__in=paused, paused=True).values_list("pk", flat=True))
        connection.syncs.model.objects.filter(pk__in=resumed).update(paused=False)
        audit_record(
            action="connection.reauthorized",
            obj=connection,
            actor=user,
            changes={"status": [previous, connection.status], "resumed_syncs": [[], sorted(resumed)]},
        )
    return resumed


def connection_store_grant(connection: Connection, grant: TokenGrant, *, oauth: dict | None = None) -> None:
    """Put a grant's tokens and what goes with them on `connection` (unsaved)."""
    connection.access_token = grant.access_token
    connection.refresh_token = grant.refresh_token
    connection.token_expires_at = grant.expires_at
    if grant.scopes:
        connection.scopes = grant.scopes
    if grant.base_url:
        connection.base_url = grant.base_url
    oauth = dict(_oauth(connection) if oauth is None else oauth)
    oauth["lifetime_seconds"] = grant.lifetime_seconds
    connection.settings = {**connection.settings, **grant.settings, "oauth": oauth}


def _oauth(connection: Connection) -> dict:
    return dict((connection.settings or {}).get("oauth") or {})


def _alert_admins(name: str, reason: str, paused: int) -> None:
    mail_admins(
        f"Connection {name!r} needs reauthorization",
        f"Syncapp can no longer use the connection {name!r}: {reason}\n\n"
        f"{paused} sync(s) using it were paused. A marketer can reconnect it from the "
        "connection's page (Reconnect); the paused syncs then resume from where they stopped.",
        fail_silently=True,
    )
