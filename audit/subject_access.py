"""Subject access (GDPR Art. 15): everything Syncapp holds about one person, as one document.

The person's contacts are found as the trail's person search finds them (audit.people):
those holding the email or phone now, those that held the email before, and the
contacts merged with them. For each: the hub's values, each system's record and the
values last agreed with it, the consent ledger; then every audit event about them.
The document is for the person: it names systems, not the staff who acted.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from audit.exports import without_secrets
from audit.models import AuditEvent
from audit.people import Person, person_contact_ids
from audit.services import audit_record
from syncapp.models import ConsentEvent, Contact, RecordLink
from syncapp.models.hub import HUB_FIELDS

EXPORTED = "audit.subject_access_exported"
PAGE, JSON = "page", "json"


def subject_access_export(*, person: Person, user, shown_as: str) -> dict[str, Any]:
    """Return the person's subject access document, and audit that it was produced.

    The audit event names the person by a digest (Person.audit_key), never by the
    address or number; `shown_as` says whether it was shown on a page or downloaded.
    """
    with transaction.atomic():
        document = subject_access_document(person=person)
        audit_record(
            action=EXPORTED, object_type="person", object_id=person.audit_key(), actor=user,
            object_repr="Subject access export",
            changes={
                "person": [None, person.audit_key()],
                "contacts": [None, [contact["id"] for contact in document["contacts"]]],
                "events": [None, len(document["events"])],
                "format": [None, shown_as],
            },
        )
    return document


def subject_access_document(*, person: Person) -> dict[str, Any]:
    """Return what Syncapp holds about `person`, as plain JSON data."""
    contact_ids = sorted(person_contact_ids(person))
    contacts = Contact.objects.filter(pk__in=contact_ids).order_by("pk")
    links = _by_contact(RecordLink.objects.filter(contact_id__in=contact_ids).select_related("connection")
                        .order_by("connection__name", "pk"))
    ledger = _by_contact(ConsentEvent.objects.filter(contact_id__in=contact_ids).order_by("occurred_at", "pk"))
    events = AuditEvent.objects.filter(contact_id__in=contact_ids).order_by("id")
    return {
        "person": {"kind": person.kind, "value": person.value},
        "contacts": [
            {
                **_contact(contact),
                "systems": [_link(link) for link in links.get(contact.pk, [])],
                "consent_ledger": [_consent(event) for event in ledger.get(contact.pk, [])],
            }
            for contact in contacts
        ],
        # Events keep the id of a contact merged into another one since: listed too.
        "contact_ids": contact_ids,
        "events": [_event(event) for event in events],
    }


def _by_contact(rows) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(row.contact_id, []).append(row)
    return grouped


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _contact(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.pk,
        "values": {name: getattr(contact, name) for name in HUB_FIELDS},
        "attributes": contact.attributes or {},
        "email_opt_in_at": _when(contact.email_opt_in_at),
        "erased": contact.erased,
        "created_at": _when(contact.created_at),
        "updated_at": _when(contact.updated_at),
    }


def _link(link: RecordLink) -> dict[str, Any]:
    return {
        "connection": link.connection.name,
        "provider": link.connection.provider,
        "external_id": link.external_id,
        "stable_id": link.stable_id,
        "values_last_agreed": link.merge_base or {},
        "email_consent_last_agreed": link.email_consent_base,
        "changed_there_at": _when(link.remote_modified_at),
        "last_pushed_at": _when(link.last_pushed_at),
        "archived": link.archived,
    }


def _consent(event: ConsentEvent) -> dict[str, Any]:
    return {
        "channel": event.channel,
        "state": event.state,
        "previous_state": event.previous_state,
        "hub_state": event.hub_state,
        "system": event.system,
        "evidence": event.evidence,
        "explicit_opt_in": event.explicit_opt_in,
        "note": event.note,
        "occurred_at": _when(event.occurred_at),
        "recorded_at": _when(event.recorded_at),
    }


def _event(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": _when(event.created_at),
        "action": event.action,
        "by": "a Syncapp user" if event.actor_id else event.system or "Syncapp",
        "system": event.system,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object": event.object_repr,
        "contact_id": event.contact_id,
        "run_id": event.run_id,
        "changes": without_secrets(event.changes),
    }
