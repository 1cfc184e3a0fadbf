"""Schema drift: which mapped fields a system no longer has, or holds as another type.

Pure: the caller supplies the mappings and the fields the system reports now.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connections.providers.base import FieldInfo


@dataclass(frozen=True)
class MappedField:
    """One external field a sync maps, as saved with its mapping."""

    system: str
    external_field: str
    # The field's type when the mapping was saved; "" when unknown (only a removal counts then).
    external_type: str = ""


@dataclass(frozen=True)
class Drift:
    """A mapped field that disappeared (`now_type` None) or changed type."""

    system: str
    field: str
    was_type: str
    now_type: str | None

    @property
    def change(self) -> str:
        if self.now_type is None:
            return "was removed"
        return f"changed from {self.was_type} to {self.now_type}"

    @property
    def message(self) -> str:
        return f"The field {self.field} in {self.system} {self.change}."


def schema_drift(mapped: Sequence[MappedField], fields: Sequence[FieldInfo]) -> list[Drift]:
    """Return the drift of each mapped field against the fields the system reports, once per field.

    `fields` are one system's; the system of each `mapped` entry is only carried into the
    result. Names compare exactly: HubSpot property names and Mailchimp merge tags are
    case-sensitive identifiers.
    """
    current = {field.name: field for field in fields}
    drifts: list[Drift] = []
    seen: set[str] = set()
    for entry in mapped:
        if entry.external_field in seen:
            continue
        seen.add(entry.external_field)
        field = current.get(entry.external_field)
        if field is None:
            drifts.append(Drift(entry.system, entry.external_field, entry.external_type, None))
        elif entry.external_type and field.type != entry.external_type:
            drifts.append(Drift(entry.system, entry.external_field, entry.external_type, field.type))
    return drifts


def drift_message(drifts: Sequence[Drift]) -> str:
    """Return one text for people naming every drifted field and its system, and what to do."""
    changes = " ".join(drift.message for drift in drifts)
    return (f"Paused before writing anything: {changes} "
            "Fix the mapping (or the field in that system), then resume the sync.")
