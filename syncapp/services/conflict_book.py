"""What a page of a pull does to conflicts: open them, update their sides, settle them.

A field under manual review that both a system and the hub changed differently opens a
Conflict and is held back for that contact: the hub keeps its value, and payloads leave
the field out (services.held). Each later read of a system involved updates that
system's side; when every side holds the same value again (someone fixed it outside),
the conflict settles itself and the field syncs again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from audit.services import audit_row_build
from syncapp.models import Conflict, Contact, RecordLink


@dataclass
class Side:
    connection_id: int
    system: str
    external_field: str
    raw: Any
    value: Any
    changed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "system": self.system,
            "external_field": self.external_field,
            "raw": self.raw,
            "value": self.value,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
        }


@dataclass
class _Opening:
    contact: Contact
    hub_field: str
    base_value: Any
    hub_value: Any
    side: Side


class ConflictBook:
    """The open conflicts of one page's contacts, and the changes the page makes to them."""

    def __init__(self, *, sync_id: int, run_id: int, contact_ids: list[int]):
        self.sync_id = sync_id
        self.run_id = run_id
        self.open: dict[tuple[int, str], Conflict] = {}
        if contact_ids:
            for conflict in Conflict.objects.filter(
                sync_id=sync_id, status=Conflict.Status.OPEN, contact_id__in=contact_ids
            ):
                self.open[(conflict.contact_id, conflict.hub_field)] = conflict
        self.openings: list[_Opening] = []
        self.changed: dict[int, Conflict] = {}
        self.settled: list[Conflict] = []

    def held(self, contact_id: int | None) -> set[str]:
        """Return the hub fields held back for a contact (open before or during this page)."""
        if contact_id is None:
            return set()
        fields = {field for (cid, field), conflict in self.open.items() if cid == contact_id and conflict.is_open}
        fields.update(opening.hub_field for opening in self.openings if opening.contact.pk == contact_id)
        return fields

    def open_fields(self, contact_id: int | None) -> set[str]:
        """Return the hub fields of a contact's conflicts open before this page: a value read joins them."""
        if contact_id is None:
            return set()
        return {field for (cid, field), conflict in self.open.items() if cid == contact_id and conflict.is_open}

    def find(self, contact_id: int | None, hub_field: str) -> Conflict | None:
        conflict = self.open.get((contact_id, hub_field)) if contact_id is not None else None
        return conflict if conflict is not None and conflict.is_open else None

    def open_conflict(self, *, contact: Contact, hub_field: str, base_value: Any, hub_value: Any, side: Side) -> None:
        if any(o.contact is contact and o.hub_field == hub_field for o in self.openings):
            return
        self.openings.append(_Opening(contact, hub_field, base_value, hub_value, side))

    def observe(self, conflict: Conflict, side: Side) -> Any:
        """Record what one system now holds; return the agreed value if that settles it, else None.

        Returns a one-element tuple `(value,)` when settled, so that None can be agreed.
        """
        sides = [entry for entry in conflict.sides if entry.get("connection_id") != side.connection_id]
        sides.append(side.as_json())
        if sides != conflict.sides:
            conflict.sides = sides
            self.changed[conflict.pk] = conflict
        values = [entry.get("value") for entry in conflict.sides]
        if len(values) >= 2 and all(value == values[0] for value in values):
            conflict.status = Conflict.Status.SETTLED
            conflict.resolution = Conflict.Resolution.SETTLED
            conflict.chosen_value = values[0]
            conflict.resolved_at = timezone.now()
            self.changed[conflict.pk] = conflict
            self.settled.append(conflict)
            return (values[0],)
        return None

    def write(
        self,
        *,
        links_by_contact: dict[int, list[RecordLink]],
        side_of: Callable[[RecordLink, str], Side | None],
        audits: list,
    ) -> int:
        """Save the page's conflict changes; return how many conflicts were opened.

        The sides of a new conflict are the reading system's and, for each other system
        of the contact that maps the field, the value last agreed with it (its merge
        base): the hub's value came from one of them.
        """
        now = timezone.now()
        decided = set()
        for conflict in self.changed.values():
            # Only while still open: a reviewer may have resolved it since the page was
            # loaded, and the reviewer's decision stands.
            updated = Conflict.objects.filter(pk=conflict.pk, status=Conflict.Status.OPEN).update(
                sides=conflict.sides, status=conflict.status, resolution=conflict.resolution,
                chosen_value=conflict.chosen_value, resolved_at=conflict.resolved_at, updated_at=now,
            )
            if not updated:
                decided.add(conflict.pk)
        for conflict in self.settled:
            if conflict.pk in decided:
                continue
            audits.append(audit_row_build(
                action="conflict.settled", object_type="conflict", object_id=str(conflict.pk),
                object_repr=str(conflict), system="hub", contact_id=conflict.contact_id, run_id=self.run_id,
                changes={conflict.hub_field: [conflict.hub_value, conflict.chosen_value]},
            ))
        opened = 0
        for opening in self.openings:
            sides = [opening.side.as_json()]
            for link in links_by_contact.get(opening.contact.pk, []):
                other = side_of(link, opening.hub_field)
                if other is not None and other.connection_id != opening.side.connection_id:
                    sides.append(other.as_json())
            conflict = Conflict.objects.create(
                sync_id=self.sync_id, contact=opening.contact, hub_field=opening.hub_field,
                base_value=opening.base_value, hub_value=opening.hub_value, sides=sides, run_id=self.run_id,
            )
            conflict.connections.set({side["connection_id"] for side in sides})
            audits.append(audit_row_build(
                action="conflict.opened", object_type="conflict", object_id=str(conflict.pk),
                object_repr=str(conflict), system=opening.side.system, contact_id=opening.contact.pk,
                run_id=self.run_id,
                changes={opening.hub_field: [opening.hub_value, opening.side.value]},
            ))
            opened += 1
        return opened

