"""The start page: every sync with its last run, every connection with its status, and for
compliance staff the deletion requests that are overdue or failing."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from audit.deletion import deletion_requests_needing_attention
from syncapp.models import Sync
from syncapp.roles import COMPLIANCE, MARKETER, user_has_role
from syncapp.selectors import connection_list, sync_list_with_last_run


@login_required
def dashboard(request):
    is_marketer = user_has_role(request.user, MARKETER)
    is_compliance = user_has_role(request.user, COMPLIANCE)
    context = {"is_marketer": is_marketer, "is_compliance": is_compliance}
    if is_compliance:
        # Overdue or failing deletion requests: a legal deadline, first on the page.
        context.update(deletion_attention=list(deletion_requests_needing_attention()[:50]),
                       today=timezone.localdate())
    if is_marketer:
        context.update(
            syncs=sync_list_with_last_run(),
            connections=connection_list(),
            # First on the page: a paused sync sends nothing until someone acts.
            paused_syncs=Sync.objects.filter(paused=True).only("pk", "name", "paused_reason"),
        )
    return render(request, "syncapp/dashboard.html", context)
