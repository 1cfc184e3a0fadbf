"""Deletion requests: the list, filing one, following it through every system, its receipt.

Compliance staff only (and superusers); everyone else gets a 403. While a request is
open its page shows the identifiers it was filed with; once carried out, only their
keyed hashes remain.
"""
from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.deletion import (
    DUE_DAYS,
    InvalidDeletionRequest,
    deletion_due_date,
    deletion_identifiers_clean,
    deletion_progress,
    deletion_receipt_download,
    deletion_request_file,
    deletion_request_list,
)
from audit.models import DeletionRequest
from audit.receipts import receipt_verify
from syncapp.roles import COMPLIANCE
from syncapp.views.access import role_required

REQUESTS_PER_PAGE = 50

compliance_required = role_required(COMPLIANCE)


class DeletionRequestForm(forms.Form):
    email = forms.CharField(
        required=False, max_length=320, label="Email address",
        widget=forms.TextInput(attrs={"type": "email", "autocomplete": "off", "spellcheck": "false"}),
    )
    phone = forms.CharField(
        required=False, max_length=40, label="Phone number",
        help_text="In international form, with + and the country code: +44 20 7946 0958.",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    regulation = forms.ChoiceField(choices=DeletionRequest.Regulation.choices, initial=DeletionRequest.Regulation.GDPR,
                                   widget=forms.RadioSelect)
    reference = forms.CharField(
        max_length=200, label="Reference",
        help_text="The requester's or the ticket's reference. It is kept after the person is erased: not their email.",
    )
    due_date = forms.DateField(
        required=False, label="Due date", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="Leave empty for 30 days from today (GDPR) or 45 days (CCPA).",
    )

    def clean(self):
        cleaned = super().clean()
        if self.has_error("email") or self.has_error("phone"):
            return cleaned
        try:
            cleaned["email"], cleaned["phone"] = deletion_identifiers_clean(
                email=cleaned.get("email"), phone=cleaned.get("phone"))
        except InvalidDeletionRequest as error:
            self.add_error(error.field or None, str(error))
        return cleaned


@require_GET
@compliance_required
def deletion_list(request):
    page = Paginator(deletion_request_list(), REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "audit/deletion_list.html", {"requests": page, "today": timezone.localdate()})


@require_http_methods(["GET", "POST"])
@compliance_required
def deletion_new(request):
    form = DeletionRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            filed = deletion_request_file(**form.cleaned_data, user=request.user)
        except InvalidDeletionRequest as error:
            form.add_error(error.field or None, str(error))
        else:
            messages.success(request, f"Deletion request #{filed.pk} filed: every system is being searched.")
            return redirect("audit:deletion_detail", filed.pk)
    # The default due date of each regulation, which the page's script fills in as one is chosen.
    today = timezone.localdate()
    form.fields["due_date"].widget.attrs["data-due-dates"] = json.dumps(
        {regulation: deletion_due_date(regulation=regulation, filed_on=today).isoformat() for regulation in DUE_DAYS})
    return render(request, "audit/deletion_new.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
@compliance_required
def deletion_detail(request, request_id: int):
    deletion = get_object_or_404(DeletionRequest.objects.select_related("requested_by"), pk=request_id)
    completed = deletion.status == DeletionRequest.Status.COMPLETED
    context = {
        "deletion": deletion,
        "tasks": deletion.tasks.order_by("connection_name", "pk"),
        "today": timezone.localdate(),
        "completed": completed,
        "progress": deletion_progress(request=deletion),
        "receipt_valid": receipt_verify(deletion) if completed else None,
        "receipt_pretty": (json.dumps(deletion.receipt, indent=2, sort_keys=True, ensure_ascii=False)
                           if completed else ""),
    }
    return render(request, "audit/deletion_detail.html", context)


@never_cache
@require_GET
@compliance_required
def deletion_progress_json(request, request_id: int):
    return JsonResponse(deletion_progress(request=get_object_or_404(DeletionRequest, pk=request_id)))


@never_cache
@require_GET
@compliance_required
def deletion_receipt(request, request_id: int):
    deletion = get_object_or_404(DeletionRequest, pk=request_id)
    try:
        document = deletion_receipt_download(request=deletion, user=request.user)
    except InvalidDeletionRequest as error:
        return JsonResponse({"error": str(error)}, status=409)
    response = HttpResponse(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False),
                            content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="deletion-receipt-{deletion.pk}.json"'
    return response
