"""The three-way merge of one record read from a system into its hub contact, field by field.

Pure: the caller gives the fields read (each in the system's form and in hub form), the
hub's values, the merge base agreed with that system, the fields an open conflict holds
and those a backfill compares afresh; `merge_record` says what the hub takes, what the
link's base becomes, which conflicts open, which fields join an open conflict and which
consent statements the consent rule must decide. It never touches a database: the
service applying a page loads, calls this, and stores (services.page_applier).

Per field:
- unchanged there since the base (or an echo of Syncapp's own write): not news, skipped,
  unless a backfill compares it afresh (the mapping changed: read through the new one the
  same value may mean something else);
- held by an open conflict: the value joins the conflict (the reviewer sees it) and the
  base takes it, the hub does not;
- a consent field: handed back for the consent rule (engine.consent), never merged here;
- otherwise `merge_field` decides; a conflict keeps the hub's value and the base takes
  the value seen, so that the next read of it is not news again.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncapp.engine.merge import NO_BASE, FieldRule, Outcome, is_empty, merge_field


# Slotted and not frozen: one is made per field of every record read, and a frozen
# dataclass costs twice as much to build.
@dataclass(slots=True)
class FieldRead:
    """One field of a record read: where it comes from, and its value in both forms."""

    hub_field: str
    external_field: str
    # As the system holds it, in the form merge bases keep (JSON).
    raw: Any
    # In hub form, through the mapping's inbound transforms.
    theirs: Any
    rule: FieldRule
    # Merged by the consent rule, not field by field.
    consent: bool = False


@dataclass(frozen=True, slots=True)
class ConflictSeen:
    """Both sides changed a field under manual review: a conflict to open."""

    read: FieldRead
    # The value last agreed, in hub form; None when none was.
    hub_base: Any
    ours: Any


@dataclass(frozen=True, slots=True)
class ConsentStatement:
    """A consent field the system states something new about: the consent rule decides."""

    read: FieldRead
    # The state last agreed with the system; None when none was.
    base: Any
    ours: Any


@dataclass(slots=True)
class RecordMerge:
    """What one record does to its contact and its link."""

    # Hub field -> the value the hub takes (always different from the hub's).
    takes: dict[str, Any] = field(default_factory=dict)
    # The link's merge base after the read.
    new_base: dict[str, Any] = field(default_factory=dict)
    conflicts: list[ConflictSeen] = field(default_factory=list)
    # Fields an open conflict holds: the system's value joins it.
    joins: list[FieldRead] = field(default_factory=list)
    consent: list[ConsentStatement] = field(default_factory=list)


def merge_record(
    *,
    reads: Sequence[FieldRead],
    ours: Mapping[str, Any],
    base: Mapping[str, Any],
    base_in_hub_form: Callable[[FieldRead, Any], Any],
    held: Collection[str] = (),
    afresh: Collection[str] = (),
    consent_bases: Mapping[str, Any] | None = None,
    left_out: Mapping[str, Any] | None = None,
    written_only: Mapping[str, Any] | None = None,
    theirs_changed_at: datetime | None = None,
    ours_changed_at: datetime | None = None,
) -> RecordMerge:
    """Merge the fields of one record into the hub's values (`ours`, by hub field).

    `base` is the link's merge base by external field (empty for a record seen for the
    first time); `base_in_hub_form(read, raw)` reads a base value through the field's
    mapping, returning NO_BASE when it cannot. `consent_bases` overrides the base of a
    consent field with the state last agreed, Syncapp's own writes included (they travel
    apart from the fields, so the field's base may predate them). `left_out` are the
    fields the record carries that could not be read (external field -> raw value): the
    system still holds them, so they stay in the base, and the hub's empty value is not
    sent back over them. `written_only` are the values of the fields the sync only writes
    there (external field -> raw value): never merged into the hub, they are recorded in
    the base as what the system holds now, so that a push sends only a value that
    differs. `ours_changed_at` is None for a contact new to the hub.
    """
    result = RecordMerge(new_base=dict(base))
    for read in reads:
        external_field, raw = read.external_field, read.raw
        hub_value = ours.get(read.hub_field)
        unchanged_there = external_field in base and base[external_field] == raw
        base_value: Any = NO_BASE
        if unchanged_there and read.hub_field in afresh:
            # Backfilled: read through the new mapping, a value held all along may say
            # something else now, as if only the system had changed it; an empty one
            # changes nothing.
            if is_empty(read.theirs):
                continue
            base_value = hub_value
        elif unchanged_there:
            continue
        elif external_field in base:
            base_value = base_in_hub_form(read, base[external_field])
        result.new_base[external_field] = raw
        if read.hub_field in held:
            result.joins.append(read)
            continue
        if read.consent:
            agreed = (consent_bases or {}).get(read.hub_field)
            if agreed:
                base_value = agreed
            result.consent.append(ConsentStatement(read, None if base_value is NO_BASE else base_value, hub_value))
            continue
        decision = merge_field(base=base_value, theirs=read.theirs, ours=hub_value, rule=read.rule,
                               theirs_changed_at=theirs_changed_at, ours_changed_at=ours_changed_at)
        if decision.outcome is Outcome.CONFLICT:
            result.conflicts.append(ConflictSeen(read, None if base_value is NO_BASE else base_value, hub_value))
        elif decision.value != hub_value:
            result.takes[read.hub_field] = decision.value
    result.new_base.update(written_only or {})
    result.new_base.update(left_out or {})
    return result
