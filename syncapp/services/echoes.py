"""Setting aside a page's echoes of Syncapp's own writes before the page machinery.

The run after a bulk push reads back every record it wrote (services.pull): the
decision that a record is only that echo is the engine's (engine.echo); this module
loads what it needs in one query per page and hands back the records that still need
matching and merging. An echo is counted as unchanged (and as an echo); nothing else is
written for it, not even its new modification time: the link keeps the time of the
last read that changed it, and the cursor moves past the record with the page.

A full read (a resync, a backfill) sets nothing aside: it is how a contact catches up
with a system added to the sync or a mapping changed, which the full treatment of
every record decides (services.page_marks); nor does any read of a run that compares
fields afresh (a backfill's, SyncPlan.compare_afresh).
"""
from __future__ import annotations

from typing import Any

from syncapp.engine.echo import Known, Read, is_echo
from syncapp.engine.merge import is_empty
from syncapp.models import RecordLink
from syncapp.services.incoming import Incoming
from syncapp.services.plan import ATTRIBUTE_PREFIX, EMAIL_CONSENT, EndpointPlan, SyncPlan, hub_column, plain

LINK_COLUMNS = ("external_id", "merge_base", "email_consent_base", "archived", "stable_id", "updated_at",
                "contact__email", "contact__phone", "contact__updated_at")


def echoes_may_be_set_aside(*, plan: SyncPlan, full: bool) -> bool:
    """Whether a read of this run may set echoes aside: a delta read, outside a backfill."""
    return not full and not any(endpoint.afresh or endpoint.exact_fields for endpoint in plan.endpoints)


def echoes_set_aside(*, reader: EndpointPlan, incoming: list[Incoming]) -> tuple[list[Incoming], int]:
    """Return the page's records that are not echoes of what Syncapp last agreed, and how many were (one query)."""
    if not incoming:
        return incoming, 0
    hub_fields = _hub_fields_by_external(reader)
    columns = sorted({hub_column(name) for names in hub_fields.values() for name in names})
    rows = RecordLink.objects.filter(
        connection=reader.connection, external_id__in=[item.record.external_id for item in incoming]
    ).values_list(*LINK_COLUMNS, *(f"contact__{column}" for column in columns))
    known: dict[str, Known] = {}
    for row in rows:
        external_id, merge_base, consent, archived, stable_id, agreed_at, email, phone, changed_at = row[:9]
        # Only the fields the base lacks are asked about (engine.echo): after the first
        # read of a record Syncapp created, none.
        lacking = [external for external in hub_fields if external not in merge_base]
        hub = dict(zip(columns, row[9:], strict=True)) if lacking else {}
        known[external_id] = Known(
            merge_base=merge_base, email_consent_base=consent, archived=archived, stable_id=stable_id,
            agreed_at=agreed_at, contact_email=email, contact_phone=phone, contact_changed_at=changed_at,
            empty_in_hub=frozenset(external for external in lacking
                                   if all(is_empty(_hub_value(hub, name)) for name in hub_fields[external])),
        )
    consent_field = next((plan.external_field for plan in reader.reads if plan.hub_field == EMAIL_CONSENT), None)
    kept = [item for item in incoming
            if item.record.external_id not in known
            or not is_echo(_read(item, consent_field), known[item.record.external_id])]
    return kept, len(incoming) - len(kept)


def _hub_fields_by_external(reader: EndpointPlan) -> dict[str, set[str]]:
    """External field -> the hub fields its value is read into or written from (two for a full name)."""
    found: dict[str, set[str]] = {}
    for plan in reader.reads:
        found.setdefault(plan.external_field, set()).add(plan.hub_field)
    for plan in reader.writes:
        if plan.external_field in reader.written_only:
            found.setdefault(plan.external_field, set()).update({plan.hub_field, *plan.chain.hub_fields_read})
    return found


def _hub_value(columns: dict[str, Any], hub_field: str) -> Any:
    if hub_field.startswith(ATTRIBUTE_PREFIX):
        return (columns.get("attributes") or {}).get(hub_field.removeprefix(ATTRIBUTE_PREFIX))
    return columns[hub_field]


def _read(item: Incoming, consent_field: str | None) -> Read:
    """The record as the engine compares it: its fields in the merge base's form (as page_applier._merge keeps them)."""
    fields = {plan.external_field: plain(raw) for plan, raw, _ in item.values.values()}
    fields.update((name, plain(value)) for name, value in item.written_only.items())
    consent = item.values.get(EMAIL_CONSENT)
    return Read(
        fields=fields,
        email=item.keys.email,
        phone=item.keys.phone,
        stable_id=item.record.stable_id,
        email_consent=consent[2] if consent is not None else None,
        consent_field=consent_field if consent is not None else None,
        whole=not item.field_errors and item.email_fixed_from is None,
    )
