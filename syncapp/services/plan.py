"""A sync's plan for one run: each endpoint with its provider and compiled mappings.

Built once per run so that transforms are parsed once, not per record. Also holds the
two conversions both directions share: an incoming value into a valid hub value, and a
contact into the payload one system should hold.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from connections.models import Connection
from connections.providers.base import OutgoingRecord, Provider
from mappings.models import FieldCatalog, FieldMapping
from mappings.transforms import (
    InvalidTransformSpec,
    TransformChain,
    TransformContext,
    TransformError,
    shared_field_error,
)
from syncapp.engine.backfill import IN, OUT, afresh_for
from syncapp.engine.consent import RESTRICTIVENESS, email_consent_to_send, new_record_consent, outgoing_consent
from syncapp.engine.email_typos import suggest_fix, typo_message
from syncapp.engine.identity import InvalidEmail, InvalidPhone, normalize_email, normalize_phone
from syncapp.engine.merge import NO_BASE, FieldRule, Policy, is_empty
from syncapp.engine.push_decision import keys_missing, keys_needed, payload_differs
from syncapp.models import Contact, Sync, SyncConnection
from syncapp.models.hub import HUB_FIELDS
from syncapp.services.record_errors import FieldProblem

EMAIL = "email"
PHONE = "phone"
EMAIL_CONSENT = "email_consent"
SMS_CONSENT = "sms_consent"
# Hub consent fields and their ledger channels: merged by the consent rule, not the
# three-way merge (engine.consent).
CONSENT_FIELDS = {EMAIL_CONSENT: "email", SMS_CONSENT: "sms"}
# Not a mapped field: when the explicit opt-in behind an email subscription was given.
EMAIL_OPT_IN_AT = "email_opt_in_at"
ATTRIBUTE_PREFIX = "attributes."
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class HubValues(Protocol):
    """A contact's hub values: a Contact, or a row read for a push."""

    def hub_value(self, hub_field: str) -> Any: ...


class LinkState(Protocol):
    """What a payload is compared with: a RecordLink, or a row read for a push."""

    external_id: str | None
    merge_base: dict[str, Any]
    email_consent_base: str


class PlanError(ValueError):
    """The sync cannot run as configured (a bad mapping, a missing endpoint)."""


@dataclass(frozen=True)
class FieldPlan:
    hub_field: str
    external_field: str
    chain: TransformChain
    rule: FieldRule
    # The longest value each side's field holds, where known: `truncate` cuts to it.
    hub_max_length: int | None = None
    external_max_length: int | None = None


@dataclass(frozen=True)
class Payload:
    """What one system should hold for one contact, and the field errors met building it."""

    email: str
    fields: dict[str, Any]
    email_consent: str | None
    # Fields left out because their value cannot be written there: sent without them.
    left_out: list[FieldProblem] = field(default_factory=list)
    # The consent sent lifts an opt-out there: the person explicitly opted in again.
    explicit_opt_in: bool = False
    # The state the record gets if it is created there (None: it is not created).
    email_consent_if_new: str | None = None
    # The contact's phone in E.164: the key of a system that keys its records by phone.
    phone: str = ""

    @property
    def errors(self) -> list[str]:
        """The fields left out, as "field: reason" for display."""
        return [f"{problem.field}: {problem.reason}" for problem in self.left_out]

    def digest(self) -> str:
        # With the status for new records: a record refused creation for want of one is
        # sent again once a marketer chooses it.
        keys = [self.email, self.phone] if self.phone else [self.email]
        text = json.dumps([*keys, self.fields, self.email_consent, self.email_consent_if_new], sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def record(self, *, key: Any, external_id: str | None) -> OutgoingRecord:
        return OutgoingRecord(
            key=key, email=self.email, phone=self.phone, fields=self.fields, external_id=external_id,
            email_consent=self.email_consent,
            explicit_opt_in=self.explicit_opt_in, email_consent_if_new=self.email_consent_if_new,
        )


@dataclass
class EndpointPlan:
    endpoint: SyncConnection
    connection: Connection
    provider: Provider
    context: TransformContext
    reads: list[FieldPlan]
    writes: list[FieldPlan]
    # The sync's opt-in rule: an incoming email with a known domain typo is fixed.
    fix_email_typos: bool = False
    # Hub fields whose reading here changed, and the external fields whose writing did,
    # which a backfill reads and compares afresh (SyncPlan.compare_afresh).
    afresh: frozenset[str] = frozenset()
    exact_fields: frozenset[str] = frozenset()
    # External field -> its plans (two for a full name), built on first use by `differs`.
    _plans_by_field: dict[str, list[FieldPlan]] | None = field(default=None, repr=False)
    _written_only: frozenset[str] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.connection.name

    @property
    def email_field(self) -> str:
        return self.provider.keys.email_field

    @property
    def phone_key_field(self) -> str:
        """The external field holding the phone where the system keys its records by it; else ""."""
        return self.provider.keys.phone_field

    @property
    def written_only(self) -> frozenset[str]:
        """The external fields the sync writes here but never reads (mapped hub → system only).

        Reading a record still records what they hold in the link's base: a push then
        compares the hub's value with what the system holds now and sends only what
        differs, instead of rewriting every such value once per contact.
        """
        if self._written_only is None:
            read = {plan.external_field for plan in self.reads} | {self.email_field, self.phone_key_field}
            self._written_only = frozenset(plan.external_field for plan in self.writes) - read
        return self._written_only

    def key_rule(self, hub_key: str) -> FieldRule:
        """An identity key's merge rule: its mapping's, else the reading system owns it."""
        for plan in self.reads:
            if plan.hub_field == hub_key:
                return plan.rule
        return FieldRule(Policy.OWNER_WINS, incoming_owns=True)

    def context_in(self, plan: FieldPlan) -> TransformContext:
        """Return the context of `plan`'s inbound chain: the hub field is the destination."""
        if not plan.chain.uses_max_length:
            return self.context
        return replace(self.context, max_length=plan.hub_max_length)

    def context_out(self, plan: FieldPlan, contact: HubValues) -> TransformContext:
        """Return the context of `plan`'s outbound chain for `contact`: the system's field
        is the destination, and a joining transform reads the hub fields it names."""
        if not (plan.chain.uses_max_length or plan.chain.joins):
            return self.context
        hub_values = {name: contact.hub_value(name) for name in plan.chain.hub_fields_read}
        return replace(self.context, max_length=plan.external_max_length, hub_values=hub_values)

    def to_hub(self, plan: FieldPlan, raw: Any) -> Any:
        """Return a system's value of `plan`'s field through the inbound chain (not yet checked)."""
        return plan.chain.to_hub(raw, self.context_in(plan))

    def payload(self, contact: HubValues, link: LinkState, *, held: Collection[str] = ()) -> Payload:
        """Return what this system should hold for `contact`.

        An empty hub value goes out as "" (clearing the field there) unless the mapping
        never overwrites with empty; a transform saying "no statement" (None) leaves the
        field out. Email consent travels apart from the fields, decided by the consent
        rule; SMS consent is a field, never sent looser than what the system holds.
        Fields in `held` (open conflicts) are left out: no system is written while a
        reviewer decides.
        """
        fields: dict[str, Any] = {}
        left_out: list[FieldProblem] = []
        joined: set[str] = set()
        for plan in self.writes:
            if plan.hub_field == EMAIL_CONSENT or plan.hub_field in held:
                continue
            if plan.chain.joins:
                # A full name: the mappings of both parts build the same joined value, sent
                # once; a part held by an open conflict holds the whole value back.
                if plan.external_field in joined or any(name in held for name in plan.chain.hub_fields_read):
                    continue
                joined.add(plan.external_field)
            value = contact.hub_value(plan.hub_field)
            if plan.hub_field == SMS_CONSENT:
                value = self._sms_consent_out(plan, value, link)
            fills_empty = plan.chain.fills_empty_out
            if (value is None or value == "") and not fills_empty:
                if not plan.rule.never_overwrite_with_empty and not self._holds_unreadable(plan, link):
                    fields[plan.external_field] = ""
                continue
            if plan.chain:
                try:
                    value = plan.chain.to_external(value, self.context_out(plan, contact))
                except TransformError as error:
                    left_out.append(FieldProblem(plan.external_field, str(error)))
                    continue
                if value is None:
                    continue
                if value == "" and plan.rule.never_overwrite_with_empty:
                    continue
            fields[plan.external_field] = value
        consent, explicit = None, False
        # Decided whether or not the consent is held for review: a record created while
        # a reviewer decides gets the hub's state (or the chosen one), never a default.
        if_new = new_record_consent(
            hub_state=contact.hub_value(EMAIL_CONSENT), remote_state=link.email_consent_base or None,
            chosen=self.endpoint.new_member_status, offered=self.provider.new_record_consent_states,
        )
        # Email consent belongs to an address: a contact without one states none anywhere.
        if EMAIL_CONSENT not in held and contact.hub_value(EMAIL):
            consent, explicit = email_consent_to_send(
                hub_state=contact.hub_value(EMAIL_CONSENT), remote_state=link.email_consent_base or None,
                opted_in=contact.hub_value(EMAIL_OPT_IN_AT) is not None,
                asked_state=self.provider.explicit_opt_in_state,
                writable=self.provider.writable_consent_states if link.external_id else None,
                record_exists=link.external_id is not None,
            )
        # The phone travels as a key only to a system keyed by phone: elsewhere it is a
        # mapped field like any other, and leaving it out keeps the payload's digest.
        phone = (contact.hub_value(PHONE) or "") if self.phone_key_field else ""
        return Payload(email=contact.hub_value(EMAIL) or "", fields=fields, email_consent=consent, left_out=left_out,
                       explicit_opt_in=explicit, email_consent_if_new=if_new, phone=phone)

    def _holds_unreadable(self, plan: FieldPlan, link: LinkState) -> bool:
        """Return whether this system holds a value of the field that the hub could not read.

        The hub's field is empty only because of that (a phone with an extension, left
        out with a warning): sending the empty value would erase it there, not carry a change.
        """
        held = link.merge_base.get(plan.external_field)
        return not is_empty(held) and self.hub_form(plan, held) is NO_BASE

    def _sms_consent_out(self, plan: FieldPlan, value: Any, link: LinkState) -> Any:
        """Return the SMS consent to write, or None where it would loosen the system's."""
        raw = link.merge_base.get(plan.external_field)
        remote = None
        if raw is not None:
            try:
                remote = plan.chain.to_hub(raw, self.context)
            except TransformError:
                remote = None
        if remote not in RESTRICTIVENESS:
            remote = None
        return outgoing_consent(value or "unknown", remote)

    def hub_fields_written(self) -> set[str]:
        """Return the hub fields a payload for this system reads."""
        joined = {name for plan in self.writes for name in plan.chain.hub_fields_read}
        return {plan.hub_field for plan in self.writes} | joined | {EMAIL, PHONE, EMAIL_CONSENT, EMAIL_OPT_IN_AT}

    def differs(self, payload: Payload, link: LinkState) -> bool:
        """Return whether `payload` says anything this system does not hold already (engine.push_decision)."""
        return payload_differs(
            payload.fields, link.merge_base, exists_there=link.external_id is not None,
            email_consent=payload.email_consent, email_consent_held=link.email_consent_base,
            exact=self.exact_fields, same_in_hub_form=self._same_in_hub_form,
        )

    def keys_missing(self, contact: HubValues, *, exists_there: bool) -> tuple[str, ...]:
        """Return the identity keys `contact` lacks to be written here (none: it can be sent)."""
        keys = self.provider.keys
        needed = keys_needed(exists_there=exists_there, to_create=keys.to_create, to_update=keys.to_update)
        return keys_missing(needed, email=contact.hub_value(EMAIL), phone=contact.hub_value(PHONE))

    def _same_in_hub_form(self, external_field: str, held: Any, value: Any) -> bool:
        if self._plans_by_field is None:
            self._plans_by_field = {}
            for plan in (*self.writes, *self.reads):
                plans = self._plans_by_field.setdefault(plan.external_field, [])
                if plan not in plans:
                    plans.append(plan)
        plans = self._plans_by_field.get(external_field)
        if not plans:
            return False
        # A full name is the same only if both of its parts are.
        for plan in plans:
            held_hub = self.hub_form(plan, held)
            if held_hub is NO_BASE or held_hub != self.hub_form(plan, value):
                return False
        return True

    def hub_form(self, plan: FieldPlan, raw: Any) -> Any:
        """Return a system's value of a field in hub form; NO_BASE when it cannot be read as one."""
        try:
            if plan.hub_field == EMAIL:
                return None if is_empty(raw) else normalize_email(raw)
            value = self.to_hub(plan, raw)
            return hub_value_check(plan.hub_field, value, phone_region=self.context.phone_region)
        except (TransformError, InvalidEmail):
            return NO_BASE


@dataclass
class SyncPlan:
    sync: Sync
    endpoints: list[EndpointPlan]

    def compare_afresh(self, keys: Collection[str]) -> None:
        """Merge and compare as a backfill must the fields whose mapping on a system changed.

        `keys` are backfill keys (engine.backfill). Only the system whose mapping changed
        is concerned (`afresh_for`). Reading, a value it still holds unchanged is not
        skipped as "not news", and is merged against the hub's value as if only the
        system had changed it: read through the new mapping it may say something else
        now. Writing, its fields that carry one are compared exactly: a changed outbound
        format ("12/31/1990" to "1990-12-31") is the point of the change, not a
        restyling the sync should spare the system. Consent fields keep their bases
        whatever their mapping: the consent rule needs the state last agreed to keep an
        opt-out an opt-out.
        """
        for endpoint in self.endpoints:
            endpoint.afresh = afresh_for(keys, endpoint.connection.pk, IN) - set(CONSENT_FIELDS)
            written = afresh_for(keys, endpoint.connection.pk, OUT) - set(CONSENT_FIELDS)
            endpoint.exact_fields = frozenset(
                plan.external_field for plan in endpoint.writes
                if plan.hub_field in written or written & set(plan.chain.hub_fields_read)
            )

    @property
    def readers(self) -> list[EndpointPlan]:
        return [plan for plan in self.endpoints if plan.endpoint.read]

    @property
    def writers(self) -> list[EndpointPlan]:
        return [plan for plan in self.endpoints if plan.endpoint.write]

    def close(self) -> None:
        for plan in self.endpoints:
            close = getattr(plan.provider.http, "close", None)
            if close is not None:
                close()


def sync_plan_build(*, sync: Sync, provider_for: Callable[..., Provider]) -> SyncPlan:
    """Load the sync's endpoints and mappings, compile transforms, build providers.

    `provider_for(connection, fields=[...])` builds a connection's client, asked to
    read the external fields the mappings read.
    """
    endpoints = list(sync.endpoints.select_related("connection"))
    if not endpoints:
        raise PlanError(f"The sync {sync.name!r} has no connections.")
    mappings: dict[int, list[FieldMapping]] = {}
    for mapping in sync.mappings.all():
        mappings.setdefault(mapping.connection_id, []).append(mapping)
    # Mappings first: a bad one fails the run before any client is built.
    for connection_mappings in mappings.values():
        _check_shared_fields(connection_mappings)
    limits = _external_max_lengths([endpoint.connection_id for endpoint in endpoints])
    compiled = {
        endpoint.pk: [
            (mapping, _field_plan(mapping, limits.get((mapping.connection_id, mapping.external_field))))
            for mapping in mappings.get(endpoint.connection_id, [])
        ]
        for endpoint in endpoints
    }
    plans: list[EndpointPlan] = []
    try:
        for endpoint in endpoints:
            connection, pairs = endpoint.connection, compiled[endpoint.pk]
            read_fields = list(dict.fromkeys(mapping.external_field for mapping, _ in pairs if mapping.reads))
            provider = provider_for(connection, fields=read_fields)
            plans.append(
                EndpointPlan(
                    endpoint=endpoint,
                    connection=connection,
                    provider=provider,
                    context=TransformContext(phone_region=connection.default_phone_region),
                    reads=[plan for mapping, plan in pairs if mapping.reads],
                    writes=[plan for mapping, plan in pairs if mapping.writes],
                    fix_email_typos=sync.fix_email_typos,
                )
            )
    except BaseException:
        SyncPlan(sync=sync, endpoints=plans).close()
        raise
    return SyncPlan(sync=sync, endpoints=plans)


def _check_shared_fields(mappings: list[FieldMapping]) -> None:
    """Refuse two mappings of one connection on one external field, a full name's excepted."""
    by_field: dict[str, list[FieldMapping]] = {}
    for mapping in mappings:
        by_field.setdefault(mapping.external_field, []).append(mapping)
    for external_field, sharing in by_field.items():
        if len(sharing) < 2:
            continue
        first, *others = sharing
        error = shared_field_error(first.transforms, others[0].transforms, external_field=external_field)
        if len(others) > 1:
            error = f"{external_field} is the target of {len(sharing)} mappings: a full name may have two, no more"
        if error:
            raise PlanError(f"Mapping {others[0]}: {error}.")


def _external_max_lengths(connection_ids: list[int]) -> dict[tuple[int, str], int]:
    """Return (connection id, field name) -> the field's max length, from the discovered fields."""
    limits = {}
    rows = FieldCatalog.objects.filter(connection_id__in=connection_ids).values_list("connection_id", "fields")
    for connection_id, fields in rows:
        for item in fields or ():
            if isinstance(item, Mapping) and isinstance(item.get("max_length"), int) and item.get("name"):
                limits[(connection_id, str(item["name"]))] = item["max_length"]
    return limits


def _field_plan(mapping: FieldMapping, external_max_length: int | None = None) -> FieldPlan:
    if mapping.hub_field not in HUB_FIELDS and not mapping.hub_field.startswith(ATTRIBUTE_PREFIX):
        raise PlanError(f"Mapping {mapping}: {mapping.hub_field!r} is not a hub field.")
    try:
        chain = TransformChain(mapping.transforms)
    except InvalidTransformSpec as error:
        raise PlanError(f"Mapping {mapping}: {error}") from None
    rule = FieldRule(
        policy=Policy(mapping.conflict_policy),
        incoming_owns=mapping.is_owner,
        never_overwrite_with_empty=mapping.never_overwrite_with_empty,
    )
    return FieldPlan(mapping.hub_field, mapping.external_field, chain, rule,
                     hub_max_length=_MAX_LENGTHS.get(mapping.hub_field), external_max_length=external_max_length)


# Hub text fields with a length limit (CharField), read once.
_MAX_LENGTHS = {name: Contact._meta.get_field(name).max_length for name in HUB_FIELDS}


def hub_value_check(hub_field: str, value: Any, *, phone_region: str) -> Any:
    """Return `value` as the hub field can store it, or raise TransformError.

    Text fields store "" for nothing; the phone is kept in E.164 whatever the mapping's
    transforms did; the consent must be a known state; lengths are checked here rather
    than failing the whole page in the database.
    """
    if hub_field.startswith(ATTRIBUTE_PREFIX):
        return value
    if hub_field == EMAIL:
        if is_empty(value):
            return None
        try:
            email = normalize_email(value)
        except InvalidEmail as error:
            raise TransformError(f"{value!r}: {error}") from None
        fixed = suggest_fix(email)
        if fixed is not None:
            raise TransformError(typo_message(email, fixed))
        return email
    if hub_field == PHONE:
        if is_empty(value):
            return None
        if isinstance(value, str) and E164.fullmatch(value):
            # Already E.164 (the phone_e164 transform's output): parsing it again would
            # double the cost of the most expensive step of a pull.
            return value
        try:
            return normalize_phone(str(value), phone_region)
        except InvalidPhone as error:
            raise TransformError(f"{value!r} {error}") from None
    if hub_field == EMAIL_CONSENT:
        if value is None:
            return None
        if value not in RESTRICTIVENESS:
            raise TransformError(f"{value!r} is not a consent state ({', '.join(RESTRICTIVENESS)})")
        return value
    if value is None:
        return ""
    if isinstance(value, list | dict):
        raise TransformError(f"a list or object cannot be stored in {HUB_FIELDS[hub_field]}")
    text = value if isinstance(value, str) else str(value)
    limit = _MAX_LENGTHS.get(hub_field)
    if limit and len(text) > limit:
        raise TransformError(f"is longer than the {limit} characters {HUB_FIELDS[hub_field]} can hold")
    return text


def set_hub_value(contact: Contact, hub_field: str, value: Any) -> None:
    if hub_field.startswith(ATTRIBUTE_PREFIX):
        contact.attributes = {**contact.attributes, hub_field.removeprefix(ATTRIBUTE_PREFIX): value}
    else:
        setattr(contact, hub_field, value)


def hub_column(hub_field: str) -> str:
    """Return the model column that holds `hub_field`."""
    return "attributes" if hub_field.startswith(ATTRIBUTE_PREFIX) else hub_field


def plain(value: Any) -> Any:
    """Return `value` as JSON can hold it, for audit rows and merge bases."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return str(value)
