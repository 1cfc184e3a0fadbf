"""The audit trail's pages: the filtered trail a page at a time, one event, and the export.

Reading the trail needs audit.view_auditevent: compliance staff read all of it, marketers
and reviewers the events of their syncs (audit.selectors.trail_events). Exporting it is
compliance's alone. Every value shown came from some system or user and is escaped.
"""
from __future__ import annotations

from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from audit.exports import CONTENT_TYPES, trail_export
from audit.filters import AuditEventFilter, TrailPageForm
from audit.selectors import trail_events, trail_page
from syncapp.models import SyncRun
from syncapp.roles import COMPLIANCE, user_has_role
from syncapp.views.access import permission_needed, role_required

# Characters of a value shown in the trail's list; the event's page shows all of it.
LIST_VALUE_CHARS = 500


@require_GET
@permission_needed("audit.view_auditevent")
def trail(request):
    events = AuditEventFilter(request.GET or None, queryset=trail_events(user=request.user), user=request.user)
    pager = TrailPageForm(request.GET)
    valid = (not events.is_bound or events.is_valid()) and pager.is_valid()
    page = None
    if valid:
        page = trail_page(events.qs, after=pager.cleaned_data["after"], before=pager.cleaned_data["before"])
    # The filters without the page's start, for the pager's and the exports' links.
    query = request.GET.copy()
    for name in ("after", "before", "format"):
        query.pop(name, None)
    context = {
        "filter": events,
        "pager": pager,
        "page": page,
        "query": query.urlencode(),
        "is_first_page": not (pager.is_valid() and (pager.cleaned_data["after"] or pager.cleaned_data["before"])),
        "can_export": user_has_role(request.user, COMPLIANCE),
        "list_value_chars": LIST_VALUE_CHARS,
    }
    return render(request, "audit/trail.html", context, status=200 if valid else 400)


@require_GET
@permission_needed("audit.view_auditevent")
def event_detail(request, event_id: int):
    event = get_object_or_404(trail_events(user=request.user).select_related("actor"), pk=event_id)
    run = SyncRun.objects.filter(pk=event.run_id).only("pk", "sync_id").first() if event.run_id else None
    return render(request, "audit/event_detail.html", {"event": event, "run": run})


@require_GET
@role_required(COMPLIANCE)
def export(request):
    file_format = request.GET.get("format", "csv")
    if file_format not in CONTENT_TYPES:
        return HttpResponseBadRequest("Choose the export's format: csv or jsonl.", content_type="text/plain")
    events = AuditEventFilter(request.GET, queryset=trail_events(user=request.user), user=request.user)
    if not events.is_valid():
        reasons = "; ".join(f"{events.form.fields[name].label}: {' '.join(errors)}"
                            for name, errors in events.form.errors.items())
        return HttpResponseBadRequest(f"The filter is not valid, nothing was exported. {reasons}",
                                      content_type="text/plain; charset=utf-8")
    return trail_export(events=events.qs, file_format=file_format, filters=events.described(), user=request.user)
