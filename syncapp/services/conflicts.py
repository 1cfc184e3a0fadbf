"""Resolving conflicts: a reviewer's decision written to the hub, audited, and sent out.

A conflict holds one field of one contact back while two systems disagree about it.
Resolving it writes the chosen value to the hub, takes each system's current value as
its link's merge base (so the next read of that system is not taken for a new change),
marks the contact for a push to every system the sync writes, and asks for a run that
carries the value out.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from audit.suppression import is_suppressed
from connections.models import Connection
from mappings.transforms import TransformError
from syncapp.engine.text import clean_text
from syncapp.models import Conflict, Contact, RecordLink
from syncapp.models.hub import hub_field_label
from syncapp.services.pending import pending_mark
from syncapp.services.plan import hub_column, hub_value_check, plain, set_hub_value
from syncapp.services.runs import runs_request_for

# The hub fields that name a person on the suppression list (audit.suppression).
SUPPRESSED_FIELDS = ("email", "phone")
KEEP_SIDE = "side"
KEEP_HUB = "hub"
KEEP_TYPED = "typed"


class ConflictClosed(Exception):
    """The conflict was resolved or settled already."""


class InvalidResolution(ValueError):
    """The chosen value cannot resolve this conflict; the message says why, for the reviewer."""


@dataclass(frozen=True)
class Choice:
    """What a reviewer keeps: one system's value, the hub's value, or a value they typed.

    One choice can be applied to many conflicts: "keep HubSpot's value" picks, in each
    conflict, the side of that connection.
    """

    keep: str
    connection_id: int | None = None
    typed_value: str = ""

    @classmethod
    def side(cls, connection_id: int) -> Choice:
        return cls(KEEP_SIDE, connection_id=connection_id)

    @classmethod
    def hub(cls) -> Choice:
        return cls(KEEP_HUB)

    @classmethod
    def typed(cls, value: str) -> Choice:
        return cls(KEEP_TYPED, typed_value=value)

    def pick(self, conflict: Conflict) -> tuple[Any, str]:
        """Return (value, resolution) for `conflict`, or raise InvalidResolution."""
        if self.keep == KEEP_SIDE:
            side = conflict_side(conflict, self.connection_id)
            if side is None:
                raise InvalidResolution("No value from that system in this conflict.")
            return side["value"], Conflict.Resolution.SIDE
        if self.keep == KEEP_HUB:
            return conflict.hub_value, Conflict.Resolution.HUB
        return self.typed_value, Conflict.Resolution.TYPED


@dataclass
class BulkResolution:
    """What a bulk resolution did: the conflicts resolved, and the others with why not."""

    resolved: list[Conflict] = field(default_factory=list)
    refused: list[tuple[Conflict, str]] = field(default_factory=list)


def conflict_side(conflict: Conflict, connection_id: int | None) -> dict[str, Any] | None:
    """Return the side of `conflict` read from connection `connection_id`, if it has one."""
    return next((side for side in conflict.sides if side.get("connection_id") == connection_id), None)


def conflict_outcome(conflict: Conflict) -> str:
    """Describe how a closed conflict ended: "Kept HubSpot's value", "Typed a value"..."""
    if conflict.status == Conflict.Status.SETTLED:
        return "Settled outside: the systems agree again"
    if conflict.resolution == Conflict.Resolution.SIDE:
        systems = [side["system"] for side in conflict.sides if side.get("value") == conflict.chosen_value]
        if systems:
            return "Kept " + " and ".join(f"{system}'s" for system in systems) + " value"
        return "Kept one system's value"
    if conflict.resolution == Conflict.Resolution.HUB:
        return "Kept the hub's value"
    return "Typed a value"


def conflict_resolve(*, conflict: Conflict, value: Any, resolution: str, user, reason: str = "") -> Conflict:
    """Close `conflict` with `value`, audited, and request a run that sends it everywhere.

    `resolution` is Conflict.Resolution.SIDE (a value one system holds now) or TYPED
    (checked as the hub field would check an incoming value). Raises ConflictClosed if
    the conflict is no longer open, InvalidResolution if `value` cannot resolve it.
    """
    resolved = _resolve(conflict_id=conflict.pk, pick=lambda _locked: (value, resolution), user=user, reason=reason)
    runs_request_for(syncs=[resolved.sync], user=user)
    return resolved


def conflicts_resolve_many(*, conflicts: Iterable[Conflict], choice: Choice, user, reason: str = "") -> BulkResolution:
    """Apply `choice` to each conflict, each in its own transaction and audited on its own.

    A conflict the choice cannot resolve (closed meanwhile, no side from that system, a
    typed value its field cannot hold) is left open and reported with the reason. One run
    is requested per sync, after all of them.
    """
    outcome = BulkResolution()
    for conflict in conflicts:
        try:
            resolved = _resolve(conflict_id=conflict.pk, pick=choice.pick, user=user, reason=reason)
        except ConflictClosed:
            outcome.refused.append((conflict, "It was closed already."))
        except InvalidResolution as error:
            outcome.refused.append((conflict, str(error)))
        else:
            outcome.resolved.append(resolved)
    runs_request_for(syncs=[conflict.sync for conflict in outcome.resolved], user=user)
    return outcome


def _resolve(*, conflict_id: int, pick: Callable[[Conflict], tuple[Any, str]], user, reason: str) -> Conflict:
    """Lock the conflict, check the value `pick(conflict)` returns, and write the decision."""
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().get(pk=conflict_id)
        if not conflict.is_open:
            raise ConflictClosed(f"Conflict {conflict.pk} is {conflict.get_status_display().lower()}.")
        value, resolution = pick(conflict)
        value = _checked_value(conflict, value, resolution)
        contact = Contact.objects.select_for_update().get(pk=conflict.contact_id)
        old = plain(contact.hub_value(conflict.hub_field))
        set_hub_value(contact, conflict.hub_field, value)
        contact.save(update_fields=[hub_column(conflict.hub_field), "updated_at"])
        _links_rebase(conflict, contact)

        conflict.status = Conflict.Status.RESOLVED
        conflict.resolution = resolution
        conflict.chosen_value = plain(value)
        conflict.reason = reason
        conflict.resolved_by = user
        conflict.resolved_at = timezone.now()
        conflict.save(update_fields=["status", "resolution", "chosen_value", "reason", "resolved_by", "resolved_at",
                                     "updated_at"])
        audit_record(
            action="conflict.resolved",
            obj=conflict,
            actor=user,
            contact_id=contact.pk,
            changes={
                conflict.hub_field: [old, conflict.chosen_value],
                "resolution": [None, conflict_outcome(conflict)],
                "reason": [None, reason],
            },
        )
    return conflict


def _checked_value(conflict: Conflict, value: Any, resolution: str) -> Any:
    if resolution == Conflict.Resolution.SIDE:
        # The page showed the sides as they were; a run may have read a newer value
        # since. Keeping a value no system holds any more is not keeping a side.
        if not any(side.get("value") == value for side in conflict.sides):
            raise InvalidResolution("The systems' values changed since the page was loaded. "
                                    "Review the conflict again.")
        return value
    if resolution == Conflict.Resolution.HUB:
        if value != conflict.hub_value:
            raise InvalidResolution("The hub's value changed since the page was loaded. Review the conflict again.")
        return value
    if resolution != Conflict.Resolution.TYPED:
        raise ValueError(f"A reviewer resolves with a side, the hub's value or a typed value, not {resolution!r}.")
    if isinstance(value, str):
        # As the engine cleans what systems send: NFC, no NUL bytes.
        value = clean_text(value)
    try:
        value = hub_value_check(conflict.hub_field, value, phone_region=_phone_region(conflict))
    except TransformError as error:
        raise InvalidResolution(
            f"The typed value does not fit {hub_field_label(conflict.hub_field)}: {error}."
        ) from None
    if conflict.hub_field in SUPPRESSED_FIELDS and value and is_suppressed(**{conflict.hub_field: value}):
        # A person erased on request is never brought back, nor given to somebody else's contact.
        raise InvalidResolution(f"This {hub_field_label(conflict.hub_field).lower()} belongs to a person erased on "
                                "request: it cannot be kept in Syncapp.")
    return value


def _phone_region(conflict: Conflict) -> str | None:
    """Return the default phone region of the first system in the conflict, for typed numbers."""
    for side in conflict.sides:
        region = (
            Connection.objects.filter(pk=side.get("connection_id")).values_list("default_phone_region", flat=True)
            .first()
        )
        if region:
            return region
    return None


def _links_rebase(conflict: Conflict, contact: Contact) -> None:
    """Take each system's current value as agreed, and mark the contact's links for a push.

    The hub's value changed: every sync writing one of the contact's systems is marked,
    the conflict's own and any other sharing a system (one with nothing of its own to
    send there settles its mark without a call).
    """
    sides = {side["connection_id"]: side for side in conflict.sides if side.get("connection_id")}
    for link in RecordLink.objects.select_for_update().filter(contact=contact, connection_id__in=list(sides)):
        side = sides[link.connection_id]
        link.merge_base = {**link.merge_base, side["external_field"]: side["raw"]}
        link.save(update_fields=["merge_base", "updated_at"])
    pending_mark(links=RecordLink.objects.filter(contact=contact, archived=False))
