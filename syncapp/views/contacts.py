"""Contacts: the searchable list, one contact's page, and recording a consent statement.

Seeing contacts needs syncapp.view_contact; recording a statement needs
syncapp.change_contact. Every value shown came from some system and is escaped.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.models import AuditEvent
from syncapp.filters import ContactFilter, ContactPageForm
from syncapp.models import ConsentEvent, Contact, DuplicatePair, PendingPush
from syncapp.models.hub import HUB_FIELDS, ConsentState
from syncapp.pagination import row_count
from syncapp.selectors import contact_page
from syncapp.services.consent_ledger import InvalidConsentStatement, consent_statement_record
from syncapp.services.pending import systems_not_applicable
from syncapp.views.access import permission_needed

HISTORY_PER_PAGE = 25
# The newest consent statements shown; a flapping system can write many.
LEDGER_SHOWN = 100
NOTE_MAX_LENGTH = 300  # ConsentEvent.note


class ConsentStatementForm(forms.Form):
    """A consent statement a person made outside any system, recorded by a user."""

    channel = forms.ChoiceField(choices=ConsentEvent.Channel.choices)
    state = forms.ChoiceField(choices=[(value, label) for value, label in ConsentState.choices
                                       if value != ConsentState.UNKNOWN])
    explicit_opt_in = forms.BooleanField(
        required=False, label="The person explicitly opted in",
        help_text=("Only an explicit opt-in re-subscribes someone who opted out. It reaches the systems that "
                   "can take one (Mailchimp asks the person to confirm); the others keep their opt-out."),
    )
    note = forms.CharField(
        required=False, max_length=NOTE_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Where the statement comes from (a signed form, a call); kept in the ledger.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("explicit_opt_in"):
            if cleaned.get("state") != ConsentState.SUBSCRIBED:
                self.add_error("explicit_opt_in", "An explicit opt-in is a subscription: choose Subscribed.")
            if not cleaned.get("note", "").strip():
                self.add_error("note", "Say where the opt-in was given: it is the evidence for re-subscribing.")
        return cleaned


@require_GET
@permission_needed("syncapp.view_contact")
def contact_list(request):
    search = ContactFilter(request.GET, queryset=Contact.objects.all())
    pager = ContactPageForm(request.GET)
    query = request.GET.get("q", "").strip()
    context = {"filter": search, "query": query, "page": None}
    if not pager.is_valid():
        return render(request, "syncapp/contacts/list.html", context, status=400)
    # Counted up to a cap, then estimated: a count of a million contacts would cost more than the page.
    context["total"] = row_count(search.qs, filtered=bool(query))
    if query and not context["total"].exact:
        # Matches are many: the list's own order finds a page of them sooner.
        search = ContactFilter(request.GET, queryset=Contact.objects.all(), walk=True)
    context["page"] = contact_page(search.qs, after=pager.cleaned_data["after"], before=pager.cleaned_data["before"])
    return render(request, "syncapp/contacts/list.html", context)


@require_GET
@permission_needed("syncapp.view_contact")
def contact_detail(request, contact_id: int):
    contact = get_object_or_404(Contact, pk=contact_id)
    return _detail(request, contact, ConsentStatementForm())


@require_POST
@permission_needed("syncapp.change_contact")
def contact_consent_record(request, contact_id: int):
    contact = get_object_or_404(Contact, pk=contact_id)
    form = ConsentStatementForm(request.POST)
    if not form.is_valid():
        return _detail(request, contact, form, status=400)
    data = form.cleaned_data
    try:
        event = consent_statement_record(
            contact=contact, channel=data["channel"], state=data["state"], user=request.user,
            note=data["note"].strip(), explicit_opt_in=data["explicit_opt_in"],
        )
    except InvalidConsentStatement as error:
        form.add_error(None, str(error))
        return _detail(request, contact, form, status=400)
    channel = event.get_channel_display()
    if event.hub_state == event.state:
        messages.success(request, f"Recorded. {channel} consent is now {event.get_hub_state_display().lower()}.")
    else:
        # The most restrictive state won: say so, rather than let the user think it applied.
        messages.warning(
            request,
            f"Recorded, but {channel.lower()} consent stays {event.get_hub_state_display().lower()}: "
            "a statement does not loosen a restriction unless it is an explicit opt-in.",
        )
    return redirect("contact_detail", contact.pk)


def _detail(request, contact: Contact, form: ConsentStatementForm, status: int = 200):
    ledger = contact.consent_events.select_related("actor", "connection")
    history = Paginator(
        AuditEvent.objects.filter(contact_id__in=contact_ids_merged_into(contact.pk)).select_related("actor"),
        HISTORY_PER_PAGE,
    ).get_page(request.GET.get("history_page"))
    conflicts = list(contact.conflicts.select_related("sync", "resolved_by").order_by("-created_at", "-id"))
    context = {
        "contact": contact,
        "hub_values": _hub_values(contact),
        "attributes": sorted((contact.attributes or {}).items()),
        "links": _links(contact),
        "not_applicable": systems_not_applicable(contact),
        "ledger": ledger[:LEDGER_SHOWN],
        "ledger_total": ledger.count(),
        "open_conflicts": [conflict for conflict in conflicts if conflict.is_open],
        "closed_conflicts": [conflict for conflict in conflicts if not conflict.is_open],
        "pairs": DuplicatePair.objects.filter(Q(contact_a=contact) | Q(contact_b=contact),
                                              status=DuplicatePair.Status.OPEN),
        "history": history,
        "history_rows": [(event, _change_rows(event.changes)) for event in history],
        "form": form,
        "can_record_consent": request.user.has_perm("syncapp.change_contact"),
    }
    return render(request, "syncapp/contacts/detail.html", context, status=status)


def contact_ids_merged_into(contact_id: int) -> set[int]:
    """Return the contact's id and those of every contact merged into it, however long ago.

    Audit events keep the id of the contact they were about (the trail outlives it), so a
    survivor's history is its own and that of the contacts its merges joined to it.
    """
    ids, frontier = {contact_id}, [contact_id]
    while frontier:
        merged = {
            changes.get("merged_contact_id", [None, None])[1]
            for changes in AuditEvent.objects.filter(action="contact.merged", contact_id__in=frontier)
            .values_list("changes", flat=True)
        }
        frontier = [merged_id for merged_id in merged if isinstance(merged_id, int) and merged_id not in ids]
        ids.update(frontier)
    return ids


def _hub_values(contact: Contact) -> list[tuple[str, Any]]:
    shown = {"email_consent": contact.get_email_consent_display(), "sms_consent": contact.get_sms_consent_display()}
    return [(label, shown.get(name, getattr(contact, name))) for name, label in HUB_FIELDS.items()]


def _links(contact: Contact) -> list:
    """Return the contact's links, each with its merge base as items and the syncs that still owe it a push."""
    marks = PendingPush.objects.select_related("sync").order_by("sync__name")
    links = list(contact.links.select_related("connection").order_by("connection__name")
                 .prefetch_related(Prefetch("pending_pushes", queryset=marks, to_attr="marks")))
    for link in links:
        link.base_items = sorted((link.merge_base or {}).items())
        link.pending_syncs = [mark.sync for mark in link.marks]
    return links


def _change_rows(changes: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Return (name, old, new) per entry of an audit event's changes, values as text."""
    rows = []
    for name, value in sorted(changes.items()):
        if isinstance(value, list) and len(value) == 2:
            old, new = value
        else:
            old, new = None, value
        rows.append((name, _as_text(old), _as_text(new)))
    return rows


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
