"""Whether a field mapping can work, decided before it is saved.

Pure: takes the mapping as edited, the connection's discovered fields and the sync's
other mappings, and returns the reasons it cannot work, keyed by the form field they
belong next to, plus warnings that do not stop the save.

Refused: a direction the sync's role for the connection cannot carry (a mapping into
the hub from a system the sync only writes, out of it to one the sync only reads, or
both ways to either), an unknown hub or external field, a read-only or calculated
field as a write target, a field kind that cannot hold the value (in the direction it
travels) with no transform converting it, transforms that are malformed or do not fit
the kinds, a hub field or an external field mapped twice for one connection (but a
full name's first and last parts), and owner-wins fields without exactly one owner
among the systems read.

Warned (saved anyway): a destination shorter than what the hub holds, without a
truncate transform. Refusing it would refuse the everyday "first name into FNAME
(25 characters)"; the few longer values become record errors that name the field, and
the warning says how to cut them instead.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connections.providers.base import FieldInfo
from mappings.hub_fields import hub_field, is_hub_field
from mappings.transforms import (
    TRANSFORM_INFO,
    full_name_part,
    shared_field_error,
    transform_fit_errors,
    transform_spec_errors,
)

IN, OUT, BOTH = "in", "out", "both"
OWNER_WINS = "owner_wins"
TRUNCATE = "truncate"

# Hub kind -> the external kinds a value can be written into as it is.
WRITE_FITS = {
    "text": {"text", "enum", "url", "phone"},
    "email": {"email", "text"},
    "phone": {"phone", "text"},
    "consent": {"consent", "enum"},
}
# Hub kind -> the external kinds a value can be read from as it is.
READ_FITS = {
    "text": {"text", "enum", "url", "number", "date", "datetime", "birthday", "phone", "email", "bool"},
    "email": {"email", "text"},
    "phone": {"phone", "text", "number"},
    "consent": {"consent"},
}


@dataclass(frozen=True)
class MappingDraft:
    """A mapping as edited, in plain values."""

    connection_id: int
    hub_field: str
    external_field: str
    direction: str
    transforms: Any
    is_owner: bool = False
    conflict_policy: str = OWNER_WINS
    # The stored mapping being edited; None for a new one.
    pk: int | None = None

    @property
    def reads(self) -> bool:
        return self.direction in (IN, BOTH)

    @property
    def writes(self) -> bool:
        return self.direction in (OUT, BOTH)


@dataclass(frozen=True)
class Role:
    """What the sync does with a connection (SyncConnection.read and .write)."""

    read: bool = True
    written: bool = True

    def carries(self, direction: str) -> bool:
        """Return whether a mapping going `direction` does all it says with this role.

        A mapping is read only from a system the sync reads and written only to one it
        writes (syncapp.services.plan): the half of a mapping the role does not carry is
        silently nothing, so it is refused rather than saved.
        """
        reads, writes = direction in (IN, BOTH), direction in (OUT, BOTH)
        return (self.read or not reads) and (self.written or not writes)

    @property
    def widest_direction(self) -> str:
        """Return the direction a new mapping starts with: the widest this role carries."""
        if self.read and not self.written:
            return IN
        if self.written and not self.read:
            return OUT
        return BOTH


def role_problem(direction: str, *, role: Role, system: str) -> str | None:
    """Return why a mapping going `direction` does nothing (or half of it) with `role`, and what to change."""
    if role.carries(direction):
        return None
    if not role.read and not role.written:
        return f"The sync neither reads nor writes {system}: choose its role in the sync's settings first."
    only = " only" if direction == BOTH else ""
    if not role.read:
        return (f"The sync only writes to {system}; map this field out to {system}{only} (Out of the hub), or let "
                f"the sync read {system} in the sync's settings.")
    return (f"The sync only reads {system}; map this field into the hub{only} (Into the hub), or let the sync "
            f"write to {system} in the sync's settings.")


@dataclass
class Findings:
    # Form field name -> reasons it cannot be saved.
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def refuse(self, form_field: str, message: str) -> None:
        self.errors.setdefault(form_field, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.errors


def specs_for(transforms: Any, direction: str) -> list[Any]:
    """Return the transform specs that apply going `direction` ("in" or "out").

    A spec without a direction applies both ways (in order in, reversed out).
    """
    if not isinstance(transforms, list):
        return []
    return [spec for spec in transforms
            if not (isinstance(spec, Mapping) and spec.get("direction") not in (None, "", direction))]


def _spec_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"]
    return None


def _converts(specs: Sequence[Any], *, to_kind: str, side: str) -> bool:
    """Return whether a transform in `specs` makes a value of `to_kind` on `side`.

    `side` is "external" (writing) or "hub" (reading). Only converting transforms count
    (those whose two sides take different kinds, as a date format or a value map):
    trimming text makes no number.
    """
    for spec in specs:
        info = TRANSFORM_INFO.get(_spec_name(spec) or "")
        if info is None or info.external_kinds == info.hub_kinds:
            continue
        if to_kind in (info.external_kinds if side == "external" else info.hub_kinds):
            return True
    return False


def _unknown_field_message(name: str, system: str, catalog: Sequence[FieldInfo]) -> str:
    names = [item.name for item in catalog]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if not close:
        lowered = {item.lower(): item for item in names}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    hint = f" Did you mean {close[0]}?" if close else " Pick one of its discovered fields, or refresh them."
    return f"{name} is not a field of {system}.{hint}"


def mapping_problems(
    draft: MappingDraft,
    *,
    catalog: Sequence[FieldInfo] | None,
    system: str,
    siblings: Sequence[MappingDraft],
    system_names: Mapping[int, str] | None = None,
    role: Role | None = None,
) -> Findings:
    """Return why `draft` cannot be saved (and what to watch), for one connection called `system`.

    `catalog` is that connection's discovered fields (None: never discovered);
    `siblings` are the sync's other stored mappings, every connection's; `role` is what
    the sync does with the connection (None: not checked).
    """
    findings = Findings()
    system_names = system_names or {}
    reason = role_problem(draft.direction, role=role, system=system) if role is not None else None
    if reason:
        findings.refuse("direction", reason)
    hub_ok = is_hub_field(draft.hub_field)
    if not hub_ok:
        findings.refuse("hub_field", f"{draft.hub_field} is not a hub field: use a listed field or attributes.<name> "
                                     "(letters, digits and _).")
    target = None
    if catalog is None:
        findings.refuse("external_field", f"{system}'s fields have not been discovered yet: refresh them first.")
    else:
        target = next((item for item in catalog if item.name == draft.external_field), None)
        if target is None:
            findings.refuse("external_field", _unknown_field_message(draft.external_field, system, catalog))
    if target is not None and draft.writes and not target.writable:
        why = "calculated by the system from other values" if target.calculated else "read-only"
        findings.refuse("external_field", f"{target.name} is {why} in {system} and cannot be written: map it "
                                          "into the hub only, or pick another field.")

    spec_errors = transform_spec_errors(draft.transforms) or missing_param_errors(draft.transforms)
    for message in spec_errors:
        findings.refuse("transforms", message)

    if hub_ok and target is not None and not spec_errors:
        _check_kinds(draft, hub_field(draft.hub_field), target, system, findings)

    _check_duplicates(draft, siblings, system, findings)
    if hub_ok:
        _check_owner(draft, siblings, system_names, findings)
    return findings


def missing_param_errors(transforms: Any) -> list[str]:
    """Return a reason per transform step saved without a parameter it requires (TRANSFORM_INFO).

    Some transforms run without one by falling back on a default (a date step without
    `format` reads ISO 8601): the mapping would save and then read or write dates in a
    format nobody chose. The editor's step leaves an unchosen parameter out of the spec.
    """
    errors = []
    for spec in transforms if isinstance(transforms, list) else ():
        info = TRANSFORM_INFO.get(_spec_name(spec) or "")
        params = spec if isinstance(spec, Mapping) else {}
        for param in info.params if info else ():
            value = params.get(param.name)
            if param.required and (value is None or (isinstance(value, str) and not value.strip()) or value == {}):
                verb = "choose" if param.kind == "choice" else "fill in"
                errors.append(f"{info.label}: {verb} {param.label[:1].lower()}{param.label[1:]}; the step cannot "
                              "work without it.")
    return errors


def _check_kinds(draft: MappingDraft, hub, target: FieldInfo, system: str, findings: Findings) -> None:
    for message in transform_fit_errors(draft.transforms, external_kind=target.kind, hub_kind=hub.kind):
        findings.refuse("transforms", message)
    shown = f"{target.name} ({target.kind})"
    if draft.writes:
        out = specs_for(draft.transforms, OUT)
        if target.kind not in WRITE_FITS.get(hub.kind, {hub.kind}) and not _converts(out, to_kind=target.kind,
                                                                                   side="external"):
            findings.refuse("external_field", f"{shown} in {system} cannot hold a {hub.kind} value like "
                                              f"{hub.label}: add a transform that makes a {target.kind}, or pick "
                                              "another field.")
        limit = target.max_length
        if (limit is not None and (hub.max_length is None or hub.max_length > limit)
                and TRUNCATE not in {_spec_name(spec) for spec in out}):
            findings.warnings.append(
                f"{target.name} holds at most {limit} characters; longer {hub.label} values will be record errors "
                f"in {system}. Add a truncate transform to cut them to {limit} instead."
            )
    if draft.reads:
        incoming = specs_for(draft.transforms, IN)
        if target.kind not in READ_FITS.get(hub.kind, {hub.kind}) and not _converts(incoming, to_kind=hub.kind,
                                                                                  side="hub"):
            findings.refuse("external_field", f"{hub.label} ({hub.kind}) cannot take the {target.kind} values of "
                                              f"{shown}: add a transform that makes a {hub.kind}, or map it out of "
                                              "the hub only.")


def _check_duplicates(draft: MappingDraft, siblings: Sequence[MappingDraft], system: str, findings: Findings) -> None:
    same_connection = [other for other in siblings
                       if other.connection_id == draft.connection_id and other.pk != draft.pk]
    if any(other.hub_field == draft.hub_field for other in same_connection):
        findings.refuse("hub_field", f"{draft.hub_field} is already mapped for {system}: edit that mapping instead.")
    for other in same_connection:
        if other.external_field != draft.external_field:
            continue
        # A full name is the one field two mappings may share (first and last name parts).
        reason = shared_field_error(draft.transforms, other.transforms, external_field=draft.external_field)
        if reason is None:
            continue
        if full_name_part(draft.transforms) or full_name_part(other.transforms):
            findings.refuse("external_field", reason)
        else:
            findings.refuse("external_field", f"{draft.external_field} is already mapped to {other.hub_field} "
                                              f"for {system}.")
        break


def _check_owner(draft: MappingDraft, siblings: Sequence[MappingDraft], system_names: Mapping[int, str],
                 findings: Findings) -> None:
    """Owner wins needs one owner among the systems read (syncapp.engine.merge).

    The engine lets the system being read win a two-sided change only when its mapping
    says it owns the field: two owners would let the last one read win, none would make
    "owner wins" keep the hub's value whichever system changed.
    """
    if draft.is_owner and not draft.reads:
        findings.refuse("is_owner", "Only a system the sync reads can own a field: choose 'Into the hub' or "
                                    "'Both ways', or untick owner.")
        return
    others = [other for other in siblings
              if other.hub_field == draft.hub_field and other.connection_id != draft.connection_id
              and other.pk != draft.pk]
    owner = next((other for other in others if other.is_owner and other.reads), None)
    if draft.is_owner and owner is not None:
        name = system_names.get(owner.connection_id, "another system")
        findings.refuse("is_owner", f"{name} already owns {draft.hub_field}: a field has one owner. Untick owner "
                                    f"here, or on {name}'s mapping first.")
    elif (draft.conflict_policy == OWNER_WINS and draft.reads and not draft.is_owner and owner is None):
        findings.refuse("is_owner", f"'Owner wins' needs a system that owns {draft.hub_field}, and no other system "
                                    "does: tick owner here, or choose another conflict policy.")
