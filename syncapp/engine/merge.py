"""The three-way merge of one field: base (last agreed), theirs (incoming), ours (hub).

- theirs == base: the system did not change the field. This also catches echoes: after
  a push the base is what Syncapp wrote, so reading our own write back is no change,
  and two-way sync cannot loop.
- ours == base: only the system changed it, take theirs.
- both changed to different values: the field's policy decides (owner wins, most recent
  wins, or manual review, which holds the field back as a conflict).
- an empty incoming value never replaces a hub value when the mapping says so.

A field absent from the incoming record (the system did not send it) is not empty: it
is not merged at all. Values are compared in hub form (after the mapping's transforms).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Policy(StrEnum):
    OWNER_WINS = "owner_wins"
    MOST_RECENT = "most_recent"
    MANUAL = "manual"


class Outcome(StrEnum):
    # The hub keeps its value and the system agrees with it (or only echoed it).
    UNCHANGED = "unchanged"
    # The hub takes the incoming value.
    TAKE_THEIRS = "take_theirs"
    # The hub keeps its value although the system now holds another one.
    KEEP_OURS = "keep_ours"
    # Both sides changed and a reviewer must choose; the hub keeps its value meanwhile.
    CONFLICT = "conflict"


class _NoBase:
    """No value was ever agreed for this field (a record seen for the first time)."""

    def __repr__(self) -> str:
        return "NO_BASE"


NO_BASE: Any = _NoBase()


@dataclass(frozen=True)
class FieldRule:
    policy: Policy = Policy.OWNER_WINS
    # The system being read is the field's source of truth.
    incoming_owns: bool = False
    never_overwrite_with_empty: bool = True


@dataclass(frozen=True)
class FieldDecision:
    outcome: Outcome
    # The hub's value after the decision.
    value: Any
    reason: str

    @property
    def changes_hub(self) -> bool:
        return self.outcome is Outcome.TAKE_THEIRS


def is_empty(value: Any) -> bool:
    """Return True for values that say "nothing here": None, "", [] and {}."""
    return value is None or value == "" or value == [] or value == {}


def same(a: Any, b: Any) -> bool:
    """Return whether two values are the same for the merge: two spellings of "nothing"
    (None, "", [], {}) are; a system reading back "" as None has not changed anything."""
    return a == b or (is_empty(a) and is_empty(b))


def merge_field(
    *,
    base: Any,
    theirs: Any,
    ours: Any,
    rule: FieldRule,
    theirs_changed_at: datetime | None = None,
    ours_changed_at: datetime | None = None,
) -> FieldDecision:
    """Decide the hub's value of one field after reading `theirs` from a system.

    `base` is NO_BASE when nothing was ever agreed with that system for this field.
    The change times serve the most-recent policy; an unknown time never wins.
    """
    if base is not NO_BASE and same(theirs, base):
        return FieldDecision(Outcome.UNCHANGED, ours, "unchanged in the system, or an echo of Syncapp's own write")
    if same(theirs, ours):
        return FieldDecision(Outcome.UNCHANGED, ours, "the system and the hub already agree")
    if is_empty(theirs) and rule.never_overwrite_with_empty and not is_empty(ours):
        return FieldDecision(Outcome.KEEP_OURS, ours, "an empty value never overwrites the hub's")
    if base is not NO_BASE and same(ours, base):
        return FieldDecision(Outcome.TAKE_THEIRS, theirs, "changed only in the system")
    if base is NO_BASE and is_empty(ours):
        return FieldDecision(Outcome.TAKE_THEIRS, theirs, "the hub had no value")
    return _resolve_both_changed(theirs, ours, rule, theirs_changed_at, ours_changed_at)


def _resolve_both_changed(theirs, ours, rule, theirs_changed_at, ours_changed_at) -> FieldDecision:
    if rule.policy is Policy.MANUAL:
        return FieldDecision(Outcome.CONFLICT, ours, "changed on both sides: held for review")
    if rule.policy is Policy.MOST_RECENT:
        if theirs_changed_at is None:
            return FieldDecision(Outcome.KEEP_OURS, ours, "changed on both sides; the system's change time is unknown")
        if ours_changed_at is None or theirs_changed_at > ours_changed_at:
            return FieldDecision(Outcome.TAKE_THEIRS, theirs, "changed on both sides; the system's change is newer")
        return FieldDecision(Outcome.KEEP_OURS, ours, "changed on both sides; the hub's change is newer")
    if rule.incoming_owns:
        return FieldDecision(Outcome.TAKE_THEIRS, theirs, "changed on both sides; the system owns the field")
    return FieldDecision(Outcome.KEEP_OURS, ours, "changed on both sides; the system does not own the field")

