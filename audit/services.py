"""Writing audit events. Callers write them inside the transaction of the change."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from audit.models import AuditEvent
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
    bulk_insert_rows(list(events), model=AuditEvent)


def model_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return {field: [old, new]} for the fields whose value differs."""
    return {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}


def field_values(instance: models.Model, names: Iterable[str]) -> dict[str, Any]:
    """Return {name: value} for `names` as plain JSON (dates as ISO text), for `changes`."""
    values = {name: getattr(instance, name) for name in names}
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))
