"""What the mapping editor shows for one sync: read from the database, never from a system.

The systems' fields come from each connection's cached catalog; refreshing it is an
action of its own (mappings.discovery), so opening the editor never waits on a provider.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from connections.models import Connection
from connections.providers.base import FieldInfo, Provider
from connections.registry import UnknownProvider, provider_class
from mappings.hub_fields import HubField, hub_fields
from mappings.models import FieldCatalog, FieldMapping
from mappings.suggest import Suggestion, best_field
from mappings.validation import Findings, MappingDraft, Role, mapping_problems
from syncapp.models import Sync


@dataclass
class Catalog:
    connection: Connection
    # None: never discovered.
    fields: list[FieldInfo] | None
    refreshed_at: object = None
    error: str = ""


@dataclass
class MappedRow:
    mapping: FieldMapping
    findings: Findings


@dataclass
class HubFieldRow:
    field: HubField
    mapped: list[MappedRow] = field(default_factory=list)
    # (connection, suggestion) for the connections without a mapping of this field.
    suggestions: list[tuple[Connection, Suggestion]] = field(default_factory=list)
    # Connections that can create a field for it, having neither a mapping nor a suggestion.
    creatable_in: list[Connection] = field(default_factory=list)


@dataclass
class EditorState:
    connections: list[Connection]
    catalogs: list[Catalog]
    rows: list[HubFieldRow]
    drafts: list[MappingDraft]
    custom_attributes: list[str]
    # Email platforms the sync writes while no mapping brings any system's email consent
    # into the hub: their new members all get the sync's chosen status, and an opt-out
    # made elsewhere never reaches them.
    consent_unmapped_in: list[Connection] = field(default_factory=list)
    # Connection id -> what the sync does with it: a mapping's direction must fit it.
    roles: dict[int, Role] = field(default_factory=dict)

    @property
    def fields_by_connection(self) -> dict[int, list[FieldInfo] | None]:
        return {catalog.connection.pk: catalog.fields for catalog in self.catalogs}

    def role_lines(self) -> list[tuple[Connection, str]]:
        """Each connection with what the sync does with it, in words, for the mapping form."""
        words = {(True, True): "read and written", (True, False): "only read", (False, True): "only written",
                 (False, False): "neither read nor written"}
        return [(connection, words[(self.roles[connection.pk].read, self.roles[connection.pk].written)])
                for connection in self.connections]


# Hub kinds a new field in a system can take (consent and email have fixed fields there).
CREATABLE_KINDS = ("text", "phone")


def can_create_fields(connection: Connection) -> bool:
    """Return whether the connection's provider can add fields through its API (Mailchimp merge fields)."""
    try:
        cls = provider_class(connection.provider)
    except UnknownProvider:
        return False
    return cls.create_field is not Provider.create_field


def mapping_draft(mapping: FieldMapping) -> MappingDraft:
    return MappingDraft(
        connection_id=mapping.connection_id, hub_field=mapping.hub_field, external_field=mapping.external_field,
        direction=mapping.direction, transforms=mapping.transforms, is_owner=mapping.is_owner,
        conflict_policy=mapping.conflict_policy, pk=mapping.pk,
    )


def editor_state(*, sync: Sync) -> EditorState:
    """Return the hub's fields, each connection's catalog, the mappings per hub field and suggestions."""
    endpoints = list(sync.endpoints.select_related("connection").order_by("id"))
    connections = [endpoint.connection for endpoint in endpoints]
    roles = {endpoint.connection_id: Role(read=endpoint.read, written=endpoint.write) for endpoint in endpoints}
    stored = {item.connection_id: item for item in FieldCatalog.objects.filter(connection__in=connections)}
    catalogs = []
    for connection in connections:
        row = stored.get(connection.pk)
        discovered = row is not None and row.refreshed_at is not None
        fields = [FieldInfo.from_dict(item) for item in row.fields or []] if discovered else None
        catalogs.append(Catalog(connection, fields, row.refreshed_at if row else None, row.error if row else ""))
    fields_by_connection = {catalog.connection.pk: catalog.fields for catalog in catalogs}
    names = {connection.pk: connection.name for connection in connections}

    mappings = list(sync.mappings.select_related("connection").order_by("connection_id", "id"))
    drafts = [mapping_draft(mapping) for mapping in mappings]
    custom = sorted({mapping.hub_field for mapping in mappings if mapping.hub_field.startswith("attributes.")})
    rows = {item.name: HubFieldRow(item) for item in hub_fields(custom)}
    for mapping, draft in zip(mappings, drafts, strict=True):
        findings = mapping_problems(
            draft, catalog=fields_by_connection.get(mapping.connection_id), system=mapping.connection.name,
            siblings=[other for other in drafts if other.pk != draft.pk], system_names=names,
            role=roles.get(mapping.connection_id),
        )
        if fields_by_connection.get(mapping.connection_id) is None:
            # Nothing to check the field against yet: the catalog card says to refresh it.
            findings.errors.pop("external_field", None)
        row = rows.get(mapping.hub_field)
        if row is not None:
            row.mapped.append(MappedRow(mapping, findings))
    for row in rows.values():
        mapped_here = {item.mapping.connection_id for item in row.mapped}
        for catalog in catalogs:
            if catalog.connection.pk in mapped_here or not catalog.fields:
                continue
            taken = [m.external_field for m in mappings if m.connection_id == catalog.connection.pk]
            suggestion = best_field(hub_name=row.field.name, hub_kind=row.field.kind, fields=catalog.fields,
                                    taken=taken)
            if suggestion is not None:
                row.suggestions.append((catalog.connection, suggestion))
            elif row.field.kind in CREATABLE_KINDS and can_create_fields(catalog.connection):
                row.creatable_in.append(catalog.connection)
    return EditorState(connections, catalogs, list(rows.values()), drafts, custom,
                       consent_unmapped_in=_consent_unmapped_in(sync, mappings), roles=roles)


def _consent_unmapped_in(sync: Sync, mappings: list[FieldMapping]) -> list[Connection]:
    """Return the written email platforms of `sync` when no mapping reads email consent into the hub."""
    if any(mapping.hub_field == "email_consent" and mapping.reads for mapping in mappings):
        return []
    platforms = []
    for endpoint in sync.endpoints.select_related("connection").filter(write=True).order_by("id"):
        try:
            offers_status = bool(provider_class(endpoint.connection.provider).new_record_consent_states)
        except UnknownProvider:
            offers_status = False
        if offers_status:
            platforms.append(endpoint.connection)
    return platforms
