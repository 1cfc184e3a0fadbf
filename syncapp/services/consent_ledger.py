"""The consent ledger: recording what systems and users state, and the hub's state after.

The engine records a system's statement when that system's state changed since it was
last agreed (a change there, not the echo of Syncapp's own write), whether it was read
or reported in reply to a write. Users record statements from the contact page: an
explicit opt-in given outside any system (a signed form, a phone call) is the one way a
person who opted out somewhere is subscribed again everywhere.

Consent belongs to the address (email) or number (SMS): `consent_by_address_apply` gives
every contact holding one the restrictions stated on the others, whatever identity
decided. Pages read, write replies and users' statements all end with it.

Each function writes its audit rows after every contact and link it locks or updates:
the audit chain's head stays locked until the commit, and a reviewer's resolution locks
a contact and its links before it audits (docs/security.md).
"""
from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import AuditRow, audit_event_build, audit_record_many, audit_row_build
from syncapp.engine import consent as rule
from syncapp.models import ConsentEvent, Contact, RecordLink
from syncapp.services.bulk import bulk_insert_rows, bulk_update_rows
from syncapp.services.pending import pending_mark

CHANNEL_FIELDS = {ConsentEvent.Channel.EMAIL: "email_consent", ConsentEvent.Channel.SMS: "sms_consent"}
RESTRICTIONS = (rule.UNSUBSCRIBED, rule.CLEANED, rule.TRANSACTIONAL, rule.PENDING)
# The system the ledger names for what Syncapp itself decides or a user records.
HUB_SYSTEM = "Syncapp"
# channel -> (the hub column holding its address, how the ledger names that address)
ADDRESS_COLUMNS = {ConsentEvent.Channel.EMAIL: ("email", "email address"),
                   ConsentEvent.Channel.SMS: ("phone", "phone number")}
# What the address rule reads of a contact, and writes.
HOLDER_COLUMNS = ("email", "phone", "email_consent", "sms_consent", "email_opt_in_at", "updated_at")


class InvalidConsentStatement(ValueError):
    """A statement the ledger cannot take (unknown channel or state)."""


def last_opt_out_at(contact_id: int, channel: str = ConsentEvent.Channel.EMAIL) -> datetime | None:
    """Return when the contact's current restriction on `channel` was stated, if recorded."""
    return (
        ConsentEvent.objects.filter(contact_id=contact_id, channel=channel, state__in=RESTRICTIONS)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )


def consent_statement_record(
    *, contact: Contact, channel: str, state: str, user, note: str = "", explicit_opt_in: bool = False
) -> ConsentEvent:
    """Record a user's consent statement and apply it to the hub.

    A restriction always applies (the most restrictive state wins). A subscription
    applies over a restriction only when `explicit_opt_in` says the person asked for it;
    it then reaches the systems that can carry an opt-in to an opted-out record
    (Provider.explicit_opt_in_state: Mailchimp asks the person to confirm); the others
    keep their opt-out, as their APIs cannot lift it. The contact's
    links are marked pending for every sync writing their systems, so the next run of
    each carries the new state out.
    """
    if channel not in CHANNEL_FIELDS:
        raise InvalidConsentStatement(f"{channel!r} is not a consent channel (email, sms).")
    if state not in rule.RESTRICTIVENESS or state == rule.UNKNOWN:
        raise InvalidConsentStatement(f"{state!r} is not a consent state one can record.")
    column = CHANNEL_FIELDS[channel]
    now = timezone.now()
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        previous = getattr(contact, column)
        explicit_opt_in = rule.explicit_opt_in_applies(requested_state=state, previous_state=previous,
                                                       explicit=explicit_opt_in)
        new_state = rule.SUBSCRIBED if explicit_opt_in else rule.most_restrictive(previous, state)
        setattr(contact, column, new_state)
        fields = [column, "updated_at"]
        if channel == ConsentEvent.Channel.EMAIL:
            contact.email_opt_in_at = rule.opt_in_moment_after(current=contact.email_opt_in_at, state=new_state,
                                                               explicit_opt_in=explicit_opt_in, moment=now)
            fields.append("email_opt_in_at")
        contact.save(update_fields=fields)
        event = ConsentEvent.objects.create(
            contact=contact, channel=channel, state=state, previous_state=previous, hub_state=new_state,
            system=HUB_SYSTEM, evidence=ConsentEvent.Evidence.USER, occurred_at=now, explicit_opt_in=explicit_opt_in,
            note=note[:300], actor=user,
        )
        if new_state != previous:
            pending_mark(links=RecordLink.objects.filter(contact=contact, archived=False))
        audits: list[AuditEvent | AuditRow] = [audit_event_build(
            action="consent.recorded", obj=contact, actor=user, contact_id=contact.pk,
            changes={column: [previous, new_state], "statement": [None, state],
                     "explicit_opt_in": [None, explicit_opt_in], "note": [None, note[:300]]})]
        consent_by_address_apply(contacts=[contact], now=now, audits=audits)
        audit_record_many(audits)
    return event


@dataclass(frozen=True)
class ReportedState:
    """A state a system reported holding for a contact's record, in reply to a write."""

    contact_id: int
    state: str
    # The state last agreed with that system before the write ("" when never).
    agreed: str


def consent_reports_apply(
    *, reports: Sequence[ReportedState], system: str, connection_id: int, run_id: int | None = None,
    now: datetime | None = None, audits: list[AuditEvent | AuditRow] | None = None,
) -> list[int]:
    """Take the states a system reported in reply to a write into the hub, as read ones are.

    Each report is merged by the ledger's rule (the most restrictive wins; a reply never
    carries the evidence of an explicit opt-in) and recorded in the ledger. A contact
    whose state changes gets an audit row, and its links to the other systems are
    marked pending for every sync writing them, so they take the new state; then the
    contacts holding the same address take it too. Call inside the transaction that
    stores the write's results. Return the ids of the contacts changed.

    The audit rows are written last, after the contacts and links; given `audits`, they
    (and the address rule's) are added to it instead, for a caller that writes more
    rows before it audits.
    """
    if not reports:
        return []
    now = now or timezone.now()
    contacts = Contact.objects.select_for_update().in_bulk([report.contact_id for report in reports])
    ledger, rows, changed = [], [], {}
    for report in reports:
        contact = contacts.get(report.contact_id)
        if contact is None:
            continue
        ours = contact.email_consent
        state = rule.merge_consent(base=report.agreed or None, theirs=report.state, ours=ours).state
        ledger.append(ConsentEvent(
            contact_id=contact.pk, channel=ConsentEvent.Channel.EMAIL, state=report.state,
            previous_state=report.agreed, hub_state=state, system=system, connection_id=connection_id,
            evidence=ConsentEvent.Evidence.API_READ, occurred_at=now, run_id=run_id,
            note="Reported in reply to Syncapp's write.",
        ))
        if state == ours:
            continue
        contact.email_consent = state
        contact.email_opt_in_at = rule.opt_in_moment_after(current=contact.email_opt_in_at, state=state,
                                                           explicit_opt_in=False, moment=None)
        contact.updated_at = now
        changed[contact.pk] = contact
        rows.append(audit_row_build(action="contact.updated", object_type="contact", object_id=str(contact.pk),
                                    object_repr=str(contact), system=system, contact_id=contact.pk, run_id=run_id,
                                    changes={"email_consent": [ours, state]}))
    bulk_insert_rows(ledger)
    if changed:
        bulk_update_rows(Contact, list(changed.values()), ["email_consent", "email_opt_in_at", "updated_at"])
        pending_mark(links=RecordLink.objects.filter(contact_id__in=list(changed), archived=False).exclude(
            connection_id=connection_id))
        consent_by_address_apply(contacts=list(changed.values()), run_id=run_id, now=now, audits=rows)
        if audits is None:
            audit_record_many(rows)
        else:
            audits.extend(rows)
    return list(changed)


def consent_by_address_apply(
    *, contacts: Iterable[Contact], run_id: int | None = None, now: datetime | None = None,
    audits: list[AuditEvent | AuditRow] | None = None,
) -> list[int]:
    """Give every contact holding an email address or phone number of `contacts` the address's consent.

    `contacts` are saved contacts whose address or consent may just have changed; their
    objects take the changes written. A restriction stated on any contact holding an
    address holds for all of them (engine.consent.address_consent), whatever identity
    decided: two contacts with one email, or one held back by a duplicate pair. Only
    contacts whose state differs from one of `contacts` are read, so a page of aligned
    contacts costs one query. Each contact that changes gets a ledger row naming the
    contact whose state it took, and its links are marked pending for every sync
    writing their systems (the push sends each what it can hold), so every system gets the
    address's state. Return the ids of the contacts changed.

    The audit rows are written last, after the contacts and links; given `audits`, they
    are added to it instead, for a caller that has more rows to lock before it audits.
    """
    given = {contact.pk: contact for contact in contacts if contact.pk is not None}
    holders = {**_address_holders(given.values()), **given}
    now = now or timezone.now()
    changed: dict[int, dict[str, list[str]]] = defaultdict(dict)
    ledger: dict[int, list[ConsentEvent]] = defaultdict(list)
    opted_out_at = _opted_out_at(holders.values())
    opt_ins = {pk: contact.email_opt_in_at for pk, contact in holders.items()}
    for channel, column in CHANNEL_FIELDS.items():
        address_column, address_name = ADDRESS_COLUMNS[channel]
        groups: dict[str, list[Contact]] = defaultdict(list)
        for contact in holders.values():
            address = getattr(contact, address_column)
            if address:
                groups[address].append(contact)
        for group in groups.values():
            if len(group) < 2:
                continue
            before = {contact.pk: _holder(contact, channel, opted_out_at) for contact in group}
            for contact in group:
                others_here = [before[other.pk] for other in group if other.pk != contact.pk]
                state = rule.address_consent(before[contact.pk], others_here)
                previous = before[contact.pk].state
                if state == previous:
                    continue
                source = next(other for other in group if before[other.pk].state == state)
                setattr(contact, column, state)
                if channel == ConsentEvent.Channel.EMAIL and state != rule.SUBSCRIBED:
                    contact.email_opt_in_at = None
                changed[contact.pk][column] = [previous, state]
                ledger[contact.pk].append(ConsentEvent(
                    contact_id=contact.pk, channel=channel, state=state, previous_state=previous, hub_state=state,
                    system=HUB_SYSTEM, evidence=ConsentEvent.Evidence.SYNC_WRITE, occurred_at=now, run_id=run_id,
                    note=f"Consent belongs to the {address_name}: contact #{source.pk} holds it too, {state}.",
                ))
    if not changed:
        return []
    written = []
    for pk, changes in changed.items():
        contact = holders[pk]
        values = {column: state for column, (_, state) in changes.items()}
        if "email_consent" in values:
            values["email_opt_in_at"] = contact.email_opt_in_at
        # Only over the states read: what another run wrote meanwhile is never undone
        # (it is aligned when that contact is next touched).
        read = {column: previous for column, (previous, _) in changes.items()}
        if Contact.objects.filter(pk=pk, **read).update(**values, updated_at=now):
            contact.updated_at = now
            written.append(pk)
        else:
            for column, previous in read.items():
                setattr(contact, column, previous)
            contact.email_opt_in_at = opt_ins[pk]
    bulk_insert_rows([event for pk in written for event in ledger[pk]])
    # Every link: the push sends each system what it can hold, and settles the others
    # (a contact without an email is not applicable to an email-keyed system).
    pending_mark(links=RecordLink.objects.filter(contact_id__in=list(written), archived=False))
    rows = [
        audit_row_build(action="contact.updated", object_type="contact", object_id=str(pk),
                        object_repr=str(holders[pk]), system=HUB_SYSTEM, contact_id=pk, run_id=run_id,
                        changes=changed[pk])
        for pk in written
    ]
    if audits is None:
        audit_record_many(rows)
    else:
        audits.extend(rows)
    return written


def _address_holders(contacts: Iterable[Contact]) -> dict[int, Contact]:
    """Return the other contacts holding an address of `contacts` in another consent state, by id.

    A contact in the same state as every one it shares an address with has nothing to
    give or take; only restrictions travel, so two states that are no restriction
    (unknown, subscribed) do not ask for each other either.
    """
    contacts = list(contacts)
    wanted: list[Q] = []
    for channel, column in CHANNEL_FIELDS.items():
        address_column, _ = ADDRESS_COLUMNS[channel]
        by_state: dict[str, set[str]] = defaultdict(set)
        for contact in contacts:
            address = getattr(contact, address_column)
            if address:
                by_state[getattr(contact, column)].add(address)
        for state, addresses in by_state.items():
            same_address = Q(**{f"{address_column}__in": sorted(addresses)})
            if state in RESTRICTIONS:
                wanted.append(same_address & ~Q(**{column: state}))
            else:
                wanted.append(same_address & Q(**{f"{column}__in": RESTRICTIONS}))
    if not wanted:
        return {}
    given = [contact.pk for contact in contacts]
    return {contact.pk: contact for contact in Contact.objects.filter(reduce(operator.or_, wanted))
            .exclude(pk__in=given).only(*HOLDER_COLUMNS)}


def _opted_out_at(contacts: Iterable[Contact]) -> dict[int, datetime]:
    """Return when each restricted contact's email restriction was stated, where an explicit
    opt-in on another contact may be newer (the only time it matters): one query, or none."""
    contacts = list(contacts)
    if not any(c.email_consent == rule.SUBSCRIBED and c.email_opt_in_at for c in contacts):
        return {}
    restricted = [c.pk for c in contacts if c.email_consent in RESTRICTIONS]
    if not restricted:
        return {}
    return dict(
        ConsentEvent.objects.filter(contact_id__in=restricted, channel=ConsentEvent.Channel.EMAIL,
                                    state__in=RESTRICTIONS)
        .values("contact_id").annotate(last=Max("occurred_at")).values_list("contact_id", "last")
    )


def _holder(contact: Contact, channel: str, opted_out_at: dict[int, datetime]) -> rule.Holder:
    state = getattr(contact, CHANNEL_FIELDS[channel])
    if channel != ConsentEvent.Channel.EMAIL:
        return rule.Holder(state)
    return rule.Holder(state, opted_in_at=contact.email_opt_in_at if state == rule.SUBSCRIBED else None,
                       opted_out_at=opted_out_at.get(contact.pk))
