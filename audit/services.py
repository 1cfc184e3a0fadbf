"""Writing audit events. Callers write them inside the transaction of the change."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.db.models import Max, Q
from django.db.models.functions import Cast
from django.utils import timezone

from audit import chain
from audit.models import AuditChainHead, AuditEvent
from syncapp.services.bulk import bulk_insert_rows

# Model fields whose values are never written to the trail, only that they changed.
SECRET_FIELDS = frozenset({"api_key", "access_token", "refresh_token", "webhook_secret", "client_secret", "password"})
SECRET_PLACEHOLDER = "(secret changed)"


def redact_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Return `changes` with the values of secret fields replaced by a placeholder."""
    return {
        name: [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER] if name in SECRET_FIELDS else value
        for name, value in changes.items()
    }


def audit_event_build(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    actor=None,
    system: str = "hub",
    contact_id: int | None = None,
    run_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Return an unsaved event (for bulk writes by the engine)."""
    if obj is not None:
        object_type = object_type or obj._meta.model_name
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:200]
    return AuditEvent(
        action=action,
        actor=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
        system=system,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        contact_id=contact_id,
        run_id=run_id,
        changes=redact_changes(changes or {}),
    )


def audit_record(**kwargs) -> AuditEvent:
    """Write one event now; call it inside the transaction of the change it describes."""
    event = audit_event_build(**kwargs)
    event.save()
    return event


@dataclass(slots=True)
class AuditRow:
    """An event as a plain row, for the engine's bulk writes (see `audit_row_build`)."""

    action: str
    system: str
    object_type: str
    object_id: str
    object_repr: str
    contact_id: int | None
    run_id: int | None
    changes: dict[str, Any]
    actor_id: int | None = None
    created_at: datetime | None = None
    # The hash chain's columns (audit.chain), filled as the row is written.
    changes_digest: str = ""
    prev_hash: str = ""
    row_hash: str = ""


def audit_row_build(
    *,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str = "",
    system: str = "hub",
    contact_id: int | None = None,
    run_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditRow:
    """Return an event of the engine's (no user acting) without building a model instance."""
    return AuditRow(action=action, system=system, object_type=object_type, object_id=object_id,
                    object_repr=object_repr[:200], contact_id=contact_id, run_id=run_id,
                    changes=redact_changes(changes or {}))


def audit_record_many(events: Iterable[AuditEvent | AuditRow]) -> None:
    """Write many unsaved events (model instances or rows) at once; their ids are not set.

    A plain insert rather than `bulk_create`, which compiles every value of every row:
    the engine writes an event per contact it changes, and bulk_create made those rows
    the largest cost of a 100,000-contact sync.
    """
    audit_events_append(list(events))


# The chain's head is this one row of AuditChainHead.
CHAIN_HEAD_ID = 1


def _chain_head_take(cursor, head_table: str) -> str:
    """Lock the chain's head for the rest of the transaction and return the last row's hash.

    An UPDATE, not a SELECT: it takes SQLite's write lock and PostgreSQL's row lock, so
    a second writer waits here until the first commits and then reads the head the first
    left (on SQLite a plain read first would see the head as it was before the wait).
    The head row is created when missing (a test database flushed between tests).
    """
    take = f"UPDATE {head_table} SET events = events WHERE id = %s RETURNING last_hash"
    cursor.execute(take, [CHAIN_HEAD_ID])
    row = cursor.fetchone()
    if row is None:
        cursor.execute(f"INSERT INTO {head_table} (id, last_hash, last_event_id, events) VALUES (%s, %s, 0, 0) "
                       f"ON CONFLICT (id) DO NOTHING", [CHAIN_HEAD_ID, chain.GENESIS])
        cursor.execute(take, [CHAIN_HEAD_ID])
        row = cursor.fetchone()
    return row[0]


def audit_events_append(events: Sequence[AuditEvent | AuditRow], *, set_ids: bool = False) -> None:
    """Write unsaved events at the end of the hash chain, in the caller's transaction.

    The head is locked before the rows are inserted, so their ids are assigned while it
    is held: on PostgreSQL too, where a sequence value taken before the lock could be
    lower than that of a row committed earlier, id order is the chain's order, the order
    verification walks. The lock is held until the caller's transaction ends: two
    writers of audit events queue, on SQLite as on PostgreSQL.
    """
    if not events:
        return
    alias = router.db_for_write(AuditEvent)
    connection = connections[alias]
    quote = connection.ops.quote_name
    head_table, event_table = quote(AuditChainHead._meta.db_table), quote(AuditEvent._meta.db_table)
    with transaction.atomic(using=alias, savepoint=False), connection.cursor() as cursor:
        prev_hash = _chain_head_take(cursor, head_table)
        # Taken under the lock: times follow the chain's order.
        now = timezone.now()
        for event in events:
            event.created_at = now
        last_hash = chain.link(events, prev_hash)
        bulk_insert_rows(events, model=AuditEvent, set_ids=set_ids, now=now)
        if set_ids:
            last_id, last_id_sql = [events[-1].pk], "%s"
        else:
            # Read in the head's own update (the head is held: the last row is ours).
            last_id, last_id_sql = [], f"(SELECT MAX(id) FROM {event_table})"
        cursor.execute(f"UPDATE {head_table} SET last_hash = %s, last_event_id = {last_id_sql}, "
                       f"events = events + %s WHERE id = %s", [last_hash, *last_id, len(events), CHAIN_HEAD_ID])


# Rows redacted per UPDATE statement (SQLite's variable limit is 999).
_ERASE_BATCH = 500


def audit_events_erase(*, contact_ids: list[int], values: list[str]) -> int:
    """Replace the personal values of the events about these contacts or holding these values.

    For an erasure request. Each event whose contact is one of `contact_ids`, or whose
    changes or description contain one of `values` (an email, a phone; compared without
    case), keeps its action, time, actor, systems and ids, but its `changes` become the
    erasure marker and its description "erased". An `audit.erased` event listing the
    redacted rows is written at the end of the chain; the chain still verifies, as the
    rows' hashes cover their changes only through the digest kept beside them.

    The one update of audit events there is: a raw UPDATE of those two columns, which
    the database's guard lets through only when it writes the marker (audit 0003).
    `audit.erased` events are never redacted: they name no one but by id. Return the
    number of events redacted.

    The trail is searched before the chain's head is taken: the search reads every row,
    and every writer of audit events would wait for it. Rows never change but by an
    erasure, so what it finds stays true; under the head only the rows written since are
    searched. Ids follow the chain's order (audit_events_append assigns them under the
    head), so every row the first search could not see has an id above the last it could.
    """
    contact_ids = sorted({int(pk) for pk in contact_ids})
    values = sorted({value.strip() for value in values if value and value.strip()})
    if not contact_ids and not values:
        return 0
    alias = router.db_for_write(AuditEvent)
    connection = connections[alias]
    quote = connection.ops.quote_name
    seen = AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0
    row_ids = _erasable_ids(contact_ids=contact_ids, values=values, up_to=seen)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        # Taken before the rows written since are searched, so none is written between
        # the rows being picked and redacted.
        _chain_head_take(cursor, quote(AuditChainHead._meta.db_table))
        row_ids += _erasable_ids(contact_ids=contact_ids, values=values, after=seen)
        if not row_ids:
            return 0
        erasure = audit_record(
            action=chain.ERASED_ACTION, object_type="contact", object_id=str(contact_ids[0]) if contact_ids else "",
            object_repr=f"Personal values erased from {len(row_ids)} audit events",
            contact_id=contact_ids[0] if contact_ids else None,
            changes={chain.ERASED_LIST_KEY: [None, row_ids], "contacts": [None, contact_ids]},
        )
        marker = AuditEvent._meta.get_field("changes").get_db_prep_save(
            chain.erasure_marker(f"{chain.ERASED_ACTION} #{erasure.pk}"), connection)
        table = quote(AuditEvent._meta.db_table)
        for start in range(0, len(row_ids), _ERASE_BATCH):
            batch = row_ids[start:start + _ERASE_BATCH]
            cursor.execute(f"UPDATE {table} SET changes = %s, object_repr = %s WHERE id IN "
                           f"({', '.join(['%s'] * len(batch))})", [marker, chain.ERASED_REPR, *batch])
    return len(row_ids)


def _erasable_ids(*, contact_ids: list[int], values: list[str], after: int = 0, up_to: int | None = None) -> list[int]:
    """Return the ids of the events to redact with ids in (after, up_to], in order, read in chunks."""
    about = Q(contact_id__in=contact_ids)
    holding = Q()
    for value in values:
        # As stored: SQLite keeps the JSON text with non-ASCII escaped, PostgreSQL's
        # jsonb gives it back unescaped; quotes and backslashes are escaped in both.
        for form in {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}:
            holding |= Q(changes_text__icontains=form)
        holding |= Q(object_repr__icontains=value)
    within = Q(id__gt=after) if up_to is None else Q(id__gt=after, id__lte=up_to)
    events = (
        AuditEvent.objects.annotate(changes_text=Cast("changes", models.TextField()))
        .filter(within, about | holding)
        .exclude(action=chain.ERASED_ACTION)
        .exclude(object_repr=chain.ERASED_REPR, changes__has_key=chain.ERASED_KEY)
        .order_by("id")
        .values_list("id", "contact_id", "changes", "object_repr")
    )
    wanted = set(contact_ids)
    # The text match is a first cut: the values themselves must hold one of `values`, as
    # a whole (ann@example.com is not in joann@example.com, nor +1555123 in +15551234).
    pattern = re.compile(
        "|".join(rf"(?<![\w.+@-]){re.escape(value)}(?![\w.+@-])" for value in values) or "(?!)", re.IGNORECASE
    )
    return [
        row_id for row_id, contact_id, changes, object_repr in events.iterator(chunk_size=2000)
        if contact_id in wanted or any(pattern.search(text) for text in _texts(changes, object_repr))
    ]


def _texts(changes: Any, object_repr: str) -> Iterator[str]:
    yield object_repr
    stack = [changes]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def model_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return {field: [old, new]} for the fields whose value differs."""
    return {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}


def field_values(instance: models.Model, names: Iterable[str]) -> dict[str, Any]:
    """Return {name: value} for `names` as plain JSON (dates as ISO text), for `changes`."""
    values = {name: getattr(instance, name) for name in names}
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))
