"""Try a sync's mappings on one contact: its values in the hub and in each system, each
transform step both ways, and what a run would write where.

The answer comes from the run's own code: the plan a run builds (syncapp.services.plan),
its payloads compared with the link's merge base, and the three-way merge for what a
read would bring in. Each system's record is read live through the provider registry;
a system that fails is a message on that system, never an error page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.db.models import Q

from connections.providers.base import ProviderError
from connections.registry import UnknownProvider, provider_for
from mappings.transforms import TransformError
from syncapp.engine.consent import UNKNOWN
from syncapp.engine.merge import NO_BASE, merge_field
from syncapp.models import Contact, RecordLink, Sync
from syncapp.services.held import held_fields
from syncapp.services.plan import EndpointPlan, FieldPlan, PlanError, sync_plan_build

MATCHES_SHOWN = 20
_ABSENT = object()


class PreviewForm(forms.Form):
    """Find a contact of the sync: by id, email or name."""

    q = forms.CharField(required=False, max_length=320, label="Email, name or contact id", strip=True)
    contact = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)

    def __init__(self, *args, sync: Sync, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync = sync
        self.contact: Contact | None = None
        self.matches: list[Contact] = []

    def clean(self):
        cleaned = super().clean()
        contacts = sync_contacts(self.sync)
        contact_id = cleaned.get("contact")
        query = cleaned.get("q") or ""
        if contact_id is None and query.isdigit() and len(query) < 19:
            contact_id = int(query)
        if contact_id is not None:
            self.contact = contacts.filter(pk=contact_id).first()
            if self.contact is None:
                raise forms.ValidationError(f"No contact #{contact_id} is linked to a system of this sync.")
            return cleaned
        if not query:
            raise forms.ValidationError("Type an email, a name or a contact id.")
        found = contacts.filter(Q(email__icontains=query) | Q(first_name__icontains=query)
                                | Q(last_name__icontains=query)).order_by("id")[:MATCHES_SHOWN + 1]
        self.matches = list(found)
        if len(self.matches) == 1:
            self.contact = self.matches[0]
        elif not self.matches:
            raise forms.ValidationError("No contact of this sync matches that.")
        return cleaned


def sync_contacts(sync: Sync):
    """Return the contacts linked to any system of `sync`."""
    connection_ids = sync.endpoints.values_list("connection_id", flat=True)
    return Contact.objects.filter(links__connection_id__in=connection_ids, erased=False).distinct()


@dataclass
class Step:
    name: str
    value: Any
    error: str = ""


@dataclass
class FieldPreview:
    hub_field: str
    external_field: str
    direction: str
    hub_value: Any
    system_value: Any = _ABSENT
    # Reading: each step from the system's value to the hub's, and what the merge decides.
    steps_in: list[Step] = field(default_factory=list)
    read_outcome: str = ""
    # Writing: each step from the hub's value to the system's, and what a run would send.
    steps_out: list[Step] = field(default_factory=list)
    write_outcome: str = ""
    write_value: Any = _ABSENT

    @property
    def has_system_value(self) -> bool:
        return self.system_value is not _ABSENT

    @property
    def has_write_value(self) -> bool:
        return self.write_value is not _ABSENT


@dataclass
class SystemPreview:
    name: str
    external_id: str | None
    reads: bool
    writes: bool
    fields: list[FieldPreview] = field(default_factory=list)
    problem: str = ""
    # What a run would do with the whole record there.
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    email_consent: str | None = None
    # An email platform the contact is not in yet: the consent status a run would create
    # the member with, and whether that is the hub's consent or the sync's chosen status.
    new_member_consent: str | None = None
    # Where it comes from: "hub" (its consent), "chosen" (the sync's status for new
    # members) or "kept" (the state the system told before for this person).
    new_member_consent_source: str = ""
    # Nor would a run create it: the hub does not know the consent and the sync has no
    # status for new members (the marketer chooses one in the sync's settings).
    waits_for_new_member_status: bool = False


@dataclass
class Preview:
    contact: Contact
    systems: list[SystemPreview]
    problem: str = ""


@dataclass
class _NewLink:
    """The link state of a contact not yet in a system: a run would create the record."""

    external_id: str | None = None
    merge_base: dict = field(default_factory=dict)
    email_consent_base: str = ""


def record_preview(*, sync: Sync, contact: Contact) -> Preview:
    """Return what each mapped field holds and would become, per system, for `contact`."""
    try:
        plan = sync_plan_build(sync=sync, provider_for=provider_for)
    except (PlanError, UnknownProvider, ProviderError) as error:
        return Preview(contact, [], problem=f"The sync cannot run as configured: {error}")
    try:
        links = {link.connection_id: link for link in RecordLink.objects.filter(contact=contact)}
        held = held_fields(sync_id=sync.pk, contact_ids=[contact.pk]).get(contact.pk, set())
        return Preview(contact, [_system_preview(endpoint, contact, links.get(endpoint.connection.pk), held)
                                 for endpoint in plan.endpoints])
    finally:
        plan.close()


def _system_preview(endpoint: EndpointPlan, contact: Contact, link: RecordLink | None, held: set[str]) -> SystemPreview:
    system = SystemPreview(endpoint.name, link.external_id if link else None, endpoint.endpoint.read,
                           endpoint.endpoint.write)
    remote = _read_live(endpoint, link, system)
    plans = {(plan.hub_field, plan.external_field): plan for plan in (*endpoint.reads, *endpoint.writes)}
    reading = {(plan.hub_field, plan.external_field) for plan in endpoint.reads}
    writing = {(plan.hub_field, plan.external_field) for plan in endpoint.writes}
    state = link if link is not None and not link.archived else _NewLink()
    payload = endpoint.payload(contact, state, held=held) if endpoint.endpoint.write else None
    for key, plan in plans.items():
        direction = "both" if key in reading and key in writing else ("in" if key in reading else "out")
        row = FieldPreview(plan.hub_field, plan.external_field, direction, contact.hub_value(plan.hub_field))
        if remote is not None and plan.external_field in remote:
            row.system_value = remote[plan.external_field]
        if key in reading:
            _preview_read(endpoint, plan, row, link, held)
        if key in writing:
            _preview_write(endpoint, plan, row, contact, state, payload, held)
        system.fields.append(row)
    if payload is not None:
        system.errors = list(payload.errors)
        system.email_consent = payload.email_consent
        if state.external_id is None:
            _preview_create(endpoint, contact, payload, system)
        elif endpoint.differs(payload, state):
            system.summary = "A run would update this record here."
        else:
            system.summary = "No change: this system already holds what the hub would send."
    return system


def _preview_create(endpoint: EndpointPlan, contact: Contact, payload, system: SystemPreview) -> None:
    """Say whether a run would create the contact here and, on an email platform, with which consent status.

    The status is the payload's `email_consent_if_new`, the one the provider creates the
    member with; without one (unknown consent, no status chosen) the member is not created.
    """
    if not payload.email:
        system.summary = "A run could not send this contact here: it has no email."
        return
    if not endpoint.provider.new_record_consent_states:
        system.summary = "A run would create this record here."
        return
    if payload.email_consent_if_new is None:
        system.waits_for_new_member_status = True
        system.summary = f"Not created in {endpoint.name} until you choose a status for new members."
        return
    system.summary = "A run would create this record here."
    system.new_member_consent = payload.email_consent_if_new
    if contact.hub_value("email_consent") not in (None, "", UNKNOWN):
        system.new_member_consent_source = "hub"
    elif payload.email_consent_if_new == endpoint.endpoint.new_member_status:
        system.new_member_consent_source = "chosen"
    else:
        # new_record_consent keeps a state the system told before (an opt-out of a
        # record deleted there since) over the status chosen for new members.
        system.new_member_consent_source = "kept"


def _read_live(endpoint: EndpointPlan, link: RecordLink | None, system: SystemPreview) -> dict | None:
    if link is None or not link.external_id:
        system.problem = "Not linked here yet."
        return None
    fields = sorted({plan.external_field for plan in (*endpoint.reads, *endpoint.writes)})
    try:
        provider = provider_for(endpoint.connection, fields=fields)
    except (UnknownProvider, ProviderError) as error:
        system.problem = f"Could not reach {endpoint.name}: {error}"
        return None
    try:
        records = provider.read_by_ids([link.external_id])
    except ProviderError as error:
        system.problem = f"Could not read the record from {endpoint.name}: {error}"
        return None
    finally:
        close = getattr(provider.http, "close", None)
        if close is not None:
            close()
    if not records:
        system.problem = f"{endpoint.name} no longer has record {link.external_id}."
        return None
    return dict(records[0].fields)


def _trace(method, value: Any, context) -> list[Step]:
    """Return each transform step of `method` (a chain's trace) applied to `value`."""
    try:
        trace = method(value, context)
    except TransformError as error:
        return [Step("", None, str(error))]
    steps = []
    for item in trace or ():
        get = item.get if isinstance(item, dict) else lambda key, default=None, item=item: getattr(item, key, default)
        error = get("error", "")
        steps.append(Step(str(get("name", "") or get("transform", "")), get("value"), str(error) if error else ""))
    return steps


def _preview_read(endpoint: EndpointPlan, plan: FieldPlan, row: FieldPreview, link, held: set[str]) -> None:
    if not row.has_system_value:
        row.read_outcome = "Nothing read."
        return
    row.steps_in = _trace(plan.chain.trace_to_hub, row.system_value, endpoint.context_in(plan))
    theirs = endpoint.hub_form(plan, row.system_value)
    if theirs is NO_BASE:
        row.read_outcome = "A record error: the value cannot be read into the hub."
        return
    if plan.hub_field in held:
        row.read_outcome = "Held: an open conflict waits for a reviewer."
        return
    raw_base = (link.merge_base if link else {}).get(plan.external_field, _ABSENT)
    base = NO_BASE if raw_base is _ABSENT else endpoint.hub_form(plan, raw_base)
    decision = merge_field(base=base, theirs=theirs, ours=row.hub_value, rule=plan.rule)
    if decision.changes_hub:
        row.read_outcome = f"The hub would take {decision.value!r} ({decision.reason})."
    else:
        row.read_outcome = f"The hub keeps its value ({decision.reason})."


def _preview_write(
    endpoint: EndpointPlan, plan: FieldPlan, row: FieldPreview, contact: Contact, state, payload, held: set[str]
) -> None:
    if row.hub_value not in (None, "") or plan.chain.joins:
        row.steps_out = _trace(plan.chain.trace_to_external, row.hub_value, endpoint.context_out(plan, contact))
    if payload is None:
        row.write_outcome = "This system is not written by the sync."
        return
    if plan.hub_field in held:
        row.write_outcome = "Held: an open conflict waits for a reviewer."
        return
    if plan.external_field not in payload.fields:
        row.write_outcome = "Not sent (empty, a transform error, or no statement to make)."
        return
    value = payload.fields[plan.external_field]
    row.write_value = value
    held_value = state.merge_base.get(plan.external_field, _ABSENT)
    same = held_value is not _ABSENT and (held_value == value or (
        endpoint.hub_form(plan, held_value) is not NO_BASE
        and endpoint.hub_form(plan, held_value) == endpoint.hub_form(plan, value)))
    if state.external_id is not None and same:
        row.write_outcome = "No change."
    else:
        row.write_outcome = f"Would write {value!r}."

