"""Schema drift: pause a sync whose mapped fields vanished or changed type, before it writes anything.

A run checks through `RunSchemaCheck` (see `runs.run_execute`): at its start it asks the
systems whose fields were last seen more than SCHEMA_CHECK_INTERVAL_SECONDS ago (an hour
by default) and compares the others' stored fields; before its first write to any
system it asks every system it has not asked yet. A run with nothing to write so costs
no call for fields within the interval, and no run writes before it has asked every
system of its sync. Reading a field that vanished meanwhile does no harm: a record
without a mapped field is read without it, never as emptied (services.incoming).
Fields are also checked whenever a connection's fields are refreshed from its page
(`connection_fields_refresh`). A drifted sync is paused with a reason naming each
field and its system (shown on the sync page and the dashboard), through
`syncs.sync_pause`, so it is audited, by Syncapp, and its schedule removed; its owner
gets an email. A sync a person had paused already stays paused and gets the reason
too: resuming it would run into the drift. The cursors are left alone: once the
mapping (or the field) is fixed, resuming the sync reads on from where it stopped, and
pushes what its last run read and could not write (the pending marks stay);
`syncs.sync_resume` refuses while the fields last seen (`sync_stored_drift`) still
differ from the mappings.
"""
from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Sequence
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection
from connections.providers.base import FieldInfo, Provider
from mappings.discovery import DiscoveryFailed, field_catalog_refresh
from mappings.drift import Drift, MappedField, drift_message, schema_drift
from mappings.models import FieldCatalog, FieldMapping
from syncapp.models import Sync, SyncRun
from syncapp.services.syncs import sync_pause

logger = logging.getLogger(__name__)

# The audit trail's name for Syncapp acting on its own (as the consent ledger's).
SYNCAPP = "Syncapp"


class SchemaDrifted(Exception):
    """A run found drift and paused its sync; the message is the pause reason."""

    def __init__(self, drifts: Sequence[Drift]):
        super().__init__(drift_message(drifts))
        self.drifts = list(drifts)


def sync_schema_check(*, sync: Sync, run: SyncRun | None, provider_for: Callable[..., Provider]) -> list[Drift]:
    """Discover the fields of every system the sync maps, refresh their catalogs and compare.

    `provider_for(connection)` returns the client to ask (a run passes its own, so the
    calls count with the run's). On drift the sync is paused and its owner emailed;
    the drifts are returned. A system that cannot list its fields raises the
    provider's error, as any failed read in a run does.
    """
    check = RunSchemaCheck(sync=sync, run=run, provider_for=provider_for)
    try:
        check.before_writes()
    except SchemaDrifted as drifted:
        return drifted.drifts
    return []


class RunSchemaCheck:
    """Ask a run's systems for their fields when due, and always before the run writes.

    `start()` asks the systems whose catalog was refreshed more than `interval_seconds`
    ago (SCHEMA_CHECK_INTERVAL_SECONDS; never refreshed counts as long ago) and compares
    every mapped system's fields, the stored ones for the others: a run with nothing to
    write asks each system for its fields at most once per interval. `before_writes()`
    asks every system not asked yet in this run; the run calls it before each batch it
    sends, so nothing is written to a field that vanished or changed type since it was
    last seen. Both pause the sync and raise SchemaDrifted on drift, and raise the
    provider's error for a system that cannot list its fields.
    """

    def __init__(self, *, sync: Sync, run: SyncRun | None, provider_for: Callable[..., Provider],
                 interval_seconds: float | None = None):
        self.sync = sync
        self.run = run
        self.provider_for = provider_for
        self.interval = timedelta(seconds=settings.SCHEMA_CHECK_INTERVAL_SECONDS if interval_seconds is None
                                  else interval_seconds)
        # Only the systems the sync reads or writes: a run has clients for those alone.
        endpoints = set(sync.endpoints.values_list("connection_id", flat=True))
        self.mappings = list(sync.mappings.filter(connection_id__in=endpoints).select_related("connection"))
        self.connections = {mapping.connection_id: mapping.connection for mapping in self.mappings}
        self.asked: set[int] = set()

    @property
    def complete(self) -> bool:
        """Whether every mapped system was asked for its fields in this run."""
        return self.asked >= set(self.connections)

    def start(self) -> None:
        """Ask the systems whose fields are due for a check; compare every system's fields.

        A system whose stored fields differ from the mappings is asked too: a mapping
        saved since (to a field created in the system meanwhile) is judged by what the
        system says now, and only what it says now pauses a sync.
        """
        since = timezone.now() - self.interval
        stored = {catalog.connection_id: [FieldInfo.from_dict(row) for row in catalog.fields]
                  for catalog in FieldCatalog.objects.filter(connection_id__in=list(self.connections),
                                                             refreshed_at__gt=since)}
        fields = {connection_id: found for connection_id, found in stored.items()
                  if not _drifts(self.mappings, {connection_id: found})}
        fields.update(self._ask([pk for pk in self.connections if pk not in fields]))
        self._compare(fields)

    def before_writes(self) -> None:
        """Ask every system not asked yet in this run; compare what they said."""
        if self.complete:
            return
        self._compare(self._ask([pk for pk in self.connections if pk not in self.asked]))

    def _ask(self, connection_ids: Sequence[int]) -> dict[int, list[FieldInfo]]:
        fields: dict[int, list[FieldInfo]] = {}
        for connection_id in connection_ids:
            connection = self.connections[connection_id]
            try:
                catalog = field_catalog_refresh(connection=connection, provider=self.provider_for(connection))
            except DiscoveryFailed as failed:
                raise failed.__cause__ from None
            self.asked.add(connection_id)
            fields[connection_id] = [FieldInfo.from_dict(row) for row in catalog.fields]
        return fields

    def _compare(self, fields: dict[int, list[FieldInfo]]) -> None:
        if not fields:
            return
        drifts = _apply(sync=self.sync, mappings=self.mappings, fields=fields, run=self.run)
        if drifts:
            raise SchemaDrifted(drifts)


def connection_fields_refresh(*, connection: Connection, user) -> tuple[FieldCatalog, list[Sync]]:
    """Refresh the connection's fields (see `field_catalog_refresh`) and pause every sync they drifted from.

    Every sync mapping the connection is checked, paused ones included: a sync a person
    paused keeps its pause and gets the drift as its reason. `user` is who asked for
    the refresh; None when Syncapp did. Return the catalog and the syncs whose pause
    or reason changed now. Raise DiscoveryFailed as the refresh does.
    """
    catalog = field_catalog_refresh(connection=connection, user=user)
    current = [FieldInfo.from_dict(row) for row in catalog.fields]
    paused = []
    syncs = Sync.objects.filter(mappings__connection=connection).distinct().order_by("name")
    for sync in syncs:
        mappings = list(sync.mappings.filter(connection=connection).select_related("connection"))
        reason_before = sync.paused_reason
        if _apply(sync=sync, mappings=mappings, fields={connection.pk: current}, run=None, user=user) and (
                sync.paused_reason != reason_before):
            paused.append(sync)
    return catalog, paused


def sync_stored_drift(*, sync: Sync) -> list[Drift]:
    """Return how the sync's mappings differ from the fields each system reported last (its stored catalog).

    Asks no system. A connection whose fields were never discovered is not judged here:
    a run asks it at its start.
    """
    mappings = list(sync.mappings.filter(connection__endpoints__sync=sync).select_related("connection"))
    catalogs = FieldCatalog.objects.filter(connection_id__in={mapping.connection_id for mapping in mappings},
                                           refreshed_at__isnull=False)
    fields = {catalog.connection_id: [FieldInfo.from_dict(row) for row in catalog.fields] for catalog in catalogs}
    return _drifts(mappings, fields)


def _drifts(mappings: Sequence[FieldMapping], fields: dict[int, list[FieldInfo]]) -> list[Drift]:
    drifts: list[Drift] = []
    for connection_id, current in fields.items():
        mapped = [MappedField(mapping.connection.name, mapping.external_field, mapping.external_type)
                  for mapping in mappings if mapping.connection_id == connection_id]
        drifts += schema_drift(mapped, current)
    return drifts


def _apply(*, sync: Sync, mappings: Sequence[FieldMapping], fields: dict[int, list[FieldInfo]],
           run: SyncRun | None, user=None) -> list[Drift]:
    """Compare, then pause the sync on drift, or record the types of mappings saved without one."""
    drifts = _drifts(mappings, fields)
    if drifts:
        _pause(sync=sync, drifts=drifts, run=run, user=user)
        return drifts
    # Mappings saved before types were kept get theirs now, so that a later type change is seen.
    for mapping in mappings:
        if mapping.external_type:
            continue
        found = next((f for f in fields.get(mapping.connection_id, ()) if f.name == mapping.external_field), None)
        if found is not None and found.type:
            FieldMapping.objects.filter(pk=mapping.pk, external_type="").update(external_type=found.type[:50])
    return []


def _pause(*, sync: Sync, drifts: Sequence[Drift], run: SyncRun | None, user=None) -> None:
    """Pause the sync, or give a paused one this reason; mail its owner when the reason is news.

    Syncapp decides the pause (audited as its own, with the person whose refresh found
    the drift, if any). The owner hears once per reason: the same drift found again by
    the next refresh or run mails nobody.
    """
    reason = drift_message(drifts)
    with transaction.atomic():
        reason_before = Sync.objects.filter(pk=sync.pk).values_list("paused_reason", flat=True).first()
        paused = sync_pause(sync=sync, user=user, reason=reason, system=SYNCAPP)
        if paused.paused_reason != reason_before:
            transaction.on_commit(lambda: _mail_owner(sync=paused, drifts=drifts, run=run))
    sync.paused, sync.paused_reason = paused.paused, paused.paused_reason


def _mail_owner(*, sync: Sync, drifts: Sequence[Drift], run: SyncRun | None) -> None:
    """Tell the sync's owner why it paused; a mail that cannot be sent is logged, never fatal."""
    owner = sync.owner
    if owner is None or not owner.email:
        logger.warning("Sync %s paused for schema drift; it has no owner with an email address to tell.", sync.pk)
        return
    lines = [
        f"The sync “{sync.name}” is paused before writing anything, because a field it maps changed:",
        "",
        *(f"- {drift.system}: {drift.field} {drift.change}" for drift in drifts),
        "",
        "Fix the mapping (or the field in that system), then resume the sync: it continues from where it stopped.",
    ]
    if run is not None:
        lines.append(f"Run #{run.pk} stopped here.")
    base = getattr(settings, "SITE_URL", "")
    lines.append(f"Sync page: {base}{reverse('sync_detail', args=[sync.pk])}")
    try:
        send_mail(f"Sync paused: {sync.name}", "\n".join(lines), None, [owner.email])
    except (OSError, smtplib.SMTPException):
        logger.exception("The drift alert for sync %s could not be mailed to its owner.", sync.pk)
