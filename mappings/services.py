"""Saving a mapping from the editor, then backfilling its field."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from audit.services import field_values
from mappings.models import FieldMapping
from syncapp.models import SyncRun
from syncapp.services.backfill import backfill_request, sync_has_read
from syncapp.services.syncs import mapping_save

# A change to any of these can give records other values in some system: backfill them.
VALUE_FIELDS = ("connection_id", "hub_field", "external_field", "direction", "transforms", "is_owner",
                "conflict_policy", "never_overwrite_with_empty")


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
        changed = True
    else:
        stored = FieldMapping.objects.get(pk=mapping.pk)
        changed = field_values(stored, VALUE_FIELDS) != field_values(mapping, VALUE_FIELDS)
    queued: list[SyncRun | None] = []
    backfill_needed = sync_has_read(sync=mapping.sync)
    with transaction.atomic():
        mapping_save(mapping=mapping, user=user)
        if changed and backfill_needed:
            transaction.on_commit(lambda: queued.append(
                backfill_request(sync=mapping.sync, hub_fields=[mapping.hub_field], user=user)
            ))
    return MappingSaved(
        mapping=mapping, changed=changed, backfill=queued[0] if queued else None, backfill_needed=backfill_needed
    )

