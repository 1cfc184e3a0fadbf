"""Audit events as the app writes them, for the trail's tests: one person's history, and many rows fast."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from syncapp.engine.text import clean_value
from syncapp.models import Contact


def event(action: str, *, contact: Contact | None = None, changes: dict[str, Any] | None = None,
          **fields) -> AuditEvent:
    """Write one event as the services do; about `contact` when given."""
    if contact is not None:
        fields.setdefault("object_type", "contact")
        fields.setdefault("object_id", str(contact.pk))
        fields.setdefault("object_repr", str(contact))
        fields["contact_id"] = contact.pk
    fields.setdefault("object_type", "sync")
    fields.setdefault("object_id", "1")
    return audit_record(action=action, changes=clean_value(changes or {}), **fields)


def email_change(contact: Contact, new_email: str, *, system: str = "HubSpot") -> AuditEvent:
    """Change a contact's email as a run does, with its audited [old, new]."""
    old = contact.email
    contact.email = new_email
    contact.save(update_fields=["email"])
    return event("contact.updated", contact=contact, system=system, changes={"email": [old, new_email]})


def events_insert(count: int, *, action: str, changes_json: str = "{}", object_repr: str = "",
                  created_at: datetime | None = None) -> None:
    """Insert `count` events in one statement that makes its rows itself: no row is held in Python.

    For volume (exports), and for events of a given time (the trail never lets a row be
    changed afterwards); the rows are outside the hash chain, which these tests do not check.
    """
    now = connection.ops.adapt_datetimefield_value(created_at or timezone.now())
    changes = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)
            INSERT INTO {table} (created_at, action, system, object_type, object_id, object_repr, contact_id,
                                 run_id, changes, changes_digest, prev_hash, row_hash)
            SELECT %s, %s, 'HubSpot', 'contact', CAST(i AS varchar(64)), %s, i, NULL, {changes}, '', '', '' FROM n
            """,
            [count, now, action, object_repr, changes_json],
        )
