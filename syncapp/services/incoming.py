"""A page read from a system, cleaned and converted before anything is written.

Runs in the read-ahead thread (services.background): no database is touched here except
the suppression list, read by the page's transaction (`without_suppressed`). Each record
is cleaned, its identity keys normalized (the email always; the phone where the system
keys records by phone, or where a mapping reads it), its mapped fields transformed into
hub form; a record whose identity key cannot be used is refused with a record error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.suppression import EMAIL as SUPPRESSED_EMAIL
from audit.suppression import identifier_form, suppressed_among
from connections.providers.base import ChangePage, RemoteRecord
from mappings.transforms import TransformChain, TransformError
from syncapp.engine.batching import latest_per_key
from syncapp.engine.email_typos import suggest_fix, typo_message
from syncapp.engine.identity import IncomingKeys, InvalidEmail, normalize_email
from syncapp.engine.merge import is_empty
from syncapp.engine.text import clean_value
from syncapp.services.plan import EMAIL, PHONE, EndpointPlan, FieldPlan, hub_value_check
from syncapp.services.record_errors import ErrorItem, FieldProblem


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
    # External field -> cleaned value, of the fields the sync only writes here: what the
    # system holds, for the link's base (EndpointPlan.written_only).
    written_only: dict[str, Any] = field(default_factory=dict)


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


def without_suppressed(prepared: PreparedPage) -> tuple[list[Incoming], list[ErrorItem], int]:
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
    return FieldPlan(EMAIL, reader.email_field, TransformChain([]), reader.key_rule(EMAIL))


def _convert(record: RemoteRecord, reader: EndpointPlan, email_plan: FieldPlan) -> Incoming | Refused:
    """Clean and transform a record's mapped fields; refuse it if an identity key is invalid."""
    fields = record.fields
    email = None
    item = Incoming(record=record, keys=IncomingKeys(record.external_id))
    if reader.email_field and reader.email_field in fields:
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
    for name in reader.written_only:
        # Only single values: a list (tags, which a sync adds and never removes) is not
        # one value the payload could be compared with.
        if name in fields and not isinstance(fields[name], (list, tuple, dict)):
            item.written_only[name] = clean_value(fields[name])
    refused = _phone_key(item, reader)
    if refused is not None:
        return refused
    phone = item.values.get(PHONE, (None, None, None))[2]
    item.keys = IncomingKeys(record.external_id, email, phone)
    return item


def _phone_key(item: Incoming, reader: EndpointPlan) -> Refused | None:
    """Read the phone of a system that keys its records by phone, mapped or not.

    There the phone is the record's identity, as the email is elsewhere: a number that
    cannot be written in E.164 refuses the record (a record error), where a mapped phone
    elsewhere is only left out with a warning. None when the record is kept.
    """
    phone_field = reader.phone_key_field
    fields = item.record.fields
    if not phone_field or phone_field not in fields:
        return None
    raw = clean_value(fields[phone_field])
    if is_empty(raw):
        return None
    plan = next((plan for plan in reader.reads if plan.hub_field == PHONE and plan.external_field == phone_field),
                FieldPlan(PHONE, phone_field, TransformChain([]), reader.key_rule(PHONE)))
    try:
        value = hub_value_check(PHONE, reader.to_hub(plan, raw), phone_region=reader.context.phone_region)
    except TransformError as error:
        message = f"Not imported: the phone number, {reader.name}'s key for its records, is invalid: {error}."
        return Refused(ErrorItem("invalid_phone", message, external_id=item.record.external_id), ())
    item.values[PHONE] = (plan, raw, value)
    item.field_errors = [problem for problem in item.field_errors if problem.field != phone_field]
    return None
