"""Which systems a full read (resync, backfill) must read again."""
from __future__ import annotations

from collections.abc import Collection, Mapping


def endpoints_to_read_fully(*, reads: Mapping[int, Collection[str]], backfill_fields: Collection[str]) -> set[int]:
    """Return the endpoints a full read reads from the beginning; the others read their changes.

    `reads` gives, per reading endpoint, the hub fields its mappings read. A full resync
    (no `backfill_fields`) reads every one of them. A backfill reads again the systems
    that read an affected field, whether they own it or not: their values are what the
    hub lacks (a field mapped after the records were read was never asked for), and a
    system that reads the field without owning it still holds a value the field's
    conflict policy must weigh before anything is written there. Each record read is
    compared with what every written system holds (pull's pending marks), so the
    systems that only write the field are filled without being read.

    When no system reads an affected field (a write-only mapping of a hub field no
    system feeds, or a mapping removed since), every reading system is read: the hub's
    values reach a written system only as its contacts are read and compared, and this
    is the one way to reach every linked contact.
    """
    wanted = set(backfill_fields)
    if not wanted:
        return set(reads)
    affected = {endpoint for endpoint, fields in reads.items() if wanted & set(fields)}
    return affected or set(reads)


def fields_compared_afresh(
    *, full_read: bool, backfill_fields: Collection[str], backfill_taken: Collection[str]
) -> frozenset[str]:
    """Return the hub fields a run merges and compares as if never agreed with any system.

    Those of a backfill, whether asked for (`backfill_fields`) or taken from the sync as
    it started (`backfill_taken`, which a full resync takes without narrowing its reads):
    their mappings changed since their values were read, so what was agreed through the
    old mapping says nothing now. A run that reads only the changes compares nothing afresh.
    """
    if not full_read:
        return frozenset()
    return frozenset(backfill_fields) | frozenset(backfill_taken)
