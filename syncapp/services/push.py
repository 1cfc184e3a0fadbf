"""Pushing the hub's pending contacts to one system, in the provider's largest batches.

Only the links this sync marked pending for the system are read (one range of the
marks' index, keyset paged), never every contact; another sync sharing the system pushes
its own marks with its own mappings (services.pending). Each batch's results are applied
in one transaction: accepted records get their external id and a new merge base (the
values sent) and lose this sync's mark; rejected ones become record errors and keep the
mark, but the same payload is not sent again until the contact changes; retriable
failures are simply tried again by the next run. Sending a batch twice (a worker died
after the provider accepted it) does no harm: new records are upserted by a key (an
email, a phone), never created blind (connections.providers.base.RecordKeys).

HTTP and the database overlap: up to PUSH_IN_FLIGHT batches are on the wire while the
main thread reads the next pending links and applies finished batches, and full batches
already go out while other systems are still being read (see `Pusher`).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import AuditRow, audit_record_many, audit_row_build
from audit.suppression import suppressed_among
from connections.providers.base import AuthenticationError, OutgoingRecord, Provider, ProviderError, RecordResult
from syncapp.engine.batching import chunk, push_group_size
from syncapp.engine.consent import reply_statement, state_asked
from syncapp.models import ConsentEvent, Contact, RecordError, RecordLink
from syncapp.services.bulk import bulk_insert_rows, bulk_update_rows
from syncapp.services.consent_ledger import ReportedState, consent_reports_apply
from syncapp.services.held import held_fields
from syncapp.services.pending import pending_clear, pending_links, pending_marks
from syncapp.services.plan import ATTRIBUTE_PREFIX, EndpointPlan, Payload, SyncPlan, hub_column
from syncapp.services.record_errors import (
    PULL_ERRORS,
    ErrorItem,
    field_warnings,
    record_errors_resolve,
    record_errors_save,
    record_errors_settle,
    records_with,
)
from syncapp.services.tracker import RunTracker

# Pending links read per query while looking for work.
SCAN_PAGE = 1000
# Batches on the wire at once for one system.
PUSH_IN_FLIGHT = 2


@dataclass(slots=True)
class HubRow:
    """A contact's hub values as read for a push: no model instance, no per-row cost."""

    values: dict[str, Any]

    def hub_value(self, hub_field: str) -> Any:
        if hub_field.startswith(ATTRIBUTE_PREFIX):
            return (self.values.get("attributes") or {}).get(hub_field.removeprefix(ATTRIBUTE_PREFIX))
        return self.values[hub_field]


@dataclass(slots=True)
class PendingLink:
    """A link marked pending, with the columns a push reads and writes (as on RecordLink)."""

    pk: int
    contact_id: int
    external_id: str | None
    stable_id: str
    merge_base: dict[str, Any]
    email_consent_base: str
    rejected_payload_hash: str
    archived: bool
    contact: HubRow
    last_pushed_at: datetime | None = None
    updated_at: datetime | None = None


LINK_COLUMNS = ("pk", "contact_id", "external_id", "stable_id", "merge_base", "email_consent_base",
                "rejected_payload_hash", "archived")
WRITTEN_COLUMNS = ["external_id", "stable_id", "merge_base", "email_consent_base", "rejected_payload_hash",
                   "last_pushed_at", "updated_at"]


@dataclass
class Outgoing:
    link: PendingLink
    payload: Payload
    # When the contact's values in the payload were read: the link's agreement dates
    # from then (its updated_at), not from the reply, so that a contact changed between
    # the two is newer than the agreement and its next read is never taken for an echo
    # (engine.echo), which would leave the change unsent.
    read_at: datetime | None = None

    def record(self) -> OutgoingRecord:
        return self.payload.record(key=self.link.pk, external_id=self.link.external_id)


class Pusher:
    """Send one system's pending links in batches; results are applied by the caller's thread.

    While other systems are still being read, `send_early` sends each full batch of
    links that became pending, so the provider's time overlaps the reading; `finish`
    then sends everything still pending, the last partial batch included. Early
    batches are always full, so the number of calls stays that of one final pass.
    `before_send` runs before each batch leaves (the run's schema check: nothing is
    written to a field that vanished); what it raises stops the push.
    """

    def __init__(self, *, tracker: RunTracker, plan: SyncPlan, writer: EndpointPlan,
                 before_send: Callable[[], None] | None = None):
        self.tracker = tracker
        self.writer = writer
        self.before_send = before_send
        self.size = push_group_size(writer.provider.max_batch, writer.provider.push_group, plan.sync.batch_size)
        self.pool = ThreadPoolExecutor(max_workers=PUSH_IN_FLIGHT, thread_name_prefix="syncapp-push")
        self.in_flight: deque[tuple[list[Outgoing], Future, bool]] = deque()
        # Links up to this id were sent early (or found not to need sending).
        self.early_last_id = 0
        # About how many links wait after early_last_id (see send_early); None until counted.
        self.waiting: int | None = None

    def send_early(self, marked: int = 0) -> None:
        """Send full batches of newly pending links while there is room on the wire.

        `marked` is how many links the page just applied marked for this system. The
        links waiting are counted once (a range of the marks' index), then kept in
        memory: each page adds its marks, each batch sent takes its links off. The
        count only decides when to look: a look that finds less than a full batch
        (links settled without a call, or skipped) sets it to what it found, and
        `finish` sends whatever is left.
        """
        self._collect(block=False)
        if self.waiting is None:
            self.waiting = pending_marks(sync_id=self.writer.endpoint.sync_id,
                                         connection_id=self.writer.connection.pk, after=self.early_last_id).count()
        else:
            self.waiting += marked
        while len(self.in_flight) < PUSH_IN_FLIGHT and self.waiting >= self.size:
            batch = []
            for item in _pending(tracker=self.tracker, writer=self.writer, after=self.early_last_id):
                batch.append(item)
                if len(batch) == self.size:
                    break
            if len(batch) < self.size:
                self.waiting = len(batch)
                return
            self.early_last_id = batch[-1].link.pk
            self.waiting -= self.size
            self._send(batch, early=True)

    def finish(self) -> None:
        """Wait for the early batches, then send every link still pending."""
        self._collect(block=True)
        total = pending_marks(sync_id=self.writer.endpoint.sync_id, connection_id=self.writer.connection.pk).count()
        self.tracker.current = self.writer.connection
        self.tracker.phase(f"Writing {self.writer.name}", total=total)
        for batch in chunk(_pending(tracker=self.tracker, writer=self.writer), max_items=self.size):
            self._send(batch, early=False)
            if len(self.in_flight) >= PUSH_IN_FLIGHT:
                self._apply_next()
        self._collect(block=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _send(self, batch: list[Outgoing], *, early: bool) -> None:
        if self.before_send is not None:
            self.before_send()
        records = [item.record() for item in batch]
        self.in_flight.append((batch, self.pool.submit(upsert_isolating, self.writer.provider, records), early))

    def _collect(self, *, block: bool) -> None:
        while self.in_flight and (block or self.in_flight[0][1].done()):
            self._apply_next()

    def _apply_next(self) -> None:
        batch, future, early = self.in_flight.popleft()
        reading = self.tracker.current
        self.tracker.current = self.writer.connection
        results = future.result()
        # An early batch is not part of the reading's progress bar; its counts are kept.
        _apply(self.tracker, self.writer, batch, results, progress=not early)
        self.tracker.current = reading


def upsert_isolating(provider: Provider, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
    """Upsert `records`; when the provider refuses a whole batch, find the record it refuses.

    Some APIs reject a batch outright for one invalid record. Halving the batch until
    the refusal names a single record keeps the others flowing; it costs extra calls
    only when a batch is refused. Authentication and transient failures are raised.
    """
    try:
        return provider.upsert_batch(records)
    except AuthenticationError:
        raise
    except ProviderError as error:
        if error.retriable:
            raise
        if len(records) == 1:
            return [RecordResult(key=records[0].key, ok=False, error_class="rejected", message=str(error))]
        middle = len(records) // 2
        return upsert_isolating(provider, records[:middle]) + upsert_isolating(provider, records[middle:])


def _pending(*, tracker: RunTracker, writer: EndpointPlan, after: int = 0) -> Iterator[Outgoing]:
    """Yield the links this sync marked pending for the system that have something to send, keyset paged by id.

    Links whose payload the system already holds lose their mark without a call; links
    whose unchanged payload was rejected before are skipped; contacts lacking the keys
    the system keys its records by (an email for an email-keyed system) are not
    applicable there: they lose the mark without an error, and the next read that gives
    them the key marks them again (services.page_marks). Archived links (deleted elsewhere, by the
    sync's delete handling) are archived there instead. Fields held back by an open
    conflict are left out of payloads.
    """
    hub_columns = sorted({hub_column(name) for name in writer.hub_fields_written()})
    columns = [*LINK_COLUMNS, *(f"contact__{column}" for column in hub_columns)]
    last_id = after
    while True:
        read_at = timezone.now()
        rows = list(
            pending_links(sync_id=writer.endpoint.sync_id, connection_id=writer.connection.pk, after=last_id,
                          limit=SCAN_PAGE).values_list(*columns)
        )
        if not rows:
            return
        last_id = rows[-1][0]
        held = held_fields(sync_id=writer.endpoint.sync_id, contact_ids={row[1] for row in rows})
        suppressed = _suppressed_contacts({row[1] for row in rows})
        settled, archiving, not_applicable = [], [], []
        for row in rows:
            values = dict(zip(hub_columns, row[len(LINK_COLUMNS):], strict=True))
            link = PendingLink(*row[:len(LINK_COLUMNS)], contact=HubRow(values))
            if link.contact_id in suppressed:
                # Never sent anywhere, the mark dropped (see _suppressed_contacts).
                settled.append(link.pk)
                continue
            if link.archived:
                archiving.append(link)
                continue
            if writer.keys_missing(link.contact, exists_there=link.external_id is not None):
                settled.append(link.pk)
                not_applicable.append(link.contact_id)
                continue
            payload = writer.payload(link.contact, link, held=held.get(link.contact_id, ()))
            if not writer.differs(payload, link):
                settled.append(link.pk)
            elif link.rejected_payload_hash and link.rejected_payload_hash == payload.digest():
                continue
            else:
                yield Outgoing(link, payload, read_at)
        if settled:
            _settle(tracker, writer, settled, not_applicable)
        if archiving:
            _archive_remote(tracker, writer, archiving)


def _suppressed_contacts(contact_ids: set[int]) -> set[int]:
    """Return which of these contacts hold an email or a phone on the suppression list.

    Defence in depth: the pull never lets a person erased on request into the hub, and
    their erasure deletes their contacts; a contact made another way (typed in, merged)
    with their address must not reach any system either. Two queries per scan page.
    """
    rows = list(Contact.objects.filter(pk__in=contact_ids).values_list("pk", "email", "phone"))
    suppressed = suppressed_among({email for _, email, _ in rows if email}, {phone for _, _, phone in rows if phone})
    if not suppressed:
        return set()
    return {pk for pk, email, phone in rows if suppressed & {email, phone}}


def _archive_remote(tracker: RunTracker, writer: EndpointPlan, links: list[PendingLink]) -> None:
    """Archive in this system the records of contacts deleted in another (delete handling)."""
    done, errors, audits = [], [], []
    for link in links:
        try:
            writer.provider.archive(link.external_id)
        except AuthenticationError:
            raise
        except ProviderError as error:
            errors.append(ErrorItem("archive_failed", f"Not archived: {error}", contact_id=link.contact_id,
                                    retriable=error.retriable))
            continue
        done.append(link.pk)
        audits.append(audit_row_build(
            action="contact.archived", object_type="contact", object_id=str(link.contact_id), system=writer.name,
            contact_id=link.contact_id, run_id=tracker.run.pk,
            changes={"system": [None, writer.name], "by": [None, "delete handling"]},
        ))
    with transaction.atomic():
        pending_clear(link_ids=done, sync_id=writer.endpoint.sync_id)
        record_errors_save(run=tracker.run, connection=writer.connection, items=errors, by_contact=True)
        tracker.advance(done=len(links), failed_count=len(errors))
        # Last: the chain's head stays locked until the commit (docs/security.md).
        audit_record_many(audits)


def _settle(tracker: RunTracker, writer: EndpointPlan, settled: list[int], not_applicable: list[int]) -> None:
    with transaction.atomic():
        pending_clear(link_ids=settled, sync_id=writer.endpoint.sync_id)
        # Errors of an earlier version, which made a contact without an email an error
        # here: it is not applicable now, and waits without one.
        record_errors_resolve(connection=writer.connection, contact_ids=not_applicable, classes=["no_email"])
        tracker.advance(done=len(settled))


def _apply(
    tracker: RunTracker, writer: EndpointPlan, batch: list[Outgoing], results: list[RecordResult], *, progress: bool
) -> None:
    """Record one batch's results: bases, marks, errors and audit rows, in one transaction.

    Rows are locked in the order a page of a pull takes them: the contacts a reply
    changes, then the links, then the contacts and links the address rule reaches; the
    audit rows come last of all, as the chain's head stays locked until the commit and
    a reviewer's resolution locks a contact, then the head (docs/security.md).
    """
    by_key = {result.key: result for result in results}
    now = timezone.now()
    accepted_ids = {result.external_id for result in results if result.ok and result.external_id}
    with transaction.atomic():
        # Remote ids already linked to another contact: a second contact landing on the
        # same record there (two hub contacts, one person) must not take it over.
        taken = dict(
            RecordLink.objects.filter(connection=writer.connection, external_id__in=accepted_ids)
            .exclude(pk__in=[item.link.pk for item in batch])
            .values_list("external_id", "contact_id")
        )
        errors: list[ErrorItem] = []
        audits = []
        ledger: list[ConsentEvent] = []
        reports: list[ReportedState] = []
        pushed: list[int] = []
        accepted_links: list[int] = []
        for item in batch:
            error = _refusal(item, by_key.get(item.link.pk), taken)
            if error is not None:
                errors.append(error)
                continue
            consent_before, created = item.link.email_consent_base, item.link.external_id is None
            result = by_key[item.link.pk]
            changes = _accept(item, result, now, asked_state=writer.provider.explicit_opt_in_state)
            stated = reply_statement(reported=result.email_consent, created=created, agreed=consent_before or None,
                                     asked=_asked(item.payload, writer.provider.explicit_opt_in_state))
            if stated is not None:
                # The reply tells a state Syncapp did not ask for (the person unsubscribed
                # there since the read): the system's statement, taken as a read one.
                reports.append(ReportedState(item.link.contact_id, stated, consent_before))
            elif item.link.email_consent_base and item.link.email_consent_base != consent_before:
                # Syncapp's own write changed the person's state there (a state sent, or
                # the connection's default for a new record): the ledger says so.
                defaulted = item.payload.email_consent is None and not item.payload.explicit_opt_in
                ledger.append(ConsentEvent(
                    contact_id=item.link.contact_id, channel=ConsentEvent.Channel.EMAIL,
                    state=item.link.email_consent_base, previous_state=consent_before,
                    hub_state=item.link.contact.hub_value("email_consent"), system=writer.name,
                    connection_id=writer.connection.pk, evidence=ConsentEvent.Evidence.SYNC_WRITE, occurred_at=now,
                    explicit_opt_in=item.payload.explicit_opt_in, run_id=tracker.run.pk,
                    note="The status chosen on the sync for new members." if defaulted else "",
                ))
            if item.link.external_id:
                taken[item.link.external_id] = item.link.contact_id
            pushed.append(item.link.contact_id)
            accepted_links.append(item.link.pk)
            # Sent without the fields that cannot be written there: a warning each, not a failure.
            errors.extend(field_warnings(item.payload.left_out, sent=True, contact_id=item.link.contact_id))
            audits.append(
                audit_row_build(
                    action="contact.pushed",
                    object_type="contact",
                    object_id=str(item.link.contact_id),
                    object_repr=item.payload.email,
                    system=writer.name,
                    contact_id=item.link.contact_id,
                    run_id=tracker.run.pk,
                    changes=changes,
                )
            )
        for item in batch:
            item.link.updated_at = min(now, item.read_at or now)
        if reports:
            # Contacts before links, as a page takes them (consent_reports_apply updates them
            # after the batch's links, which must first lose their marks).
            _contacts_lock([report.contact_id for report in reports])
        bulk_update_rows(RecordLink, [item.link for item in batch], WRITTEN_COLUMNS)
        # Only this sync's marks: another sync sharing the system may still owe its own fields.
        pending_clear(link_ids=accepted_links, sync_id=writer.endpoint.sync_id)
        bulk_insert_rows(ledger)
        # The reply's rows and the address rule's, in the chain before the batch's own.
        replies: list[AuditRow] = []
        consent_reports_apply(reports=reports, system=writer.name, connection_id=writer.connection.pk,
                              run_id=tracker.run.pk, now=now, audits=replies)
        record_errors_settle(run=tracker.run, connection=writer.connection, items=errors, by_contact=True,
                             synced=pushed, except_classes=PULL_ERRORS)
        # Records, not errors: a contact sent without two fields is one warning count.
        tracker.advance(done=len(batch) if progress else 0, pushed_count=len(pushed),
                        failed_count=len(records_with(errors, severity=RecordError.Severity.ERROR, by_contact=True)),
                        warning_count=len(records_with(errors, severity=RecordError.Severity.WARNING,
                                                       by_contact=True)))
        audit_record_many(replies + audits)


def _contacts_lock(contact_ids: list[int]) -> None:
    """Lock these contacts' rows until the commit, in id order (SQLite has no row locks: its writer holds it all)."""
    list(Contact.objects.select_for_update().filter(pk__in=contact_ids).order_by("pk").values_list("pk", flat=True))


def _refusal(item: Outgoing, result: RecordResult | None, taken: dict[str, int]) -> ErrorItem | None:
    """Return the error that keeps this record's link pending, or None when it was accepted.

    A refusal that sending again cannot fix stores the payload's digest, so that the
    same payload is not sent again until the contact changes.
    """
    link = item.link
    if result is None:
        message = "The provider's reply did not mention this record; it is sent again next run."
        return ErrorItem("no_result", message, contact_id=link.contact_id, retriable=True)
    if not result.ok:
        if not result.retriable:
            link.rejected_payload_hash = item.payload.digest()
        return ErrorItem(result.error_class or "rejected", result.message or "Rejected.",
                         contact_id=link.contact_id, retriable=result.retriable)
    external_id = result.external_id or link.external_id
    if external_id in taken:
        link.rejected_payload_hash = item.payload.digest()
        message = (f"Not linked: the record {external_id} is already linked to contact {taken[external_id]} "
                   "(likely duplicate contacts).")
        return ErrorItem("already_linked", message, contact_id=link.contact_id)
    return None


def _accept(
    item: Outgoing, result: RecordResult, now: datetime, *, asked_state: str | None = None
) -> dict[str, list[Any]]:
    """Make what was sent the link's new base; return what changed there (the caller clears the mark).

    The base is the values sent, not the provider's echo of them: comparing the next
    payload with what was sent is what keeps an unchanged contact from being sent again.
    """
    link, payload = item.link, item.payload
    changes = {name: [link.merge_base.get(name), value] for name, value in payload.fields.items()
               if link.merge_base.get(name) != value}
    if payload.email_consent is not None and payload.email_consent != link.email_consent_base:
        changes["email_consent"] = [link.email_consent_base or None, payload.email_consent]
    link.external_id = result.external_id or link.external_id
    # Known from the write, so that an email changed there before the next read still
    # finds this link (Mailchimp's member id follows the address).
    link.stable_id = result.stable_id or link.stable_id
    link.merge_base = {**link.merge_base, **payload.fields}
    # What the system reports holding wins over what was asked (Mailchimp leaves a
    # cleaned member cleaned, whatever it is sent).
    link.email_consent_base = result.email_consent or _asked(payload, asked_state) or link.email_consent_base
    link.rejected_payload_hash = ""
    link.last_pushed_at = now
    return changes


def _asked(payload: Payload, asked_state: str | None) -> str | None:
    """Return the consent state a write of `payload` asks the system to hold (None: none)."""
    return state_asked(sent=payload.email_consent, explicit_opt_in=payload.explicit_opt_in, asked_state=asked_state)
