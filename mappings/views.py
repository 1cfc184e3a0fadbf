"""The mapping editor: fields side by side, mappings per hub field, the mapping form, new fields, a preview."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from connections.models import Connection
from mappings.discovery import DiscoveryFailed, field_create
from mappings.editor import can_create_fields, editor_state
from mappings.forms import (
    CUSTOM,
    FieldCreateForm,
    MappingForm,
    TransformFormSet,
    external_choice,
    transform_initial,
)
from mappings.hub_fields import ATTRIBUTE_PREFIX, hub_field, is_hub_field
from mappings.models import FieldMapping
from mappings.preview import PreviewForm, record_preview
from mappings.services import mapping_editor_save
from syncapp.models import Sync
from syncapp.models.hub import hub_field_label
from syncapp.services.schema_drift import connection_fields_refresh
from syncapp.services.syncs import mapping_delete
from syncapp.views.access import marketer_required


@marketer_required
def mapping_editor(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    return render(request, "mappings/editor.html", {"sync": sync, "state": editor_state(sync=sync)})


@marketer_required
def mapping_add(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    return _mapping_form_page(request, sync, FieldMapping(sync=sync))


@marketer_required
def mapping_edit(request, sync_id: int, mapping_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    mapping = get_object_or_404(FieldMapping, pk=mapping_id, sync=sync)
    return _mapping_form_page(request, sync, mapping)


def _mapping_form_page(request, sync: Sync, mapping: FieldMapping):
    state = editor_state(sync=sync)
    if not state.connections:
        messages.error(request, "Add a connection to this sync before mapping fields.")
        return redirect("mapping_editor", sync.pk)
    adding = mapping._state.adding
    siblings = [draft for draft in state.drafts if draft.pk != mapping.pk]
    options = {
        "connections": state.connections, "catalogs": state.fields_by_connection, "siblings": siblings,
        "custom_attributes": state.custom_attributes, "mapping_pk": mapping.pk, "roles": state.roles,
    }
    if request.method == "POST":
        formset = TransformFormSet(request.POST, prefix="chain")
        chain = formset.specs() if formset.is_valid() else None
        form = MappingForm(request.POST, chain=chain, **options)
        if request.POST.get("action") == "update" and chain is not None:
            # Re-show the chain in its new order, with a blank row for one more step; nothing saved.
            formset = TransformFormSet(initial=transform_initial(chain), prefix="chain")
            form = MappingForm(initial=request.POST.dict(), **options)
        elif form.is_valid() and chain is not None:
            return _mapping_save(request, sync, mapping, form, chain)
    else:
        form = MappingForm(initial=_form_initial(request, mapping, state), **options)
        formset = TransformFormSet(initial=transform_initial(mapping.transforms if not adding else []), prefix="chain")
    context = {
        "sync": sync, "state": state, "form": form, "formset": formset, "mapping": mapping, "adding": adding,
        "creatable": [connection for connection in state.connections if can_create_fields(connection)],
    }
    return render(request, "mappings/mapping_form.html", context)


def _mapping_save(request, sync: Sync, mapping: FieldMapping, form: MappingForm, chain: list):
    cleaned = form.cleaned_data
    mapping.connection_id = cleaned["connection"]
    mapping.hub_field = cleaned["hub_field"]
    mapping.external_field = cleaned["external_field"]
    mapping.external_type = form.catalog_field.type if form.catalog_field else ""
    mapping.direction = cleaned["direction"]
    mapping.transforms = chain
    mapping.is_owner = cleaned["is_owner"]
    mapping.conflict_policy = cleaned["conflict_policy"]
    mapping.never_overwrite_with_empty = cleaned["never_overwrite_with_empty"]
    try:
        saved = mapping_editor_save(mapping=mapping, user=request.user)
    except ValidationError as error:
        # The model's own checks (lengths) after the form's: shown, nothing saved.
        for message in error.messages:
            messages.error(request, message)
        return redirect("mapping_editor", sync.pk)
    label = hub_field_label(mapping.hub_field)
    text = format_html("Saved: {} {} ↔ {}.", mapping.connection.name, mapping.external_field, label)
    if saved.backfill is not None:
        run_url = reverse("run_detail", args=(sync.pk, saved.backfill.pk))
        text = format_html('{} Backfill queued: <a href="{}">run #{}</a> will fill {} for every linked record.',
                           text, run_url, saved.backfill.pk, label)
    elif saved.changed and not saved.backfill_needed:
        text = format_html("{} The sync's first run reads every record, and fills {} with them.", text, label)
    elif saved.changed:
        text = format_html("{} Backfill waiting: {} is filled for every linked record by the next run{}.", text, label,
                           " once the sync is resumed" if sync.paused else ", when the run under way ends")
    else:
        text = format_html("Nothing changed in the mapping of {}.", label)
    messages.success(request, text)
    for warning in form.warnings:
        messages.warning(request, warning)
    return redirect("mapping_editor", sync.pk)


def _form_initial(request, mapping: FieldMapping, state) -> dict:
    if not mapping._state.adding:
        return {
            "connection": mapping.connection_id, "hub_field": mapping.hub_field,
            "external_field": external_choice(mapping.connection_id, mapping.external_field),
            "direction": mapping.direction, "is_owner": mapping.is_owner,
            "conflict_policy": mapping.conflict_policy,
            "never_overwrite_with_empty": mapping.never_overwrite_with_empty,
        }
    # Links from suggestions and from a new merge field preselect their choices.
    initial = {"never_overwrite_with_empty": True}
    connection = request.GET.get("connection", "")
    chosen = state.connections[0].pk
    if connection.isdigit() and int(connection) in {item.pk for item in state.connections}:
        chosen = initial["connection"] = int(connection)
        external = request.GET.get("external_field", "")
        if external:
            initial["external_field"] = external_choice(int(connection), external)
    # The first system listed is the one chosen unless a link preselects another.
    initial["direction"] = state.roles[chosen].widest_direction
    hub_field = request.GET.get("hub_field", "")
    if hub_field:
        if hub_field.startswith("attributes."):
            initial["hub_field"], initial["attribute_name"] = CUSTOM, hub_field.removeprefix("attributes.")
        else:
            initial["hub_field"] = hub_field
    return initial


@require_POST
@marketer_required
def mapping_delete_view(request, sync_id: int, mapping_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    mapping = get_object_or_404(FieldMapping.objects.select_related("connection"), pk=mapping_id, sync=sync)
    mapping_delete(mapping=mapping, user=request.user)
    messages.success(request, f"Deleted the mapping of {hub_field_label(mapping.hub_field)} for "
                              f"{mapping.connection.name}. Values already synced stay where they are.")
    return redirect("mapping_editor", sync.pk)


def _sync_connection(sync: Sync, connection_id: int) -> Connection:
    return get_object_or_404(Connection, pk=connection_id, endpoints__sync=sync)


def _back(request, sync: Sync) -> HttpResponseRedirect:
    """Return to the page the action came from (the editor or the mapping form) within this sync."""
    target = request.POST.get("next", "")
    editor = reverse("mapping_editor", args=[sync.pk])
    if target.startswith(editor) and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(editor)


@require_POST
@marketer_required
def fields_refresh(request, sync_id: int, connection_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    connection = _sync_connection(sync, connection_id)
    # As the connection page's refresh: a mapped field found gone or retyped pauses
    # every sync that maps it, this one or another, before any of them writes.
    try:
        catalog, paused = connection_fields_refresh(connection=connection, user=request.user)
    except DiscoveryFailed as error:
        messages.error(request, str(error))
        return _back(request, sync)
    messages.success(request, f"{connection.name} reported {len(catalog.fields)} fields.")
    for paused_sync in sorted(paused, key=lambda item: item.pk != sync.pk):
        messages.warning(request, format_html(
            '<a href="{}"><bdi>{}</bdi></a>{} is paused. {}', reverse("sync_detail", args=[paused_sync.pk]),
            paused_sync.name, " (this sync)" if paused_sync.pk == sync.pk else "", paused_sync.paused_reason,
        ))
    return _back(request, sync)


@marketer_required
def field_create_view(request, sync_id: int, connection_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    connection = _sync_connection(sync, connection_id)
    if not can_create_fields(connection):
        messages.error(request, f"{connection.name} fields cannot be created from Syncapp.")
        return redirect("mapping_editor", sync.pk)
    if request.method == "POST":
        form = FieldCreateForm(request.POST)
        if form.is_valid():
            try:
                field = field_create(connection=connection, label=form.cleaned_data["label"],
                                     kind=form.cleaned_data["kind"], user=request.user)
            except DiscoveryFailed as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, f"Created {field.name} ({field.label}) in {connection.name}.")
                query = {"connection": connection.pk, "external_field": field.name}
                hub_field = form.cleaned_data["for_hub_field"]
                if hub_field:
                    query["hub_field"] = hub_field
                return redirect(f"{reverse('mapping_add', args=[sync.pk])}?{urlencode(query)}")
    else:
        form = FieldCreateForm(initial=_field_create_initial(request.GET.get("hub_field", "")))
    return render(request, "mappings/field_create.html", {"sync": sync, "connection": connection, "form": form})


def _field_create_initial(name: str) -> dict:
    """Name and kind a new field after the hub field it is for, when that is a hub field."""
    if not is_hub_field(name):
        return {}
    field = hub_field(name)
    label = name.removeprefix(ATTRIBUTE_PREFIX).replace("_", " ").capitalize() if name.startswith(
        ATTRIBUTE_PREFIX) else field.label
    return {"for_hub_field": name, "label": label[:100], "kind": field.kind}


@marketer_required
def mapping_preview(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    form = PreviewForm(request.GET or None, sync=sync)
    preview = None
    if form.is_bound and form.is_valid() and form.contact is not None:
        preview = record_preview(sync=sync, contact=form.contact)
    return render(request, "mappings/preview.html", {"sync": sync, "form": form, "preview": preview})

