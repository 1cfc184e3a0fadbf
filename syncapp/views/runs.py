"""One run: its page, and the JSON the progress bar polls."""
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache

from syncapp.models import RecordError, SyncRun
from syncapp.selectors import run_is_finished, run_progress, run_record_error_counts, run_record_errors
from syncapp.views.access import marketer_required

ERRORS_PER_PAGE = 50


def _get_run(sync_id: int, run_id: int) -> SyncRun:
    return get_object_or_404(SyncRun.objects.select_related("sync", "requested_by"), pk=run_id, sync_id=sync_id)


@marketer_required
def run_detail(request, sync_id: int, run_id: int):
    run = _get_run(sync_id, run_id)
    # Errors (records that did not sync) and warnings (records that synced without a
    # field) are listed apart; an unknown filter shows both rather than failing.
    severity = request.GET.get("severity")
    if severity not in RecordError.Severity.values:
        severity = None
    errors = Paginator(run_record_errors(run=run, severity=severity), ERRORS_PER_PAGE).get_page(
        request.GET.get("page"))
    context = {
        "sync": run.sync,
        "run": run,
        "run_finished": run_is_finished(run),
        "api_calls": sorted(run.api_calls.items()),
        "errors": errors,
        "severity": severity or "",
        "severity_counts": run_record_error_counts(run=run),
    }
    return render(request, "syncapp/run_detail.html", context)


@never_cache
@marketer_required
def run_progress_json(request, sync_id: int, run_id: int):
    return JsonResponse(run_progress(run=_get_run(sync_id, run_id)))
