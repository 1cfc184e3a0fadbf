"""Reads for the pages: syncs with their latest run, a run's progress, its errors, a page of contacts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Case, CharField, Count, Max, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Concat

from audit.models import AuditEvent
from connections.models import Connection
from syncapp.models import Conflict, Contact, RecordError, Sync, SyncRun

RECENT_RUNS = 10
RECENT_CONTACT_EVENTS = 10
CONTACTS_PER_PAGE = 50
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sync_list_with_last_run() -> list[Sync]:
    """Return every sync, each with `last_run` set (None when it never ran)."""
    syncs = list(Sync.objects.prefetch_related("endpoints__connection"))
    last_ids = SyncRun.objects.values("sync_id").annotate(last_id=Max("id")).values_list("last_id", flat=True)
    last_runs = {run.sync_id: run for run in SyncRun.objects.filter(id__in=list(last_ids))}
    for sync in syncs:
        sync.last_run = last_runs.get(sync.pk)
    return syncs


def connection_list() -> QuerySet[Connection]:
    return Connection.objects.only("id", "name", "provider", "status", "last_error", "updated_at")


def sync_recent_runs(*, sync: Sync, limit: int = RECENT_RUNS) -> list[SyncRun]:
    return list(sync.runs.select_related("requested_by")[:limit])


def run_record_errors(*, run: SyncRun, severity: str | None = None) -> QuerySet[RecordError]:
    """Return a run's record errors, then its warnings; or only those of `severity` (error, warning)."""
    errors = run.record_errors.select_related("connection").order_by("severity", "id")
    if severity is not None:
        errors = errors.filter(severity=severity)
    return errors


def run_record_error_counts(*, run: SyncRun) -> dict[str, int]:
    """Return how many records failed and how many synced with warnings: {"error": n, "warning": m}.

    Records, not rows, as the run's own counters (failed_count, warning_count) count
    them: a record left without two fields has two warning rows and is one warning.
    """
    counts = dict.fromkeys(RecordError.Severity.values, 0)
    rows = run.record_errors.order_by().values_list("severity").annotate(total=Count(_record_key(), distinct=True))
    counts.update(dict(rows))
    return counts


def _record_key():
    """Return the record a row is about, as one text (connection, then contact or id).

    As syncapp.services.record_errors keys them: problems met writing by the contact,
    those met reading by the system's id; a row with neither stands for itself.
    """
    text = CharField()
    return Concat(
        Cast("connection_id", text), Value(":"),
        Case(
            When(contact_id__isnull=False, then=Concat(Value("contact "), Cast("contact_id", text), output_field=text)),
            When(~Q(external_id=""), then=Concat(Value("id "), "external_id", output_field=text)),
            default=Concat(Value("row "), Cast("id", text), output_field=text),
            output_field=text,
        ),
        output_field=text,
    )


def run_is_finished(run: SyncRun) -> bool:
    return run.status not in SyncRun.ACTIVE


def run_counts(run: SyncRun) -> dict[str, int]:
    return {
        "read": run.read_count,
        "created": run.created_count,
        "updated": run.updated_count,
        "unchanged": run.unchanged_count,
        "pushed": run.pushed_count,
        "conflicts": run.conflict_count,
        "failed": run.failed_count,
        "warnings": run.warning_count,
        "suppressed": run.suppressed_count,
        "echoes": run.echo_count,
    }


def run_progress(*, run: SyncRun) -> dict[str, Any]:
    """Return what the progress bar shows: phase, done/total, percent, counts, timings."""
    return {
        "run_id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "phase": run.phase,
        "done": run.progress_done,
        "total": run.progress_total,
        "percent": run.percent,
        "counts": run_counts(run),
        "api_calls": run.api_call_total,
        "duration_seconds": run.duration_seconds,
        "error": run.error,
        "finished": run_is_finished(run),
    }


def conflict_list() -> QuerySet[Conflict]:
    """Return conflicts with what the review queue shows of each, oldest first."""
    return Conflict.objects.select_related("sync", "contact", "resolved_by").prefetch_related("connections")


def open_conflict_count() -> int:
    return Conflict.objects.filter(status=Conflict.Status.OPEN).count()


def contact_recent_events(*, contact_id: int, limit: int = RECENT_CONTACT_EVENTS) -> list[AuditEvent]:
    """Return the latest audit events about one contact, newest first."""
    return list(AuditEvent.objects.filter(contact_id=contact_id).select_related("actor").order_by("-id")[:limit])


@dataclass(frozen=True)
class ContactCursor:
    """A place in the contact list, newest change first: a contact's change time and id.

    Written in links as "<microseconds since 1970>-<id>", exact to the microsecond the
    database holds, so a page starts exactly after (or before) the contact it names.
    """

    updated_at: datetime
    id: int

    @classmethod
    def of(cls, contact: Contact) -> ContactCursor:
        return cls(contact.updated_at, contact.pk)

    @classmethod
    def parse(cls, text: str) -> ContactCursor:
        """Return the cursor `text` writes; ValueError if it writes none."""
        microseconds, _, contact_id = text.partition("-")
        return cls(EPOCH + timedelta(microseconds=int(microseconds)), int(contact_id))

    def __str__(self) -> str:
        return f"{(self.updated_at - EPOCH) // timedelta(microseconds=1)}-{self.id}"


@dataclass(frozen=True)
class ContactPage:
    contacts: list[Contact]
    # Where the pages of contacts changed more recently, and less recently, start; None at either end.
    newer: ContactCursor | None
    older: ContactCursor | None


def contact_page(contacts: QuerySet[Contact], *, after: ContactCursor | None = None,
                 before: ContactCursor | None = None, size: int = CONTACTS_PER_PAGE) -> ContactPage:
    """Return the page of `contacts`, most recently changed first, following `after` or preceding `before`.

    Keyset paging on (updated_at, id), which the contact_updated_idx index holds in
    order: a page deep in a million contacts costs what the first one does. Without
    either cursor, the first page. One more row than shown is read to know whether
    another page follows; each contact's systems come in one query for the page.
    """
    contacts = contacts.prefetch_related("links__connection")
    if before is not None:
        # The range on updated_at is what the index serves; the exclusion keeps the ties' order.
        newer = contacts.filter(updated_at__gte=before.updated_at).exclude(updated_at=before.updated_at,
                                                                           id__lte=before.id)
        rows = list(newer.order_by("updated_at", "id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return ContactPage(rows, newer=ContactCursor.of(rows[0]) if more_newer else None,
                           older=ContactCursor.of(rows[-1]) if rows else None)
    if after is not None:
        contacts = contacts.filter(updated_at__lte=after.updated_at).exclude(updated_at=after.updated_at,
                                                                             id__gte=after.id)
    rows = list(contacts.order_by("-updated_at", "-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    newer = ContactCursor.of(rows[0]) if after is not None and rows else None
    return ContactPage(rows, newer=newer, older=ContactCursor.of(rows[-1]) if more_older else None)
