"""Saving and deleting syncs, their endpoints and their field mappings, each audited.

Every service takes the instance as edited (a form's instance, or one built in code),
compares it with the stored row, saves it and writes one audit row with what changed,
all in one transaction. The audit rows come last, after every row saved or deleted: the
audit chain's head stays locked until the commit, and a run or a reviewer holding one of
those rows (a cursor, a conflict the delete cascades to) takes the head after it.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import models, transaction

from audit.models import AuditEvent
from audit.services import audit_event_build, audit_record_many, field_values, model_changes
from mappings.models import FieldMapping
from syncapp.models import Sync, SyncConnection
from syncapp.services.locks import sync_locked
from syncapp.services.schedules import sync_schedule_delete, sync_schedule_save

SYNC_FIELDS = (
    "name",
    "schedule_minutes",
    "schedule_cron",
    "batch_size",
    "delete_handling",
    "paused",
    "paused_reason",
    "owner_id",
    "fix_email_typos",
)
ENDPOINT_FIELDS = ("sync_id", "connection_id", "read", "write", "new_member_status", "new_member_legal_basis")
MAPPING_FIELDS = (
    "sync_id",
    "connection_id",
    "hub_field",
    "external_field",
    "external_type",
    "direction",
    "transforms",
    "is_owner",
    "conflict_policy",
    "never_overwrite_with_empty",
)


def _saved(
    *, instance: models.Model, fields: tuple[str, ...], noun: str, user, action: str | None = None,
    system: str = "hub",
) -> list[AuditEvent]:
    """Validate and save `instance`; return the audit event of what changed, unwritten (none when nothing did).

    `action` names an update for what it is ("sync.paused") instead of "<noun>.updated";
    `system` is who decided it ("hub": the person `user`). The caller writes the event
    once its other rows are written.
    """
    instance.full_clean()
    if instance._state.adding:
        action = f"{noun}.created"
        changes = {name: [None, value] for name, value in field_values(instance, fields).items()}
    else:
        action = action or f"{noun}.updated"
        stored = type(instance).objects.get(pk=instance.pk)
        changes = model_changes(field_values(stored, fields), field_values(instance, fields))
        if not changes:
            return []
    if instance._state.adding:
        instance.save()
    else:
        # Only the changed columns: the engine may have moved a cursor since the form
        # was loaded, and a stale copy must not be written back.
        auto_now = [f.name for f in instance._meta.concrete_fields if getattr(f, "auto_now", False)]
        instance.save(update_fields=[*changes, *auto_now])
    return [audit_event_build(action=action, obj=instance, actor=user, system=system, changes=changes)]


def _deletion(*, instance: models.Model, fields: tuple[str, ...], noun: str, user) -> AuditEvent:
    """Return the audit event of deleting `instance`, unwritten: built while the instance still has its id."""
    changes = {name: [value, None] for name, value in field_values(instance, fields).items()}
    return audit_event_build(action=f"{noun}.deleted", obj=instance, actor=user, changes=changes)


def _sync_saved(*, sync: Sync, user, action: str | None = None, system: str = "hub") -> list[AuditEvent]:
    """Save `sync` and keep its schedule in step; return its audit event, unwritten (none when unchanged)."""
    events = _saved(instance=sync, fields=SYNC_FIELDS, noun="sync", user=user, action=action, system=system)
    if events:
        sync_schedule_save(sync=sync)
    return events


def sync_save(*, sync: Sync, user) -> Sync:
    """Create or update `sync`, audit the change and keep its schedule in step."""
    with transaction.atomic():
        audit_record_many(_sync_saved(sync=sync, user=user))
    return sync


def sync_builder_save(*, sync: Sync, endpoints: Sequence[SyncConnection], user) -> Sync:
    """Save `sync` and make `endpoints` its whole set of connections, all in one transaction.

    `endpoints` are the sync's parts as edited: stored rows changed in place, and new
    unsaved ones. Stored endpoints not among them are deleted. A connection that still
    has field mappings in the sync cannot be removed (its mappings would point at a
    system the sync no longer reads or writes): ValidationError, and nothing is saved.
    """
    with transaction.atomic():
        events = _sync_saved(sync=sync, user=user)
        kept = {endpoint.pk for endpoint in endpoints if endpoint.pk}
        for stale in sync.endpoints.exclude(pk__in=kept).select_related("connection"):
            mapped = sync.mappings.filter(connection_id=stale.connection_id).count()
            if mapped:
                raise ValidationError(
                    f"{stale.connection.name} still has {mapped} field mapping{'s' if mapped != 1 else ''} in this "
                    "sync: delete them in the mapping editor first, or keep the connection."
                )
            events.append(_deletion(instance=stale, fields=ENDPOINT_FIELDS, noun="endpoint", user=user))
            stale.delete()
        for endpoint in endpoints:
            endpoint.sync = sync
            events.extend(_saved(instance=endpoint, fields=ENDPOINT_FIELDS, noun="endpoint", user=user))
        audit_record_many(events)
    return sync


def sync_pause(*, sync: Sync, user, reason: str = "", system: str = "hub") -> Sync:
    """Pause `sync`: no scheduled run starts until it is resumed. `reason` is shown until then.

    A person pausing gives no reason; the engine gives one (the field that changed and
    where), as `system` "Syncapp". A person pausing a paused sync changes nothing, so a
    reason already shown stays; a reason given to a paused sync replaces the one shown
    (a drift found while a person had paused it, or a newer one).
    """
    with transaction.atomic():
        sync = sync_locked(sync.pk)
        if sync.paused and (not reason or reason == sync.paused_reason):
            return sync
        sync.paused, sync.paused_reason = True, reason
        audit_record_many(_sync_saved(sync=sync, user=user, action="sync.paused", system=system))
    return sync


def sync_resume(*, sync: Sync, user) -> Sync:
    """Resume `sync`: clear the pause and its reason and put its schedule back.

    Refused (ValidationError, saying what to fix) while a mapped field still differs
    from what its system reported last: the next run would only pause again.
    """
    from syncapp.services.schema_drift import sync_stored_drift  # schema_drift -> here

    with transaction.atomic():
        sync = sync_locked(sync.pk)
        if not sync.paused and not sync.paused_reason:
            return sync
        drifts = sync_stored_drift(sync=sync)
        if drifts:
            raise ValidationError(
                f"Not resumed: {' '.join(drift.message for drift in drifts)} Fix the mapping; or, if you fixed "
                "the field in the system, refresh its fields on the connection's page. Then resume."
            )
        sync.paused, sync.paused_reason = False, ""
        events = _sync_saved(sync=sync, user=user, action="sync.resumed")
        audit_record_many(events)
        resumed = bool(events)
    if resumed and sync.backfill_pending_fields:
        # The backfill that waited for the pause to end starts now, not at the next scheduled run.
        from syncapp.services.backfill import backfill_request  # backfill -> runs -> here

        backfill_request(sync=sync, hub_fields=sync.backfill_pending_fields, user=user)
    return sync


def sync_delete(*, sync: Sync, user) -> None:
    """Delete `sync` with its endpoints, mappings and schedule, auditing each."""
    with transaction.atomic():
        # The sync first, as the runs' services lock it; the audit chain's head last,
        # after the rows the delete cascades to (runs, conflicts).
        Sync.objects.select_for_update().filter(pk=sync.pk).first()
        events = [_deletion(instance=mapping, fields=MAPPING_FIELDS, noun="mapping", user=user)
                  for mapping in sync.mappings.all()]
        events += [_deletion(instance=endpoint, fields=ENDPOINT_FIELDS, noun="endpoint", user=user)
                   for endpoint in sync.endpoints.all()]
        events.append(_deletion(instance=sync, fields=SYNC_FIELDS, noun="sync", user=user))
        sync_schedule_delete(sync=sync)
        sync.delete()
        audit_record_many(events)


def endpoint_save(*, endpoint: SyncConnection, user) -> SyncConnection:
    """Create or update one connection's part in a sync (never its cursor) and audit it."""
    with transaction.atomic():
        audit_record_many(_saved(instance=endpoint, fields=ENDPOINT_FIELDS, noun="endpoint", user=user))
    return endpoint


def endpoint_delete(*, endpoint: SyncConnection, user) -> None:
    with transaction.atomic():
        event = _deletion(instance=endpoint, fields=ENDPOINT_FIELDS, noun="endpoint", user=user)
        endpoint.delete()
        audit_record_many([event])


def mapping_save(*, mapping: FieldMapping, user) -> FieldMapping:
    """Create or update a field mapping and audit it."""
    with transaction.atomic():
        audit_record_many(_saved(instance=mapping, fields=MAPPING_FIELDS, noun="mapping", user=user))
    return mapping


def mapping_delete(*, mapping: FieldMapping, user) -> None:
    with transaction.atomic():
        event = _deletion(instance=mapping, fields=MAPPING_FIELDS, noun="mapping", user=user)
        mapping.delete()
        audit_record_many([event])
