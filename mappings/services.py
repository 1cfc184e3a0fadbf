"""Saving a mapping from the editor, then backfilling its field."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from audit.services import field_values
from mappings.models import FieldMapping
from syncapp.engine.backfill import BOTH, IN, OUT, backfill_key
from syncapp.models import SyncRun
from syncapp.services.backfill import backfill_request, sync_has_read
from syncapp.services.syncs import mapping_save

# A change to any of these can give records other values in some system: backfill them.
VALUE_FIELDS = ("connection_id", "hub_field", "external_field", "direction", "transforms", "is_owner",
                "conflict_policy", "never_overwrite_with_empty")


def changed_direction(before: dict, after: dict) -> str:
    """Return which way a mapping's change alters values: "in", "out" or "both".

    Only a change of transforms can be one way: the steps that apply in each direction
    are compared. Anything else (the field, the direction, the owner, the policy)
    changes both ways.
    """
    if any(before[name] != after[name] for name in VALUE_FIELDS if name != "transforms"):
        return BOTH
    changed = {way for way in (IN, OUT) if _steps(before["transforms"], way) != _steps(after["transforms"], way)}
    return changed.pop() if len(changed) == 1 else BOTH


def _steps(specs, way: str) -> list:
    """The steps of a transform list that apply `way`, without their direction."""
    steps = []
    for spec in specs or ():
        if isinstance(spec, dict):
            if spec.get("direction", BOTH) not in (way, BOTH):
                continue
            spec = {key: value for key, value in spec.items() if key != "direction"}
        steps.append(spec)
    return steps


@dataclass(frozen=True)
class MappingSaved:
    mapping: FieldMapping
    changed: bool
    backfill: SyncRun | None
    # False before the sync's first read: that run fills the field, no backfill is needed.
    backfill_needed: bool


def mapping_editor_save(*, mapping: FieldMapping, user) -> MappingSaved:
    """Save a mapping from the editor (audited) and, once committed, queue a backfill of its hub field.

    Nothing is queued when nothing changed. The backfill is requested after the commit:
    a run must never start on a mapping that a rollback took back.
    """
    if mapping._state.adding:
        changed, direction = True, BOTH
    else:
        before = field_values(FieldMapping.objects.get(pk=mapping.pk), VALUE_FIELDS)
        after = field_values(mapping, VALUE_FIELDS)
        changed = before != after
        direction = changed_direction(before, after)
    queued: list[SyncRun | None] = []
    backfill_needed = sync_has_read(sync=mapping.sync)
    with transaction.atomic():
        mapping_save(mapping=mapping, user=user)
        if changed and backfill_needed:
            transaction.on_commit(lambda: queued.append(
                backfill_request(sync=mapping.sync,
                                 hub_fields=[backfill_key(mapping.hub_field, mapping.connection_id, direction)],
                                 user=user)
            ))
    return MappingSaved(
        mapping=mapping, changed=changed, backfill=queued[0] if queued else None, backfill_needed=backfill_needed
    )

