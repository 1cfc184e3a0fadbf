"""The sync pages: the list, one sync with its runs, and the Run now and Full resync actions."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from syncapp.models import Sync, SyncRun
from syncapp.selectors import (
    run_is_finished,
    run_record_error_counts,
    run_record_errors,
    sync_list_with_last_run,
    sync_recent_runs,
)
from syncapp.services.backfill import RunUnderWay, full_resync_request
from syncapp.services.runs import SyncPaused, run_request
from syncapp.views.access import marketer_required

# The first errors of the latest run shown on the sync page; the run page lists all.
ERRORS_ON_SYNC_PAGE = 20


@marketer_required
def sync_list(request):
    return render(request, "syncapp/sync_list.html", {"syncs": sync_list_with_last_run()})


@marketer_required
def sync_detail(request, sync_id: int):
    sync = get_object_or_404(Sync.objects.prefetch_related("endpoints__connection"), pk=sync_id)
    runs = sync_recent_runs(sync=sync)
    latest_run = runs[0] if runs else None
    errors = run_record_errors(run=latest_run) if latest_run else None
    context = {
        "sync": sync,
        "endpoints": sync.endpoints.all(),
        "mappings": sync.mappings.select_related("connection"),
        "runs": runs,
        "latest_run": latest_run,
        "latest_run_finished": latest_run is None or run_is_finished(latest_run),
        "errors": errors[:ERRORS_ON_SYNC_PAGE] if errors is not None else [],
        "error_total": errors.count() if errors is not None else 0,
        "severity_counts": run_record_error_counts(run=latest_run) if latest_run else {},
    }
    return render(request, "syncapp/sync_detail.html", context)


@require_POST
@marketer_required
def sync_run_now(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    try:
        run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, user=request.user)
    except SyncPaused:
        messages.error(request, "This sync is paused. Resume it before running it.")
        return redirect("sync_detail", sync.pk)
    if created:
        messages.success(request, f"Run #{run.pk} queued.")
    else:
        messages.info(request, f"Run #{run.pk} is already under way; showing its progress.")
    return redirect("sync_detail", sync.pk)


@require_POST
@marketer_required
def sync_full_resync(request, sync_id: int):
    """Queue a run that reads every record again (the page explains it before the button)."""
    sync = get_object_or_404(Sync, pk=sync_id)
    try:
        run = full_resync_request(sync=sync, user=request.user)
    except SyncPaused:
        messages.error(request, "This sync is paused. Resume it before a full resync.")
    except RunUnderWay as under_way:
        messages.info(request, f"Run #{under_way.run.pk} is under way; ask for the full resync again once it ends.")
    else:
        messages.success(request, f"Full resync queued as run #{run.pk}: every record is read again.")
    return redirect("sync_detail", sync.pk)
