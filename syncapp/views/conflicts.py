"""The review queue: conflicts waiting for a reviewer, one conflict's page, and resolving them.

Seeing the queue needs syncapp.view_conflict; resolving needs syncapp.change_conflict.
"""
from __future__ import annotations

import hashlib
import json

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from syncapp.filters import ConflictFilter
from syncapp.models import Conflict, Sync
from syncapp.models.hub import hub_field_label
from syncapp.security.inputs import BoundedModelMultipleChoiceField
from syncapp.selectors import conflict_list, contact_recent_events
from syncapp.services.conflicts import (
    KEEP_HUB,
    KEEP_SIDE,
    KEEP_TYPED,
    Choice,
    ConflictClosed,
    InvalidResolution,
    conflict_outcome,
    conflict_resolve,
    conflicts_resolve_many,
)
from syncapp.views.access import permission_needed

QUEUE_PAGE_SIZE = 50
REASON_MAX_LENGTH = 2000
# Longer than any hub text column; hub_value_check enforces each field's own limit.
TYPED_MAX_LENGTH = 1000
# Refusals listed in the message after a bulk resolution; the rest are counted.
REFUSALS_LISTED = 10


def _parse_keep(text: str) -> tuple[str, int | None]:
    """Return (keep, connection id) from a form's "side:<id>", "hub" or "typed"."""
    keep, _, connection_id = text.partition(":")
    if keep == KEEP_SIDE and connection_id.isdigit():
        return keep, int(connection_id)
    if keep in (KEEP_HUB, KEEP_TYPED) and not connection_id:
        return keep, None
    raise ValidationError("Choose which value to keep.")


class ResolveForm(forms.Form):
    """One decision: which value to keep (a system's, the hub's, or typed), and why."""

    keep = forms.CharField(error_messages={"required": "Choose which value to keep."})
    typed_value = forms.CharField(required=False, max_length=TYPED_MAX_LENGTH, label="Value to keep")
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why, for the audit trail."},
        help_text="Recorded in the audit trail with your name.",
    )
    # The digest of the values the page showed (see sides_digest).
    seen = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_keep(self) -> tuple[str, int | None]:
        return _parse_keep(self.cleaned_data["keep"])

    def clean(self):
        cleaned = super().clean()
        keep = cleaned.get("keep")
        if keep and keep[0] == KEEP_TYPED and not cleaned.get("typed_value"):
            self.add_error("typed_value", "Type the value to keep.")
        return cleaned

    def choice(self) -> Choice:
        keep, connection_id = self.cleaned_data["keep"]
        if keep == KEEP_SIDE:
            return Choice.side(connection_id)
        if keep == KEEP_HUB:
            return Choice.hub()
        return Choice.typed(self.cleaned_data["typed_value"])


class BulkResolveForm(ResolveForm):
    """The same decision for every selected conflict."""

    conflicts = BoundedModelMultipleChoiceField(
        queryset=Conflict.objects.all(),
        error_messages={"required": "Select the conflicts to resolve."},
    )


@require_GET
@permission_needed("syncapp.view_conflict")
def conflict_queue(request):
    conflicts = ConflictFilter(request.GET or None, queryset=conflict_list())
    page = Paginator(conflicts.qs, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    # The filters without the page number, for the pager's and the bulk form's links.
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter": conflicts,
        "page": page,
        "query": query.urlencode(),
        "keep_choices": _bulk_keep_choices(page.object_list),
        "can_resolve": request.user.has_perm("syncapp.change_conflict"),
    }
    return render(request, "syncapp/conflicts/queue.html", context)


@require_GET
@permission_needed("syncapp.view_conflict")
def conflict_detail(request, conflict_id: int):
    conflict = get_object_or_404(conflict_list(), pk=conflict_id)
    return _detail(request, conflict, ResolveForm())


@require_POST
@permission_needed("syncapp.change_conflict")
def conflict_resolve_view(request, conflict_id: int):
    conflict = get_object_or_404(conflict_list(), pk=conflict_id)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _detail(request, conflict, form, status=400)
    if form.cleaned_data["seen"] and form.cleaned_data["seen"] != sides_digest(conflict):
        form.add_error(None, "A run read new values from the systems since the page was loaded. "
                             "Here they are: decide again.")
        return _detail(request, conflict, form, status=409)
    try:
        value, resolution = form.choice().pick(conflict)
        resolved = conflict_resolve(
            conflict=conflict, value=value, resolution=resolution, user=request.user,
            reason=form.cleaned_data["reason"],
        )
    except ConflictClosed:
        messages.warning(request, "This conflict was closed meanwhile; nothing was changed.")
        return redirect("conflict_detail", conflict.pk)
    except InvalidResolution as error:
        form.add_error("typed_value" if form.cleaned_data["keep"][0] == KEEP_TYPED else None, str(error))
        return _detail(request, conflict, form, status=400)
    messages.success(request, f"Resolved {_described(resolved)}. {conflict_outcome(resolved)}. "
                              f"{_delivery(resolved.sync)}")
    return redirect("conflict_queue")


@require_POST
@permission_needed("syncapp.change_conflict")
def conflicts_resolve_bulk(request):
    form = BulkResolveForm(request.POST)
    back = _queue_url(request.POST.get("next", ""), request)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(back)
    outcome = conflicts_resolve_many(
        conflicts=form.cleaned_data["conflicts"].select_related("contact", "sync"),
        choice=form.choice(),
        user=request.user,
        reason=form.cleaned_data["reason"],
    )
    if outcome.resolved:
        count = len(outcome.resolved)
        syncs = {conflict.sync_id: conflict.sync for conflict in outcome.resolved}.values()
        messages.success(request, f"Resolved {count} conflict{'s' if count != 1 else ''}. "
                                  + " ".join(_delivery(sync) for sync in syncs))
    for conflict, why in outcome.refused[:REFUSALS_LISTED]:
        messages.warning(request, f"Not resolved: {_described(conflict)}. {why}")
    if len(outcome.refused) > REFUSALS_LISTED:
        messages.warning(request, f"{len(outcome.refused) - REFUSALS_LISTED} more were not resolved.")
    return redirect(back)


def sides_digest(conflict: Conflict) -> str:
    """Return a digest of the systems' values, to tell whether a run changed them since a page showed them.

    Values only: a run that reads the same value again with a newer change time has
    changed nothing the reviewer decides on.
    """
    values = sorted([side.get("connection_id"), side.get("value")] for side in conflict.sides)
    text = json.dumps(values, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _detail(request, conflict: Conflict, form: ResolveForm, status: int = 200):
    contact = conflict.contact
    context = {
        "conflict": conflict,
        "field_label": hub_field_label(conflict.hub_field),
        "sides": [{**side, "keep": f"{KEEP_SIDE}:{side['connection_id']}"} for side in conflict.sides],
        "current_value": contact.hub_value(conflict.hub_field),
        "outcome": None if conflict.is_open else conflict_outcome(conflict),
        "contact_url": reverse("contact_detail", args=[contact.pk]),
        "history": contact_recent_events(contact_id=contact.pk),
        "form": form,
        "sides_digest": sides_digest(conflict),
        "can_resolve": conflict.is_open and request.user.has_perm("syncapp.change_conflict"),
    }
    return render(request, "syncapp/conflicts/detail.html", context, status=status)


def _bulk_keep_choices(conflicts) -> list[tuple[str, str]]:
    """Return the bulk form's choices: each system seen on the page, the hub, a typed value."""
    systems: dict[int, str] = {}
    for conflict in conflicts:
        for side in conflict.sides:
            systems.setdefault(side["connection_id"], side["system"])
    choices = [(f"{KEEP_SIDE}:{connection_id}", f"Keep {name}'s value") for connection_id, name in systems.items()]
    return [*choices, (KEEP_HUB, "Keep the hub's value"), (KEEP_TYPED, "Type a value")]


def _described(conflict: Conflict) -> str:
    return f"{hub_field_label(conflict.hub_field)} of {conflict.contact}"


def _delivery(sync: Sync) -> str:
    if sync.paused:
        return f"The sync “{sync}” is paused: the decision reaches the systems once it is resumed."
    return f"A run of “{sync}” was requested to write the decision to every system."


def _queue_url(candidate: str, request) -> str:
    """Return the queue page the bulk form came from (its filters), or the queue itself."""
    queue = reverse("conflict_queue")
    if candidate.startswith(queue) and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return queue
