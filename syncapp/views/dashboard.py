"""The start page: every sync with its last run, every connection with its status."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from syncapp.models import Sync
from syncapp.roles import MARKETER, user_has_role
from syncapp.selectors import connection_list, sync_list_with_last_run


@login_required
def dashboard(request):
    is_marketer = user_has_role(request.user, MARKETER)
    context = {"is_marketer": is_marketer}
    if is_marketer:
        context.update(
            syncs=sync_list_with_last_run(),
            connections=connection_list(),
            # First on the page: a paused sync sends nothing until someone acts.
            paused_syncs=Sync.objects.filter(paused=True).only("pk", "name", "paused_reason"),
        )
    return render(request, "syncapp/dashboard.html", context)
