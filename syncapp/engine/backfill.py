"""Backfills and full reads: which systems to read again, and what to compare afresh.

A backfill is asked for by keys: `hub_field@connection_id:direction` for a mapping that
changed (its system's reading, `in`, or writing, `out`, of the hub field), without the
direction when both changed, or a bare hub field for every system and both ways
(requests made before keys named the system). "@" and ":" cannot occur in a hub
field's name (mappings.hub_fields).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

BOTH, IN, OUT = "both", "in", "out"


def backfill_key(hub_field: str, connection_id: int | None = None, direction: str = BOTH) -> str:
    """Return the key that asks a backfill of `hub_field`: for one system (or None: every one), one way or both."""
    if connection_id is None:
        return hub_field
    return f"{hub_field}@{connection_id}" + ("" if direction == BOTH else f":{direction}")


def backfill_key_split(key: str) -> tuple[str, int | None, str]:
    """Return (hub field, connection id or None, direction) of a backfill key."""
    hub_field, separator, rest = key.partition("@")
    connection, _, direction = rest.partition(":")
    if not separator or not connection.isdigit():
        return key, None, BOTH
    return hub_field, int(connection), direction if direction in (IN, OUT) else BOTH


def backfill_hub_fields(keys: Iterable[str]) -> list[str]:
    """Return the hub fields the keys are about, each once, sorted."""
    return sorted({backfill_key_split(key)[0] for key in keys})


def endpoints_to_read_fully(*, reads: Mapping[int, Collection[str]], backfill_fields: Collection[str]) -> set[int]:
    """Return the endpoints a full read reads from the beginning; the others read their changes.

    `reads` gives, per reading endpoint, the hub fields its mappings read;
    `backfill_fields` are backfill keys. A full resync (no keys) reads every one of them.
    A backfill reads again the systems that read an affected field, whether their own
    mapping changed or not: their values are what the hub lacks (a field mapped after
    the records were read was never asked for), and each record read is compared with
    what every written system holds (pull's pending marks), so the systems that only
    write the field are filled without being read.

    When no system reads an affected field (a write-only mapping of a hub field no
    system feeds, or a mapping removed since), every reading system is read: the hub's
    values reach a written system only as its contacts are read and compared, and this
    is the one way to reach every linked contact.
    """
    wanted = set(backfill_hub_fields(backfill_fields))
    if not wanted:
        return set(reads)
    affected = {endpoint for endpoint, fields in reads.items() if wanted & set(fields)}
    return affected or set(reads)


def fields_compared_afresh(
    *, full_read: bool, backfill_fields: Collection[str], backfill_taken: Collection[str]
) -> frozenset[str]:
    """Return the backfill keys a run compares afresh: none unless it reads in full.

    Those asked for (`backfill_fields`) and those taken from the sync as it started
    (`backfill_taken`, which a full resync takes without narrowing its reads): their
    mappings changed since their values were read.
    """
    if not full_read:
        return frozenset()
    return frozenset(backfill_fields) | frozenset(backfill_taken)


def afresh_for(keys: Iterable[str], connection_id: int, direction: str) -> frozenset[str]:
    """Return the hub fields whose mapping on `connection_id` changed in `direction` (in or out).

    Only that system's reading or writing of the field is compared afresh: another
    system's mapping of the same field did not change, nor did this one's other way,
    and neither must their values.
    """
    fields = set()
    for key in keys:
        hub_field, connection, way = backfill_key_split(key)
        if connection in (None, connection_id) and way in (BOTH, direction):
            fields.add(hub_field)
    return frozenset(fields)
