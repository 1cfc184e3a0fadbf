"""Applying one prepared pull page to the hub: match, merge, and gather what to write.

The decisions are the engine's: who each record is (engine.identity), what each field
becomes (engine.record_merge, engine.merge, engine.consent) and what to push
(engine.push_decision, through services.page_marks). This module loads their inputs
(services.page_load), applies their answers to the page's `PageChanges`, takes in the
page's deletes (services.page_deletes), and writes it all in bulk, audit rows last.
"""
from __future__ import annotations

from typing import Any

from audit.services import AuditRow, audit_row_build
from connections.providers.base import RemoteRecord
from syncapp.engine import consent as consent_rule
from syncapp.engine.consent import merge_consent, opt_in_moment_after
from syncapp.engine.identity import MatchKind, match_page
from syncapp.engine.merge import NO_BASE
from syncapp.engine.record_merge import FieldRead, merge_record
from syncapp.engine.text import clean_value
from syncapp.models import ConsentEvent, Contact, DuplicatePair, RecordLink
from syncapp.services.bulk import bulk_insert_rows, bulk_update_rows
from syncapp.services.conflict_book import ConflictBook, Side
from syncapp.services.consent_ledger import consent_by_address_apply, last_opt_out_at
from syncapp.services.duplicate_detection import duplicate_pairs_flag
from syncapp.services.incoming import Incoming
from syncapp.services.page_changes import NewLink, PageChanges
from syncapp.services.page_deletes import archived_take, restored_take
from syncapp.services.page_load import identity_index, page_rows_load
from syncapp.services.page_marks import pending_marks_find, pending_marks_write
from syncapp.services.plan import CONSENT_FIELDS, EMAIL_CONSENT, hub_column, plain, set_hub_value
from syncapp.services.record_errors import (
    PULL_ERRORS,
    ErrorItem,
    field_warnings,
    record_errors_settle,
)

ERROR_CLASS_FOR_MATCH = {
    MatchKind.DUPLICATE: "duplicate",
    MatchKind.AMBIGUOUS: "ambiguous",
    MatchKind.UNIDENTIFIED: "unidentified",
}


class PageApplier(PageChanges):
    """One page's matching and merging; what it gathers is written by `write`, in bulk."""

    def apply(self, incoming: list[Incoming], errors: list[ErrorItem], archived: list[RemoteRecord]) -> None:
        self.errors.extend(errors)
        rows = page_rows_load(connection=self.connection, incoming=incoming, archived=archived)
        contacts, links = rows.contacts, rows.links
        self.book = ConflictBook(sync_id=self.plan.sync.pk, run_id=self.tracker.run.pk, contact_ids=list(contacts))
        matches = match_page([item.keys for item in incoming], identity_index(rows))
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
        archived_take(self, archived, rows)
        restored_take(self)
        self._write(touched)

    def _merge(self, item: Incoming, contact: Contact, link: RecordLink | None) -> None:
        """Merge one record into its contact and its link's base (engine.record_merge), and gather the writes."""
        record = item.record
        is_new = contact.pk is None
        reads = [
            FieldRead(hub_field, plan.external_field, plain(raw), theirs, plan.rule,
                      consent=hub_field in CONSENT_FIELDS)
            for hub_field, (plan, raw, theirs) in item.values.items()
        ]
        plans = {hub_field: plan for hub_field, (plan, _, _) in item.values.items()}
        merged = merge_record(
            reads=reads,
            ours={read.hub_field: contact.hub_value(read.hub_field) for read in reads},
            base=link.merge_base if link is not None else {},
            base_in_hub_form=lambda read, raw: self.reader.hub_form(plans[read.hub_field], raw),
            held=self.book.open_fields(contact.pk),
            afresh=self.reader.afresh,
            consent_bases={EMAIL_CONSENT: link.email_consent_base} if link is not None else None,
            # The values left out are still what the system holds: kept in the base, so
            # that the hub's empty field is not sent back over them (EndpointPlan.payload).
            left_out={problem.field: plain(clean_value(record.fields[problem.field])) for problem in item.field_errors},
            written_only={name: plain(value) for name, value in item.written_only.items()},
            theirs_changed_at=record.modified_at,
            ours_changed_at=None if is_new else contact.updated_at,
        )
        takes = dict(merged.takes)
        for read in merged.joins:
            # Held back: this system's value joins the conflict instead of the hub.
            settled = self.book.observe(self.book.find(contact.pk, read.hub_field), self._side(read, record))
            if settled is not None and settled[0] != plain(contact.hub_value(read.hub_field)):
                takes[read.hub_field] = settled[0]
        consent_statement = None
        for statement in merged.consent:
            hub_field = statement.read.hub_field
            value = self._merge_consent(contact, hub_field, statement.base, statement.read.theirs, statement.ours,
                                        record)
            if value != statement.ours:
                takes[hub_field] = value
            if hub_field == EMAIL_CONSENT:
                consent_statement = statement.read.theirs
        for seen in merged.conflicts:
            self.book.open_conflict(contact=contact, hub_field=seen.read.hub_field, base_value=plain(seen.hub_base),
                                    hub_value=plain(seen.ours), side=self._side(seen.read, record))
        changes: dict[str, list[Any]] = {}
        for hub_field, value in takes.items():
            changes[hub_field] = [plain(contact.hub_value(hub_field)), plain(value)]
            set_hub_value(contact, hub_field, value)
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
        if merged.conflicts:
            self.conflicts += 1
        self._update_link(contact, link, record, merged.new_base, consent_statement)

    def _side(self, read: FieldRead, record: RemoteRecord) -> Side:
        """This system's side of a conflict on the field `read`."""
        return Side(self.connection.pk, self.connection.name, read.external_field, read.raw, plain(read.theirs),
                    record.modified_at)

    def _merge_consent(self, contact: Contact, hub_field: str, consent_base, theirs, ours, record: RemoteRecord) -> str:
        """Apply a system's consent statement by the ledger's rule (engine.consent), and record it there."""
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
            self.link_changed(link, columns)

    def _write(self, touched: list[Contact]) -> None:
        bulk_insert_rows(self.new_contacts, set_ids=True)
        bulk_update_rows(Contact, list(self.changed_contacts.values()), sorted(self.changed_columns | {"updated_at"}))
        pending_marks_find(self, touched)
        bulk_insert_rows(self.new_links, model=RecordLink, set_ids=True)
        bulk_update_rows(RecordLink, list(self.changed_links.values()), sorted(self.changed_link_columns))
        pending_marks_write(self)
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
        record_errors_settle(run=self.tracker.run, connection=self.connection, items=self.errors, by_contact=False,
                             synced=self.synced_ids, classes=PULL_ERRORS)
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
                value = endpoint.hub_form(field_plan, raw)
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

