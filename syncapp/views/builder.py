"""The sync builder: create and edit a sync, pause and resume it, delete it."""
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from syncapp.forms import SyncBuilder
from syncapp.models import Conflict, Sync, SyncRun
from syncapp.services.syncs import sync_builder_save, sync_delete, sync_pause, sync_resume
from syncapp.views.access import marketer_required


def _builder_page(request, *, sync: Sync, title: str):
    builder = SyncBuilder(request.POST if request.method == "POST" else None, sync=sync, user=request.user)
    # The name as stored: a refused form must not retitle the page with what was typed.
    stored_name = sync.name
    if request.method == "POST" and builder.is_valid():
        try:
            saved = sync_builder_save(sync=sync, endpoints=builder.endpoint_instances(), user=request.user)
        except ValidationError as error:
            # Another person changed the sync meanwhile (a mapping added for a connection
            # being removed): nothing was saved; say why on the form.
            builder.form.add_error(None, error)
        else:
            messages.success(request, f"Sync “{saved.name}” saved.")
            return redirect("sync_detail", saved.pk)
    context = {"builder": builder, "form": builder.form, "endpoints": builder.endpoints, "sync": sync,
               "stored_name": stored_name, "title": title, "next_run": builder.next_run(),
               "TIME_ZONE": settings.TIME_ZONE}
    return render(request, "syncapp/sync_form.html", context, status=400 if request.method == "POST" else 200)


@marketer_required
def sync_create(request):
    return _builder_page(request, sync=Sync(owner=request.user), title="New sync")


@marketer_required
def sync_edit(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    return _builder_page(request, sync=sync, title="Edit sync")


@require_POST
@marketer_required
def sync_pause_view(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    sync_pause(sync=sync, user=request.user)
    messages.success(request, "Paused: no scheduled run starts until you resume the sync.")
    return redirect("sync_detail", sync.pk)


@require_POST
@marketer_required
def sync_resume_view(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    try:
        sync_resume(sync=sync, user=request.user)
    except ValidationError as refused:
        # A mapped field still differs from the system's: the sync stays paused, and the message says what to fix.
        messages.error(request, " ".join(refused.messages))
        return redirect("sync_detail", sync.pk)
    messages.success(request, "Resumed: the schedule is back on; the next run continues where the last one stopped.")
    return redirect("sync_detail", sync.pk)


@marketer_required
def sync_delete_view(request, sync_id: int):
    sync = get_object_or_404(Sync, pk=sync_id)
    running = sync.runs.filter(status__in=SyncRun.ACTIVE).exists()
    if request.method == "POST":
        if running:
            messages.error(request, "A run of this sync is under way: wait for it to finish, then delete the sync.")
            return redirect("sync_detail", sync.pk)
        name = sync.name
        sync_delete(sync=sync, user=request.user)
        messages.success(request, f"Sync “{name}” deleted.")
        return redirect("sync_list")
    context = {
        "sync": sync,
        "running": running,
        "run_total": sync.runs.count(),
        "mapping_total": sync.mappings.count(),
        "open_conflict_total": sync.conflicts.filter(status=Conflict.Status.OPEN).count(),
        "endpoints": sync.endpoints.select_related("connection"),
    }
    return render(request, "syncapp/sync_confirm_delete.html", context)
