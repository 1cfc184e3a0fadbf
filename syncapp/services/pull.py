"""Pulling one system's changed records into the hub, one page per transaction.

Per page, in one transaction: map and transform, match identity, merge field by field,
write the hub's changes, the links' merge bases, this sync's pending-push marks for the
systems it writes (services.pending), the consent ledger and record errors, move the
endpoint's cursor (only while the run holds its lease) and the run's counts (saved every
few seconds), and write the audit rows last (the chain's head stays locked until the
commit: docs/security.md). Echoes of Syncapp's own writes are set aside first
(services.echoes). A crash re-reads at most that page, and re-reading it is harmless:
values equal to the merge base change nothing. The number of statements per page is
fixed, whatever the page size and content: one per table written, a few reads
(tests/syncapp/test_page_statements.py).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record_many
from syncapp.models import RecordError
from syncapp.services.background import prefetched
from syncapp.services.echoes import echoes_may_be_set_aside, echoes_set_aside
from syncapp.services.incoming import PreparedPage, prepare_page, without_suppressed
from syncapp.services.page_applier import PageApplier
from syncapp.services.plan import EndpointPlan, SyncPlan
from syncapp.services.record_errors import records_with
from syncapp.services.tracker import RunTracker

__all__ = ["apply_page", "prepare_page", "pull_endpoint"]


def pull_endpoint(
    *, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan,
    after_page: Callable[[dict[int, int]], None] | None = None,
    full: bool = False,
) -> None:
    """Read every record changed since the endpoint's cursor into the hub; every record with `full`.

    The next page is read and converted in a background thread while the current one
    is written: the conversion needs no database, and the writes spend much of their
    time in SQLite, which lets other Python threads run. `after_page` runs after each
    committed page, with the number of links the page marked for each system (the run
    sends full push batches from there). A full read (resync, backfill) starts from the
    provider's full-read cursor, which keeps what the cursor in use still owes.
    """
    tracker.current = reader.connection
    cursor = reader.endpoint.cursor or None
    if full:
        tracker.phase(f"Reading every record of {reader.name}")
        cursor = reader.provider.full_read_cursor(cursor)
    else:
        tracker.phase(f"Reading {reader.name}")
    pages = reader.provider.read_changed(cursor)
    prepared = prefetched(prepare_page(reader=reader, page=page) for page in pages)
    echoes_skipped = echoes_may_be_set_aside(plan=plan, full=full)
    try:
        for ready in prepared:
            marked = apply_page(tracker=tracker, plan=plan, reader=reader, prepared=ready,
                                echoes_skipped=echoes_skipped)
            if after_page is not None:
                after_page(marked)
    finally:
        prepared.close()


def apply_page(
    *, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan, prepared: PreparedPage, echoes_skipped: bool = True,
) -> dict[int, int]:
    """Write one prepared page to the hub and move the cursor past it, in one transaction.

    With `echoes_skipped` (delta reads outside a backfill), the records that only hold
    what Syncapp last agreed with the system (the echoes of its own writes:
    services.echoes) are counted and skip the rest; a full read gives every record the
    full treatment. Return how many links the page marked pending for this sync, by
    connection id.
    """
    with transaction.atomic():
        # People erased on request are skipped before matching (see _without_suppressed).
        incoming, errors, suppressed = without_suppressed(prepared)
        echoes = 0
        if echoes_skipped:
            incoming, echoes = echoes_set_aside(reader=reader, incoming=incoming)
        applier = PageApplier(tracker=tracker, plan=plan, reader=reader)
        applier.apply(incoming, errors, prepared.archived)
        reader.endpoint.cursor = prepared.page.cursor
        reader.endpoint.cursor_updated_at = timezone.now()
        # The page's conditional update: written only while the run holds its lease.
        tracker.cursor_save(reader.endpoint)
        tracker.advance(
            lazily=True,
            done=prepared.read,
            total=prepared.page.total,
            read_count=prepared.read,
            created_count=applier.created,
            updated_count=applier.updated,
            unchanged_count=applier.unchanged + echoes,
            echo_count=echoes,
            conflict_count=applier.conflicts,
            # Records, not errors: a record left without two fields is one warning count.
            failed_count=len(records_with(applier.errors, severity=RecordError.Severity.ERROR, by_contact=False)),
            warning_count=len(records_with(applier.errors, severity=RecordError.Severity.WARNING, by_contact=False)),
            suppressed_count=suppressed,
        )
        # Last: the chain's head is locked from here to the commit, so every contact,
        # link, ledger row, error, the cursor and the run's row are written before it.
        audit_record_many(applier.audit_rows)
    return dict(Counter(link.connection_id for link in applier.marking))
