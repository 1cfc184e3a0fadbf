"""Pulling one system's changed records into the hub, one page per transaction.

Per page, in one transaction: map and transform, match identity, merge field by field,
write the hub's changes, the links' merge bases, this sync's pending-push marks for the
systems it writes (services.pending), the consent ledger and record errors, move the
endpoint's cursor and the run's counts, and write the audit rows last (the chain's head
stays locked until the commit: docs/security.md). A crash re-reads at most that page,
and re-reading it is harmless: values equal to the merge base change nothing. The number
of queries per page is fixed, whatever the page size.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import AuditRow, audit_record_many, audit_row_build
from audit.suppression import EMAIL as SUPPRESSED_EMAIL
from audit.suppression import identifier_form, suppressed_among
from connections.providers.base import ChangePage, RemoteRecord
from mappings.transforms import TransformChain, TransformError
from syncapp.engine import consent as consent_rule
from syncapp.engine.batching import latest_per_key
from syncapp.engine.consent import merge_consent, opt_in_moment_after
from syncapp.engine.email_typos import suggest_fix, typo_message
from syncapp.engine.identity import (
    IdentityIndex,
    IncomingKeys,
    InvalidEmail,
    KnownContact,
    MatchKind,
    match_page,
    normalize_email,
)
from syncapp.engine.merge import NO_BASE, Outcome, is_empty, merge_field
from syncapp.engine.text import clean_value
from syncapp.models import ConsentEvent, Contact, DuplicatePair, PendingPush, RecordError, RecordLink
from syncapp.services.background import prefetched
from syncapp.services.bulk import bulk_insert_rows, bulk_update_rows
from syncapp.services.conflict_book import ConflictBook, Side
from syncapp.services.consent_ledger import consent_by_address_apply, last_opt_out_at
from syncapp.services.duplicate_detection import duplicate_pairs_flag
from syncapp.services.pending import pending_clear, pending_mark
from syncapp.services.plan import (
    CONSENT_FIELDS,
    EMAIL,
    EMAIL_CONSENT,
    PHONE,
    EndpointPlan,
    FieldPlan,
    SyncPlan,
    hub_column,
    hub_value_check,
    plain,
    set_hub_value,
)
from syncapp.services.record_errors import (
    PULL_ERRORS,
    ErrorItem,
    FieldProblem,
    field_warnings,
    record_errors_resolve,
    record_errors_save,
    records_with,
)
from syncapp.services.tracker import RunTracker

ERROR_CLASS_FOR_MATCH = {
    MatchKind.DUPLICATE: "duplicate",
    MatchKind.AMBIGUOUS: "ambiguous",
    MatchKind.UNIDENTIFIED: "unidentified",
}


@dataclass(slots=True, eq=False)
class NewLink:
    """A RecordLink to insert, as a plain row (see bulk_insert_rows): a page makes up to
    two per contact, and model instances cost more to build than to write."""

    contact: Contact
    connection_id: int
    external_id: str | None = None
    stable_id: str = ""
    merge_base: dict[str, Any] = field(default_factory=dict)
    remote_modified_at: Any = None
    email_consent_base: str = ""
    rejected_payload_hash: str = ""
    archived: bool = False
    last_pushed_at: Any = None
    created_at: Any = None
    updated_at: Any = None
    pk: None = None

    @property
    def contact_id(self) -> int | None:
        return self.contact.pk


@dataclass
class Incoming:
    """One record read, converted: raw (cleaned) and hub values of the fields it carries."""

    record: RemoteRecord
    keys: IncomingKeys
    # hub field -> (its field plan, cleaned external value, hub value)
    values: dict[str, tuple[FieldPlan, Any, Any]] = field(default_factory=dict)
    # Fields left out: the record is imported without them, with a warning each.
    field_errors: list[FieldProblem] = field(default_factory=list)
    # The address as read, when the sync's rule fixed a domain typo in it (audited).
    email_fixed_from: str | None = None


@dataclass
class PreparedPage:
    """A page read and converted, ready to apply: no database touched yet."""

    page: ChangePage
    read: int
    incoming: list[Incoming]
    errors: list[ErrorItem]
    # Records the system reports archived (deleted there): never new contacts.
    archived: list[RemoteRecord] = field(default_factory=list)
    # The addresses each refused record's error names, by external id (see _without_suppressed).
    refused_emails: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """A record refused before matching, and the addresses its error names."""

    error: ErrorItem
    emails: tuple[str, ...]


def pull_endpoint(
    *, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan, after_page: Callable[[], None] | None = None,
    full: bool = False,
) -> None:
    """Read every record changed since the endpoint's cursor into the hub; every record with `full`.

    The next page is read and converted in a background thread while the current one
    is written: the conversion needs no database, and the writes spend much of their
    time in SQLite, which lets other Python threads run. `after_page` runs after each
    committed page (the run sends full push batches from there). A full read (resync,
    backfill) starts from the provider's full-read cursor, which keeps what the cursor
    in use still owes.
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
    try:
        for ready in prepared:
            apply_page(tracker=tracker, plan=plan, reader=reader, prepared=ready)
            if after_page is not None:
                after_page()
    finally:
        prepared.close()


def prepare_page(*, reader: EndpointPlan, page: ChangePage) -> PreparedPage:
    """Clean, transform and normalize a page's records; refuse those without a usable email."""
    records = latest_per_key(page.records, key=lambda record: record.external_id)
    email_plan = _email_plan(reader)
    incoming: list[Incoming] = []
    errors: list[ErrorItem] = []
    archived: list[RemoteRecord] = []
    refused_emails: dict[str, tuple[str, ...]] = {}
    for record in records:
        if record.archived:
            archived.append(record)
            continue
        converted = _convert(record, reader, email_plan)
        if isinstance(converted, Refused):
            errors.append(converted.error)
            refused_emails[record.external_id] = converted.emails
        else:
            incoming.append(converted)
    return PreparedPage(page=page, read=len(records), incoming=incoming, errors=errors, archived=archived,
                        refused_emails=refused_emails)


def apply_page(*, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan, prepared: PreparedPage) -> None:
    """Write one prepared page to the hub and move the cursor past it, in one transaction."""
    with transaction.atomic():
        # People erased on request are skipped before matching (see _without_suppressed).
        incoming, errors, suppressed = _without_suppressed(prepared)
        applier = _PageApplier(tracker=tracker, plan=plan, reader=reader)
        applier.apply(incoming, errors, prepared.archived)
        reader.endpoint.cursor = prepared.page.cursor
        reader.endpoint.cursor_updated_at = timezone.now()
        reader.endpoint.save(update_fields=["cursor", "cursor_updated_at"])
        tracker.advance(
            done=prepared.read,
            total=prepared.page.total,
            read_count=prepared.read,
            created_count=applier.created,
            updated_count=applier.updated,
            unchanged_count=applier.unchanged,
            conflict_count=applier.conflicts,
            # Records, not errors: a record left without two fields is one warning count.
            failed_count=len(records_with(applier.errors, severity=RecordError.Severity.ERROR, by_contact=False)),
            warning_count=len(records_with(applier.errors, severity=RecordError.Severity.WARNING, by_contact=False)),
            suppressed_count=suppressed,
        )
        # Last: the chain's head is locked from here to the commit, so every contact,
        # link, ledger row, error, the cursor and the run's row are written before it.
        audit_record_many(applier.audit_rows)


def _without_suppressed(prepared: PreparedPage) -> tuple[list[Incoming], list[ErrorItem], int]:
    """Return the page's records and refusals of people not on the suppression list, and how many were left out.

    A person erased on request (audit.suppression) whom a system holds again is never
    matched, so never created or updated in the hub, never linked, and so never pushed
    anywhere: the record is only counted. An email or a phone on the list is enough,
    the address read or, where a typo was fixed, the one it was fixed from. A record
    refused before matching (an invalid address, a typo not fixed) is only counted too
    when an address its error names is on the list: a record error would keep it. One query.
    """
    incoming = prepared.incoming
    emails = {email for item in incoming for email in (item.keys.email, item.email_fixed_from) if email}
    emails |= {email for named in prepared.refused_emails.values() for email in named}
    phones = {item.keys.phone for item in incoming if item.keys.phone}
    suppressed = suppressed_among(emails, phones)
    if not suppressed:
        return incoming, prepared.errors, 0
    kept = [item for item in incoming
            if not suppressed & {item.keys.email, item.email_fixed_from, item.keys.phone}]
    refused = {external_id for external_id, named in prepared.refused_emails.items()
               if suppressed & {identifier_form(SUPPRESSED_EMAIL, email) for email in named}}
    errors = [error for error in prepared.errors if error.external_id not in refused]
    return kept, errors, len(incoming) - len(kept) + len(refused)


def _email_plan(reader: EndpointPlan) -> FieldPlan:
    """The email is always read from the provider's email field, normalized as identity."""
    return FieldPlan(EMAIL, reader.email_field, TransformChain([]), reader.email_rule())


def _convert(record: RemoteRecord, reader: EndpointPlan, email_plan: FieldPlan) -> Incoming | Refused:
    """Clean and transform a record's mapped fields; refuse it if its email is invalid."""
    fields = record.fields
    email = None
    item = Incoming(record=record, keys=IncomingKeys(record.external_id))
    if reader.email_field in fields:
        raw_email = clean_value(fields[reader.email_field])
        if not is_empty(raw_email):
            try:
                email = normalize_email(raw_email)
            except InvalidEmail as error:
                message = f"Invalid email {raw_email!r}: {error}."
                return Refused(ErrorItem("invalid_email", message, external_id=record.external_id), (str(raw_email),))
            fixed = suggest_fix(email)
            if fixed is not None and not reader.fix_email_typos:
                return Refused(ErrorItem("invalid_email", f"Not imported: {typo_message(email, fixed)}",
                                         external_id=record.external_id), (email, fixed))
            if fixed is not None:
                item.email_fixed_from, email = email, fixed
        item.values[EMAIL] = (email_plan, raw_email, email)
    for field_plan in reader.reads:
        if field_plan.hub_field == EMAIL or field_plan.external_field not in fields:
            continue
        raw = clean_value(fields[field_plan.external_field])
        try:
            value = reader.to_hub(field_plan, raw)
            value = hub_value_check(field_plan.hub_field, value, phone_region=reader.context.phone_region)
        except TransformError as error:
            item.field_errors.append(FieldProblem(field_plan.external_field, str(error)))
            continue
        item.values[field_plan.hub_field] = (field_plan, raw, value)
    phone = item.values.get(PHONE, (None, None, None))[2]
    item.keys = IncomingKeys(record.external_id, email, phone)
    return item


def _base_in_hub_form(field_plan: FieldPlan, raw: Any, reader: EndpointPlan) -> Any:
    """Return a merge-base value in hub form; NO_BASE when it cannot be read as one."""
    return reader.hub_form(field_plan, raw)


class _PageApplier:
    """Everything one page writes, gathered and then written in bulk."""

    def __init__(self, *, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan):
        self.tracker = tracker
        self.plan = plan
        self.reader = reader
        self.connection = reader.connection
        self.now = timezone.now()
        self.errors: list[ErrorItem] = []
        self.created = self.updated = self.unchanged = self.conflicts = 0
        self.new_contacts: list[Contact] = []
        self.changed_contacts: dict[int, Contact] = {}
        self.changed_columns: set[str] = set()
        self.new_links: list[NewLink] = []
        self.changed_links: dict[int, RecordLink] = {}
        self.changed_link_columns: set[str] = set()
        # (contact, action, changes) for audit rows, built once new contacts have ids.
        self.audits: list[tuple[Contact, str, dict[str, list[Any]]]] = []
        # External ids of the records imported, with or without warnings.
        self.synced_ids: list[str] = []
        # id(contact) -> its link to the system being read, new or existing.
        self.reader_links: dict[int, RecordLink] = {}
        # (contact, ConsentEvent fields) for the ledger, built once new contacts have ids.
        self.ledger: list[tuple[Contact, dict[str, Any]]] = []
        # New contacts made for a second record of this system with the same email, and
        # the external id of the record they duplicate: listed for review.
        self.duplicates: list[tuple[Contact, str]] = []
        self.book: ConflictBook | None = None
        # Contacts whose record here came back after being archived.
        self.restored: list[int] = []
        # The page's audit rows, built by _write; apply_page writes them last of all.
        self.audit_rows: list[AuditRow] = []
        # Links this sync is to push (saved or still to insert), and links that lose every
        # sync's mark (nothing is to be sent there): written after the links.
        self.marking: list[RecordLink | NewLink] = []
        self.unmarking: list[int] = []

    def apply(self, incoming: list[Incoming], errors: list[ErrorItem], archived: list[RemoteRecord]) -> None:
        self.errors.extend(errors)
        contacts, links, linked = self._load(incoming, archived)
        self.book = ConflictBook(sync_id=self.plan.sync.pk, run_id=self.tracker.run.pk, contact_ids=list(contacts))
        matches = match_page([item.keys for item in incoming], self._index(contacts, links, linked))
        touched: list[Contact] = []
        for item, decision in zip(incoming, matches, strict=True):
            if decision.kind is MatchKind.DUPLICATE and decision.duplicate_of:
                # Another record of this system has the same email: the same person
                # twice there. It gets its own contact and waits for a reviewer's merge.
                contact, link = Contact(), None
                self.duplicates.append((contact, decision.duplicate_of))
            elif not decision.usable:
                self.errors.append(
                    ErrorItem(ERROR_CLASS_FOR_MATCH[decision.kind], f"Not imported: {decision.reason}.",
                              external_id=item.record.external_id)
                )
                continue
            elif decision.kind is MatchKind.NEW:
                contact, link = Contact(), None
            else:
                contact = contacts[decision.contact_id]
                link = links.get(decision.contact_id)
            email_before = contact.email
            self._merge(item, contact, link)
            # Audited once per record: when the fix changes the hub's address, and when it
            # links the record to a contact that already had the right one.
            if item.email_fixed_from and (contact.email != email_before or link is None):
                changes = {"email": [item.email_fixed_from, contact.email],
                           "external_id": [None, item.record.external_id]}
                if contact.pk is not None and link is None:
                    changes["linked_to_existing_contact"] = [None, contact.pk]
                self.audits.append((contact, "contact.email_fixed", changes))
            touched.append(contact)
            # Imported without the fields it could not read: a warning each, not a failure.
            self.errors.extend(field_warnings(item.field_errors, sent=False, external_id=item.record.external_id))
            self.synced_ids.append(item.record.external_id)
        self._archive(archived, contacts, links, linked)
        self._restore()
        self._write(touched)

    def _load(
        self, incoming: list[Incoming], archived: list[RemoteRecord]
    ) -> tuple[dict[int, Contact], dict[int, RecordLink], dict[str, int]]:
        """Return the candidate contacts by id, their links to this system by contact id,
        and the contact already linked to each record read (by external or stable id)."""
        external_ids = [item.record.external_id for item in incoming] + [record.external_id for record in archived]
        stable_ids = {item.record.stable_id for item in incoming if item.record.stable_id}
        emails = {item.keys.email for item in incoming if item.keys.email}
        # A phone only matches where one side has no email (see engine.identity): asking
        # for no more keeps a switchboard number shared by thousands out of every page.
        phones_alone = {item.keys.phone for item in incoming if item.keys.phone and not item.keys.email}
        phones_with_email = {item.keys.phone for item in incoming if item.keys.phone and item.keys.email}
        by_id = Q(external_id__in=external_ids)
        if stable_ids:
            by_id |= Q(stable_id__in=stable_ids)
        linked_rows = list(
            RecordLink.objects.filter(by_id, connection=self.connection).values_list(
                "contact_id", "external_id", "stable_id"
            )
        )
        candidates = (
            Q(pk__in=[row[0] for row in linked_rows])
            | Q(email__in=emails)
            | Q(phone__in=phones_alone)
            | Q(phone__in=phones_with_email, email__isnull=True)
        )
        contacts = {contact.pk: contact for contact in Contact.objects.filter(candidates).order_by()}
        links = {
            link.contact_id: link
            for link in RecordLink.objects.filter(connection=self.connection, contact_id__in=list(contacts))
        }
        linked = {external_id: contact_id for contact_id, external_id, _ in linked_rows if external_id}
        by_stable = {stable_id: contact_id for contact_id, _, stable_id in linked_rows if stable_id}
        for item in incoming:
            # An email changed in a system whose record id follows the email (Mailchimp):
            # the stable id finds the record's link, and the link takes the new id.
            stable_id = item.record.stable_id
            if item.record.external_id not in linked and stable_id in by_stable:
                linked[item.record.external_id] = by_stable[stable_id]
        return contacts, links, linked

    def _index(self, contacts: dict[int, Contact], links: dict[int, RecordLink],
               linked: dict[str, int]) -> IdentityIndex:
        return IdentityIndex.build(
            links=linked,
            contacts=[
                KnownContact(contact.pk, contact.email, contact.phone,
                             links[contact.pk].external_id if contact.pk in links else None)
                for contact in contacts.values()
            ],
        )

    def _merge(self, item: Incoming, contact: Contact, link: RecordLink | None) -> None:
        """Merge one record into its contact and its link's base."""
        record = item.record
        is_new = contact.pk is None
        base = link.merge_base if link is not None else {}
        new_base = dict(base)
        changes: dict[str, list[Any]] = {}
        conflicts: dict[str, list[Any]] = {}
        consent_statement = None
        for hub_field, (field_plan, raw, theirs) in item.values.items():
            external_field = field_plan.external_field
            raw = plain(raw)
            ours = contact.hub_value(hub_field)
            unchanged_there = external_field in base and base[external_field] == raw
            base_value = NO_BASE
            if unchanged_there and hub_field in self.reader.afresh:
                # Backfilled: this system's mapping of the field changed since the value
                # was agreed (SyncPlan.compare_afresh). Read through the new mapping it
                # may say something else, as if only the system had changed it; an empty
                # value it has held all along changes nothing.
                if is_empty(theirs):
                    continue
                base_value = ours
            elif unchanged_there:
                continue
            elif external_field in base:
                base_value = _base_in_hub_form(field_plan, base[external_field], self.reader)
            side = Side(self.connection.pk, self.connection.name, external_field, raw, plain(theirs),
                        record.modified_at)
            open_conflict = self.book.find(contact.pk, hub_field)
            if open_conflict is not None:
                # Held back: this system's value joins the conflict instead of the hub.
                new_base[external_field] = raw
                settled = self.book.observe(open_conflict, side)
                if settled is None or settled[0] == plain(ours):
                    continue
                value = settled[0]
            elif hub_field in CONSENT_FIELDS:
                if hub_field == EMAIL_CONSENT and link is not None and link.email_consent_base:
                    # The state last agreed, Syncapp's own writes included (they travel
                    # apart from the fields, so the field's base may predate them).
                    base_value = link.email_consent_base
                value = self._merge_consent(contact, hub_field, base_value, theirs, ours, record)
                if hub_field == EMAIL_CONSENT:
                    consent_statement = theirs
            else:
                decision = merge_field(
                    base=base_value,
                    theirs=theirs,
                    ours=ours,
                    rule=field_plan.rule,
                    theirs_changed_at=record.modified_at,
                    ours_changed_at=None if is_new else contact.updated_at,
                )
                if decision.outcome is Outcome.CONFLICT:
                    hub_base = None if base_value is NO_BASE else plain(base_value)
                    self.book.open_conflict(contact=contact, hub_field=hub_field, base_value=hub_base,
                                            hub_value=plain(ours), side=side)
                    conflicts[hub_field] = [plain(ours), plain(theirs)]
                    # The base takes the value seen: the conflict holds it now, and the
                    # next read of the same value is not news.
                    new_base[external_field] = raw
                    continue
                value = decision.value
            if value != ours:
                set_hub_value(contact, hub_field, value)
                changes[hub_field] = [plain(ours), plain(value)]
            new_base[external_field] = raw
        for problem in item.field_errors:
            # The value left out is still what the system holds: kept in the base, so that
            # the hub's empty field is not sent back over it (EndpointPlan.payload).
            new_base[problem.field] = plain(clean_value(record.fields[problem.field]))
        if is_new:
            self.created += 1
            self.new_contacts.append(contact)
            created = {name: [None, new] for name, (_, new) in changes.items()}
            self.audits.append((contact, "contact.created", created))
        elif changes:
            self.updated += 1
            contact.updated_at = self.now
            self.changed_contacts[contact.pk] = contact
            self.changed_columns.update(hub_column(name) for name in changes)
            self.audits.append((contact, "contact.updated", changes))
        else:
            self.unchanged += 1
        if conflicts:
            self.conflicts += 1
        self._update_link(contact, link, record, new_base, consent_statement)

    def _merge_consent(self, contact: Contact, hub_field: str, base_value, theirs, ours, record: RemoteRecord) -> str:
        """Apply a system's consent statement by the ledger's rule, and record it there."""
        consent_base = None if base_value is NO_BASE else base_value
        opted_out_at = None
        if (hub_field == EMAIL_CONSENT and theirs == consent_rule.SUBSCRIBED and ours in consent_rule.LIFTABLE
                and record.opted_in_at is not None and contact.pk is not None):
            opted_out_at = last_opt_out_at(contact.pk)
        decision = merge_consent(base=consent_base, theirs=theirs, ours=ours,
                                 opted_in_at=record.opted_in_at if hub_field == EMAIL_CONSENT else None,
                                 opted_out_at=opted_out_at)
        if hub_field == EMAIL_CONSENT:
            opted_in_at = opt_in_moment_after(current=contact.email_opt_in_at, state=decision.state,
                                              explicit_opt_in=decision.explicit_opt_in, moment=record.opted_in_at)
            if decision.explicit_opt_in or opted_in_at != contact.email_opt_in_at:
                contact.email_opt_in_at = opted_in_at
                self.changed_columns.add("email_opt_in_at")
        if theirs is not None and theirs != consent_rule.UNKNOWN and theirs != consent_base:
            self.ledger.append((contact, {
                "channel": CONSENT_FIELDS[hub_field], "state": theirs, "previous_state": consent_base or "",
                "hub_state": decision.state, "system": self.connection.name, "connection_id": self.connection.pk,
                "evidence": ConsentEvent.Evidence.API_READ, "occurred_at": record.modified_at or self.now,
                "explicit_opt_in": decision.explicit_opt_in, "run_id": self.tracker.run.pk,
            }))
        return decision.state

    def _update_link(self, contact, link, record: RemoteRecord, new_base, consent_statement) -> None:
        if link is None:
            link = NewLink(
                contact=contact,
                connection_id=self.connection.pk,
                external_id=record.external_id,
                stable_id=record.stable_id,
                merge_base=new_base,
                remote_modified_at=record.modified_at,
                email_consent_base=consent_statement or "",
            )
            self.reader_links[id(contact)] = link
            self.new_links.append(link)
            return
        self.reader_links[id(contact)] = link
        columns = set()
        if link.external_id != record.external_id:
            link.external_id = record.external_id
            columns.add("external_id")
        if record.stable_id and link.stable_id != record.stable_id:
            link.stable_id = record.stable_id
            columns.add("stable_id")
        if link.merge_base != new_base:
            link.merge_base = new_base
            columns.add("merge_base")
        if record.modified_at is not None and link.remote_modified_at != record.modified_at:
            link.remote_modified_at = record.modified_at
            columns.add("remote_modified_at")
        if consent_statement and link.email_consent_base != consent_statement:
            link.email_consent_base = consent_statement
            columns.add("email_consent_base")
        if link.archived:
            # The record is back (restored there): it is synced again.
            link.archived = False
            columns.add("archived")
            self.restored.append(contact.pk)
            self.audits.append((contact, "contact.restored", {"system": [None, self.connection.name]}))
        if columns:
            self._link_changed(link, columns)

    def _link_changed(self, link: RecordLink, columns: set[str]) -> None:
        link.updated_at = self.now
        self.changed_links[link.pk] = link
        self.changed_link_columns.update(columns | {"updated_at"})

    def _archive(self, archived: list[RemoteRecord], contacts, links, linked: dict[str, int]) -> None:
        """Take in the records the system reports archived: never new contacts.

        A linked record's link is marked archived (nothing is sent there any more). By
        the sync's delete handling, the contact's records in the other systems are then
        left alone (ignore) or archived too (archive, mirror): their links are marked
        archived and pending for this sync, and its push archives them there. An archived
        link keeps no other mark: no other sync is to send or archive anything there.
        """
        handling = self.plan.sync.delete_handling
        spreading = handling != self.plan.sync.DeleteHandling.IGNORE
        gone: list[int] = []
        for record in archived:
            contact_id = linked.get(record.external_id)
            link = links.get(contact_id) if contact_id is not None else None
            if link is None or link.archived:
                continue
            link.archived = True
            self._link_changed(link, {"archived"})
            self.unmarking.append(link.pk)
            self.audits.append((contacts[contact_id], "contact.archived",
                                {"system": [None, self.connection.name], "delete_handling": [None, handling]}))
            gone.append(contact_id)
        if not (spreading and gone):
            return
        writers = [writer.connection.pk for writer in self.plan.writers if writer.connection.pk != self.connection.pk]
        for other in RecordLink.objects.filter(contact_id__in=gone, connection_id__in=writers, archived=False):
            other.archived = True
            self._link_changed(other, {"archived"})
            self.unmarking.append(other.pk)
            if other.external_id is not None:
                self.marking.append(other)

    def _restore(self) -> None:
        """Under "mirror" delete handling, bring back the records a delete had archived elsewhere.

        The records are created again (a provider cannot be trusted to un-archive in
        place); the consent they are created with is never looser than what each system
        held before (EndpointPlan.payload).
        """
        if not self.restored or self.plan.sync.delete_handling != self.plan.sync.DeleteHandling.MIRROR:
            return
        writers = [writer.connection.pk for writer in self.plan.writers if writer.connection.pk != self.connection.pk]
        for other in RecordLink.objects.filter(contact_id__in=self.restored, connection_id__in=writers, archived=True):
            other.archived = False
            other.external_id = None
            self._link_changed(other, {"archived", "external_id"})
            self.marking.append(other)

    def _write(self, touched: list[Contact]) -> None:
        bulk_insert_rows(self.new_contacts, set_ids=True)
        bulk_update_rows(Contact, list(self.changed_contacts.values()), sorted(self.changed_columns | {"updated_at"}))
        self._mark_pending(touched)
        bulk_insert_rows(self.new_links, model=RecordLink)
        bulk_update_rows(RecordLink, list(self.changed_links.values()), sorted(self.changed_link_columns))
        self._write_marks()
        run_id = self.tracker.run.pk
        # After the links: it marks those of every contact it restricts, the page's included.
        # Its audit rows join the page's, written after everything else (apply_page).
        by_address: list[AuditRow] = []
        consent_by_address_apply(contacts=touched, run_id=run_id, now=self.now, audits=by_address)
        events = [
            audit_row_build(
                action=action,
                object_type="contact",
                object_id=str(contact.pk),
                object_repr=str(contact),
                system=self.connection.name,
                contact_id=contact.pk,
                run_id=run_id,
                changes=changes,
            )
            for contact, action, changes in self.audits
        ]
        if self.book.openings or self.book.changed:
            self.book.write(
                links_by_contact=self._other_links([opening.contact.pk for opening in self.book.openings]),
                side_of=self._side_of, audits=events,
            )
        if self.ledger:
            bulk_insert_rows([ConsentEvent(contact_id=contact.pk, **fields) for contact, fields in self.ledger])
        self._flag_duplicates()
        record_errors_save(run=self.tracker.run, connection=self.connection, items=self.errors, by_contact=False)
        record_errors_resolve(connection=self.connection, external_ids=self.synced_ids, classes=PULL_ERRORS,
                              standing=self.errors)
        self.audit_rows = events + by_address

    def _other_links(self, contact_ids: list[int]) -> dict[int, list[RecordLink]]:
        found: dict[int, list[RecordLink]] = {}
        if contact_ids:
            for link in RecordLink.objects.filter(contact_id__in=contact_ids).exclude(connection=self.connection):
                found.setdefault(link.contact_id, []).append(link)
        return found

    def _side_of(self, link: RecordLink, hub_field: str) -> Side | None:
        """Return another system's side of a new conflict: the value it last agreed."""
        for endpoint in self.plan.readers:
            if endpoint.connection.pk != link.connection_id:
                continue
            for field_plan in endpoint.reads:
                if field_plan.hub_field != hub_field or field_plan.external_field not in link.merge_base:
                    continue
                raw = link.merge_base[field_plan.external_field]
                value = _base_in_hub_form(field_plan, raw, endpoint)
                if value is NO_BASE:
                    return None
                return Side(link.connection_id, endpoint.name, field_plan.external_field, raw, plain(value),
                            link.remote_modified_at)
        return None

    def _flag_duplicates(self) -> None:
        pairs = []
        if self.duplicates:
            by_external = {link.external_id: link.contact_id for link in self.reader_links.values() if link.external_id}
            missing = [external_id for _, external_id in self.duplicates if external_id not in by_external]
            if missing:
                by_external.update(RecordLink.objects.filter(connection=self.connection, external_id__in=missing)
                                   .values_list("external_id", "contact_id"))
            for contact, external_id in self.duplicates:
                if external_id in by_external:
                    pairs.append((contact.pk, by_external[external_id], DuplicatePair.Reason.SAME_EMAIL,
                                  f"Email {contact.email} on two {self.connection.name} records "
                                  f"({external_id} and {self.reader_links[id(contact)].external_id})"))
        # Shared phones are looked for once per run (runs.run_execute), not per page.
        duplicate_pairs_flag(pairs)

    def _mark_pending(self, touched: list[Contact]) -> None:
        """Mark for this sync the links of every system it writes that lacks a contact's current values.

        Every contact of the page is checked, changed or not: a system added to the sync
        later, or a push lost to a crash, is caught up by the next read of the contact.
        A contact without an email cannot be sent: providers key records by email; nor
        can one whose record here is archived, or one waiting for a duplicate review.
        Fields held back by an open conflict are left out of the comparison.
        """
        others = [writer.connection for writer in self.plan.writers if writer.connection.pk != self.connection.pk]
        existing = {}
        if others and touched:
            existing = {
                (link.connection_id, link.contact_id): link
                for link in RecordLink.objects.filter(connection__in=others, contact_id__in=[c.pk for c in touched])
            }
        waiting = {id(contact) for contact, _ in self.duplicates}
        # The later contact of a same-email pair is not pushed while the pair is open, nor
        # after "not the same person": systems keyed by email would land it on the
        # record of the first one. Only a merge ends the hold.
        waiting_ids = set(
            DuplicatePair.objects.filter(
                status__in=[DuplicatePair.Status.OPEN, DuplicatePair.Status.DISMISSED],
                reason=DuplicatePair.Reason.SAME_EMAIL,
                contact_b_id__in=[contact.pk for contact in touched if contact.pk is not None],
            ).values_list("contact_b_id", flat=True)
        ) if touched else set()
        # Marked by another sync or none: this sync's mappings decide what it owes.
        saved = [link.pk for link in existing.values()]
        saved += [self.reader_links[id(contact)].pk for contact in touched if self.reader_links[id(contact)].pk]
        marked = set(
            PendingPush.objects.filter(sync_id=self.plan.sync.pk, link_id__in=saved).values_list("link_id", flat=True)
        ) if saved else set()
        for contact in touched:
            if (not contact.email or id(contact) in waiting or contact.pk in waiting_ids
                    or self.reader_links[id(contact)].archived):
                continue
            held = self.book.held(contact.pk)
            for writer in self.plan.writers:
                if writer.connection.pk == self.connection.pk:
                    link = self.reader_links[id(contact)]
                else:
                    link = existing.get((writer.connection.pk, contact.pk))
                if link is None:
                    # Not in that system yet: everything the contact holds is news there.
                    link = NewLink(contact=contact, connection_id=writer.connection.pk)
                    self.new_links.append(link)
                    self.marking.append(link)
                elif link.archived or link.pk in marked:
                    continue
                elif writer.differs(writer.payload(contact, link, held=held), link):
                    self.marking.append(link)

    def _write_marks(self) -> None:
        """Write the page's marks once its links are written (new ones have no id before).

        Marks an archiving cleared go first: a link archived and marked again for this
        sync keeps only this sync's mark (its push archives the record there).
        """
        pending_clear(link_ids=self.unmarking)
        if not self.marking:
            return
        wanted = Q(pk__in=[link.pk for link in self.marking if link.pk is not None])
        inserted: dict[int, list[int]] = {}
        for link in self.marking:
            if link.pk is None:
                inserted.setdefault(link.connection_id, []).append(link.contact.pk)
        for connection_id, contact_ids in inserted.items():
            wanted |= Q(connection_id=connection_id, contact_id__in=contact_ids)
        pending_mark(links=RecordLink.objects.filter(wanted), syncs=[self.plan.sync.pk])
