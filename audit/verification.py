"""Checking the audit trail's hash chain against the rows stored (`manage.py verify_audit`)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connections, models, router
from django.db.models.functions import Cast

from audit import chain
from audit.models import AuditChainHead, AuditEvent
from audit.services import CHAIN_HEAD_ID

# Rows read per query: keyset pages by id, so memory stays flat whatever the table's size.
CHUNK_SIZE = 5000

_COLUMNS = ("id", "created_at", "action", "actor_id", "system", "object_type", "object_id", "contact_id", "run_id",
            "changes_text", "object_repr", "changes_digest", "prev_hash", "row_hash")


@dataclass(frozen=True)
class ChainReport:
    """The verdict on the whole trail."""

    checked: int
    redacted: int
    broken: chain.ChainBreak | None

    @property
    def valid(self) -> bool:
        return self.broken is None


def _rows(*, up_to: int, chunk_size: int) -> Iterator[chain.ChainRow]:
    """Yield the rows with ids up to `up_to` in id order, a page at a time.

    `changes` is read as the JSON text the database holds, not decoded by the model
    field and encoded again: the walk hashes it once, canonically.
    """
    events = AuditEvent.objects.annotate(changes_text=Cast("changes", models.TextField())).order_by("id")
    after = 0
    while True:
        page = list(events.filter(id__gt=after, id__lte=up_to).values_list(*_COLUMNS)[:chunk_size])
        yield from (chain.ChainRow._make(row) for row in page)
        if len(page) < chunk_size:
            return
        after = page[-1][0]


def _erasures(*, up_to: int) -> dict[int, int]:
    """Map each row an `audit.erased` event lists to the latest such event's id."""
    erased_by: dict[int, int] = {}
    listings = AuditEvent.objects.filter(action=chain.ERASED_ACTION, id__lte=up_to).order_by("id")
    for erasure_id, changes in listings.values_list("id", "changes").iterator(chunk_size=1000):
        for row_id in chain.erased_ids(changes):
            erased_by[row_id] = erasure_id
    return erased_by


def _beyond_head() -> int | None:
    """Return the first row stored after the head's last event, if any (an insertion).

    One statement, so the head and the rows are read in one snapshot: a writer updates
    the head in the transaction that adds its rows, so none is ever seen beyond it.
    """
    connection = connections[router.db_for_read(AuditEvent)]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MIN(event.id) FROM {quote(AuditEvent._meta.db_table)} event "
            f"WHERE event.id > head.last_event_id) FROM {quote(AuditChainHead._meta.db_table)} head "
            f"WHERE head.id = %s", [CHAIN_HEAD_ID])
        row = cursor.fetchone()
    return row[0] if row else None


def chain_verify(*, chunk_size: int = CHUNK_SIZE) -> ChainReport:
    """Walk the whole chain from its first row to the head, streaming; return the verdict.

    The rows are checked up to the head as read at the start; events written during the
    walk come after it and are left to the next check. Names the first altered row,
    the first row after missing ones, or an inserted row.
    """
    head = AuditChainHead.objects.filter(pk=CHAIN_HEAD_ID).values("last_hash", "last_event_id", "events").first()
    if head is None:
        first = AuditEvent.objects.order_by("id").values_list("id", flat=True).first()
        if first is None:
            return ChainReport(checked=0, redacted=0, broken=None)
        return ChainReport(checked=0, redacted=0, broken=chain.ChainBreak(
            chain.ChainBreak.MISSING, first, "the chain's head is gone: its last hash cannot be checked"))
    up_to = head["last_event_id"]
    walk = chain.chain_walk(_rows(up_to=up_to, chunk_size=chunk_size), erased_by=_erasures(up_to=up_to))
    broken = walk.broken
    if broken is None and walk.last_hash != head["last_hash"]:
        after = f"after row {walk.last_id}" if walk.last_id is not None else "from the start"
        broken = chain.ChainBreak(
            chain.ChainBreak.MISSING, walk.last_id or 0,
            f"rows were deleted {after}: the head names {head['events']} events ending in another hash")
    if broken is None:
        inserted = _beyond_head()
        if inserted is not None:
            broken = chain.ChainBreak(chain.ChainBreak.INSERTED, inserted,
                                      "it comes after the chain's last event and no writer chained it")
    return ChainReport(checked=walk.checked, redacted=walk.redacted, broken=broken)
