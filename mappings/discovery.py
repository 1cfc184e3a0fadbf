"""Field discovery: each connection's fields, cached in its FieldCatalog for the pages and the editor.

Providers are reached through the registry only (`connections.registry.provider_for`),
so every call goes through the guarded HTTP layer.
"""
from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from connections.models import Connection
from connections.providers.base import FIELD_KINDS, FieldInfo, Provider, ProviderError
from connections.redaction import redact
from connections.registry import UnknownProvider, provider_for
from mappings.models import FieldCatalog
from syncapp.engine.text import clean_text, clean_value


class DiscoveryFailed(Exception):
    """A system could not report its fields, or refused a new one; the message says why (redacted)."""


def _secrets(connection: Connection) -> tuple[str, ...]:
    return tuple(value for value in (connection.api_key, connection.access_token, connection.refresh_token) if value)


def field_catalog_refresh(
    *, connection: Connection, user=None, provider: Provider | None = None,
) -> FieldCatalog:
    """Ask the system for its fields and store them in the connection's catalog.

    `provider` is a client already built for the connection (a run's own, so that its
    calls count with the run's); otherwise one is built and closed here. A failure is
    stored, redacted, beside the fields last seen, and raised as DiscoveryFailed. A
    change in the field list is audited with the names added and removed.
    """
    own = provider is None
    try:
        if own:
            provider = provider_for(connection)
        fields = provider.discover_fields()
    except UnknownProvider as error:
        raise DiscoveryFailed(str(error)) from None
    except ProviderError as error:
        message = clean_text(redact(f"{connection.name} could not list its fields: {error}", _secrets(connection)))
        with transaction.atomic():
            catalog, _ = FieldCatalog.objects.select_for_update().get_or_create(connection=connection)
            catalog.error = message
            catalog.save(update_fields=["error"])
        raise DiscoveryFailed(message) from error
    finally:
        if own and provider is not None:
            close = getattr(provider.http, "close", None)
            if close is not None:
                close()
    return field_catalog_store(connection=connection, fields=fields, user=user)


def field_catalog_store(*, connection: Connection, fields: list[FieldInfo], user=None) -> FieldCatalog:
    """Store `fields` as the connection's catalog, cleaned for the database; audit what changed."""
    # Labels and options are whatever the system sends; PostgreSQL's jsonb refuses NUL
    # bytes and lone surrogates, so they are cleaned as contact values are.
    rows = clean_value([field.as_dict() for field in fields])
    with transaction.atomic():
        catalog, _ = FieldCatalog.objects.select_for_update().get_or_create(connection=connection)
        before = {row["name"]: row for row in catalog.fields or []}
        after = {row["name"]: row for row in rows}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(name for name in set(before) & set(after) if before[name] != after[name])
        catalog.fields, catalog.refreshed_at, catalog.error = rows, timezone.now(), ""
        catalog.save(update_fields=["fields", "refreshed_at", "error"])
        # The first discovery is news too; a refresh that finds the same fields is not.
        if added or removed or changed:
            audit_record(
                action="connection.fields_refreshed",
                obj=connection,
                actor=user,
                system=connection.name,
                changes={"fields_added": [None, added], "fields_removed": [removed, None],
                         "fields_changed": [changed, changed]} if before else {"fields": [None, sorted(after)]},
            )
    return catalog


def field_catalog_fields(*, connection: Connection, refresh_if_missing: bool = True) -> list[FieldInfo]:
    """Return the connection's cached fields; discover them first when never discovered.

    A failed first discovery raises DiscoveryFailed; later, the fields last seen are
    returned until a refresh succeeds.
    """
    catalog = FieldCatalog.objects.filter(connection=connection).first()
    if (catalog is None or catalog.refreshed_at is None) and refresh_if_missing:
        catalog = field_catalog_refresh(connection=connection)
    if catalog is None:
        return []
    return [FieldInfo.from_dict(row) for row in catalog.fields or []]


def field_create(
    *, connection: Connection, label: str, kind: str, user,
    provider_for: Callable[..., Provider] = provider_for,
) -> FieldInfo:
    """Create a field in the system, refresh the catalog and audit it; return the field as discovered.

    Raise DiscoveryFailed with the system's reason when it refuses (an unsupported kind,
    a label it does not take), and ValueError for a kind Syncapp does not know.
    """
    label = (label or "").strip()
    if not label:
        raise DiscoveryFailed("A new field needs a name.")
    if kind not in FIELD_KINDS:
        raise ValueError(f"Unknown field kind {kind!r}; known: {', '.join(FIELD_KINDS)}.")
    try:
        provider = provider_for(connection)
    except UnknownProvider as error:
        raise DiscoveryFailed(str(error)) from None
    except ProviderError as error:
        raise DiscoveryFailed(redact(f"{connection.name} did not create the field {label!r}: {error}",
                                     _secrets(connection))) from error
    try:
        try:
            field = provider.create_field(label=label, kind=kind)
        except ProviderError as error:
            raise DiscoveryFailed(redact(f"{connection.name} did not create the field {label!r}: {error}",
                                         _secrets(connection))) from error
        with transaction.atomic():
            audit_record(
                action="connection.field_created",
                obj=connection,
                actor=user,
                system=connection.name,
                changes=clean_value({"field": [None, field.name], "label": [None, field.label],
                                     "type": [None, field.type]}),
            )
        try:
            field_catalog_refresh(connection=connection, user=user, provider=provider)
        except DiscoveryFailed:
            # The field exists now; the catalog keeps the reason it could not be re-read,
            # and the next refresh lists the field.
            pass
    finally:
        close = getattr(provider.http, "close", None)
        if close is not None:
            close()
    return field
