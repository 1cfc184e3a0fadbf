"""Conflicts as the engine leaves them, for the review tests: a two-way sync and its rows."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.models import Conflict, Contact, RecordLink, Sync, SyncConnection
from tests.workspace import connection_make

MANUAL = FieldMapping.ConflictPolicy.MANUAL
# Hub field -> (HubSpot property, Mailchimp merge field).
TWO_WAY_FIELDS = {
    "email": ("email", "email_address"),
    "first_name": ("firstname", "FNAME"),
    "last_name": ("lastname", "LNAME"),
    "phone": ("phone", "PHONE"),
}


@dataclass(frozen=True)
class TwoWay:
    sync: Sync
    hubspot: Connection
    mailchimp: Connection


def two_way_make(name: str = "HubSpot and Mailchimp", *, prefix: str = "") -> TwoWay:
    """Create HubSpot and Mailchimp connections, both read and written, fields under manual review."""
    hubspot = connection_make(f"{prefix}HubSpot", "hubspot", access_token="hs-token-0123456789",
                              default_phone_region="GB")
    mailchimp = connection_make(f"{prefix}Mailchimp", "mailchimp", api_key="mc-key-0123456789-us1",
                                settings={"list_id": "abc"})
    sync = Sync.objects.create(name=name, schedule_minutes=0)
    for connection in (hubspot, mailchimp):
        SyncConnection.objects.create(sync=sync, connection=connection, read=True, write=True)
    for hub_field, (hubspot_field, mailchimp_field) in TWO_WAY_FIELDS.items():
        for connection, external in ((hubspot, hubspot_field), (mailchimp, mailchimp_field)):
            FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field, external_field=external,
                                        direction="both", conflict_policy=MANUAL, is_owner=connection is hubspot)
    return TwoWay(sync=sync, hubspot=hubspot, mailchimp=mailchimp)


def contact_make(workspace: TwoWay, email: str, **values) -> Contact:
    """Create a contact linked to both systems, each link's base holding the contact's values."""
    contact = Contact.objects.create(email=email, **values)
    for connection, column in ((workspace.hubspot, 0), (workspace.mailchimp, 1)):
        base = {
            fields[column]: contact.hub_value(hub_field) or ""
            for hub_field, fields in TWO_WAY_FIELDS.items()
        }
        RecordLink.objects.create(contact=contact, connection=connection, external_id=f"{connection.provider}-{email}",
                                  merge_base=base)
    return contact


def side(connection: Connection, external_field: str, value: Any, *, raw: Any = None,
         changed_at: datetime | None = None) -> dict[str, Any]:
    """One system's side of a conflict, as the engine records it."""
    changed_at = changed_at or timezone.now() - timedelta(hours=2)
    return {
        "connection_id": connection.pk,
        "system": connection.name,
        "external_field": external_field,
        "raw": value if raw is None else raw,
        "value": value,
        "changed_at": changed_at.isoformat(),
    }


def conflict_make(workspace: TwoWay, contact: Contact, *, hub_field: str = "first_name", hubspot: Any = "Anna",
                  mailchimp: Any = "Annie", age: timedelta | None = None, sides: list | None = None,
                  **fields) -> Conflict:
    """Open a conflict as a run would: HubSpot and Mailchimp changed `hub_field` differently."""
    hubspot_field, mailchimp_field = TWO_WAY_FIELDS[hub_field]
    if sides is None:
        sides = [side(workspace.hubspot, hubspot_field, hubspot), side(workspace.mailchimp, mailchimp_field, mailchimp)]
    base = contact.hub_value(hub_field)
    conflict = Conflict.objects.create(sync=workspace.sync, contact=contact, hub_field=hub_field, base_value=base,
                                       hub_value=fields.pop("hub_value", base), sides=sides, **fields)
    conflict.connections.set([entry["connection_id"] for entry in sides])
    if age is not None:
        # created_at is set on insert; age it afterwards, as a conflict found earlier.
        Conflict.objects.filter(pk=conflict.pk).update(created_at=timezone.now() - age)
        conflict.refresh_from_db()
    return conflict
