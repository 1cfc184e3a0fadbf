"""The audit trail's hash chain: what a row's hash covers, and how a walk over the rows judges them.

Pure functions over plain values; the database work is in audit.services (writing) and
audit.verification (reading).

Each row stores the previous row's hash (`prev_hash`) and its own:

    row_hash = sha256(SCHEME \\n prev_hash \\n content \\n changes_digest)

`content` is the canonical JSON of every column but the id, the hashes, `changes` and
`object_repr`; those two are covered through `changes_digest`, their own hash. An erasure
request may then replace a person's values in an old row by a redaction marker and
leave the digest, and the chain, as they were: a walk accepts a row whose `changes` no
longer match its digest only when they are the marker and a later `audit.erased` event
lists the row.

The id is left out: the chain's order is the order in which writers took the chain's
head, and ids are assigned while it is held, so walking by id walks the chain. SCHEME
is part of every hash, so the scheme can change later: a new one would start at an
event recording the change, and verification would switch there.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

SCHEME = "syncapp-audit-chain-v1"
# The prev_hash of the first row.
GENESIS = ""
ERASED_ACTION = "audit.erased"
ERASED_REPR = "erased"
ERASED_KEY = "_erased"
# The key of an `audit.erased` event's changes that lists the ids of the rows it redacted.
ERASED_LIST_KEY = "events"


def _number(text: str) -> int | float:
    # PostgreSQL's jsonb keeps numbers as decimals and gives 1e20 back as
    # 100000000000000000000 and 1.0 as 1.0 but -0.0 as 0.0: a whole number is hashed as
    # the integer it is, whatever its spelling, so both databases hash what they return.
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(text)


# Built once: json.loads and json.dumps build a new decoder or encoder per call when
# given options, and the engine hashes thousands of rows per page.
_DECODER = json.JSONDecoder(parse_float=_number)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_json_text(text: str) -> str:
    """Return the canonical form of a JSON document: sorted keys, no spaces, ASCII only."""
    return _CANONICAL.encode(_DECODER.decode(text))


def changes_digest_of_text(changes_text: str, object_repr: str) -> str:
    """Return the digest of an event's `changes` (given as JSON text) and `object_repr`."""
    covered = "\n".join([SCHEME, canonical_json_text(changes_text), json.dumps(object_repr, ensure_ascii=True)])
    return hashlib.sha256(covered.encode()).hexdigest()


def changes_digest(changes: Any, object_repr: str) -> str:
    """Return the digest of an event's `changes` and `object_repr`, the part an erasure may replace."""
    return changes_digest_of_text(json.dumps(changes), object_repr)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _id(value: Any) -> int | None:
    return None if value is None else int(value)


def content(
    *,
    created_at: datetime,
    action: str,
    actor_id: int | None,
    system: str,
    object_type: str,
    object_id: str,
    contact_id: int | None,
    run_id: int | None,
) -> str:
    """Return the canonical JSON of the columns a row's hash covers directly."""
    # Text and whole numbers only: no database respells them, so no round trip is needed.
    return _CANONICAL.encode({
        "created_at": _timestamp(created_at),
        "action": str(action),
        "actor_id": _id(actor_id),
        "system": str(system),
        "object_type": str(object_type),
        "object_id": str(object_id),
        "contact_id": _id(contact_id),
        "run_id": _id(run_id),
    })


def content_of(event: Any) -> str:
    """Return `content` of an event (an AuditEvent, an AuditRow or any object with the columns)."""
    return content(created_at=event.created_at, action=event.action, actor_id=event.actor_id, system=event.system,
                   object_type=event.object_type, object_id=event.object_id, contact_id=event.contact_id,
                   run_id=event.run_id)


def row_hash(prev_hash: str, row_content: str, digest: str) -> str:
    """Return a row's hash from the previous row's hash, its content and its changes digest."""
    return hashlib.sha256("\n".join([SCHEME, prev_hash, row_content, digest]).encode()).hexdigest()


def link(events: Iterable[Any], prev_hash: str) -> str:
    """Set each event's changes_digest, prev_hash and row_hash, in order after `prev_hash`.

    The events need their final values, `created_at` included. Return the last hash.
    """
    for event in events:
        event.changes_digest = changes_digest(event.changes, event.object_repr)
        event.prev_hash = prev_hash
        event.row_hash = prev_hash = row_hash(prev_hash, content_of(event), event.changes_digest)
    return prev_hash


def erasure_marker(reference: str) -> dict[str, str]:
    """Return the `changes` an erased event keeps: only the erasure that redacted it."""
    return {ERASED_KEY: reference}


def is_redacted(changes: Any, object_repr: str) -> bool:
    """Tell whether an event's personal values were replaced by the erasure marker."""
    return (object_repr == ERASED_REPR and isinstance(changes, dict) and list(changes) == [ERASED_KEY]
            and isinstance(changes[ERASED_KEY], str))


def erased_ids(changes: Any) -> list[int]:
    """Return the ids of the rows an `audit.erased` event's changes list as redacted."""
    listed = changes.get(ERASED_LIST_KEY) if isinstance(changes, dict) else None
    if not (isinstance(listed, list) and len(listed) == 2 and isinstance(listed[1], list)):
        return []
    return [row_id for row_id in listed[1] if isinstance(row_id, int)]


class ChainRow(NamedTuple):
    """A stored row as the walk reads it; `changes` as the JSON text the database returns."""

    id: int
    created_at: datetime
    action: str
    actor_id: int | None
    system: str
    object_type: str
    object_id: str
    contact_id: int | None
    run_id: int | None
    changes: str
    object_repr: str
    changes_digest: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainBreak:
    """Where the chain breaks: the row, and whether it was altered, inserted or follows missing rows."""

    ALTERED = "altered"
    MISSING = "missing"
    INSERTED = "inserted"

    kind: str
    row_id: int
    detail: str

    def __str__(self) -> str:
        return f"row {self.row_id} {self.kind}: {self.detail}"


@dataclass
class ChainWalk:
    """What a walk found: rows checked, redactions accepted, the last hash and the first break."""

    checked: int = 0
    redacted: int = 0
    last_id: int | None = None
    last_hash: str = GENESIS
    broken: ChainBreak | None = None


def _self_consistent(row: ChainRow) -> bool:
    return row_hash(row.prev_hash, content_of(row), row.changes_digest) == row.row_hash


def _link_break(row: ChainRow, previous: ChainRow | None, following: ChainRow | None, expected: str) -> ChainBreak:
    """Name why `row` does not follow the previous row's hash `expected`."""
    if previous is not None and row.prev_hash == previous.prev_hash:
        return ChainBreak(ChainBreak.INSERTED, previous.id,
                          f"row {row.id} follows the row before it, so row {previous.id} was added outside the chain")
    if following is not None and following.prev_hash == expected:
        return ChainBreak(ChainBreak.INSERTED, row.id,
                          f"the row after it (id {following.id}) follows the row before it")
    if not _self_consistent(row):
        return ChainBreak(ChainBreak.ALTERED, row.id, "its previous-row hash or its own hash was changed")
    after = f"after row {previous.id}" if previous is not None else "before it (it should start the chain)"
    return ChainBreak(ChainBreak.MISSING, row.id, f"rows were deleted {after}: it follows a row that is not there")


def chain_walk(rows: Iterable[ChainRow], *, erased_by: Mapping[int, int], start: str = GENESIS) -> ChainWalk:
    """Check rows given in id order; stop at the first break.

    `erased_by` maps a redacted row's id to the id of an `audit.erased` event that lists
    it; a redaction counts only when that event comes later in the chain.
    """
    walk = ChainWalk(last_hash=start)
    previous: ChainRow | None = None
    stream = _with_next(rows)
    for row, following in stream:
        if row.prev_hash != walk.last_hash:
            walk.broken = _link_break(row, previous, following, walk.last_hash)
            return walk
        if not _self_consistent(row):
            walk.broken = ChainBreak(ChainBreak.ALTERED, row.id, "a hashed column (time, action, actor, system, "
                                     "object, contact or run) or the changes digest was changed")
            return walk
        if changes_digest_of_text(row.changes, row.object_repr) != row.changes_digest:
            if not is_redacted(json.loads(row.changes), row.object_repr):
                walk.broken = ChainBreak(ChainBreak.ALTERED, row.id, "its changes or object description were changed")
                return walk
            if erased_by.get(row.id, 0) <= row.id:
                walk.broken = ChainBreak(ChainBreak.ALTERED, row.id,
                                         "it is marked erased but no later audit.erased event lists it")
                return walk
            walk.redacted += 1
        walk.checked += 1
        walk.last_id, walk.last_hash = row.id, row.row_hash
        previous = row
    return walk


def _with_next(rows: Iterable[ChainRow]) -> Iterator[tuple[ChainRow, ChainRow | None]]:
    """Yield each row with the one after it (None for the last): a break is named by looking ahead."""
    iterator = iter(rows)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following
