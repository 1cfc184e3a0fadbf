"""Subject access (GDPR Art. 15): one person's data on a page, or as a JSON document to hand over.

Compliance staff only. Showing it and downloading it are both audited, the person named
by a digest (audit.subject_access).
"""
from __future__ import annotations

import json

from django import forms
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from audit.people import InvalidPerson, person_parse
from audit.subject_access import JSON, PAGE, subject_access_export
from syncapp.roles import COMPLIANCE
from syncapp.views.access import role_required


class PersonForm(forms.Form):
    person = forms.CharField(
        max_length=320, label="Email or phone",
        error_messages={"required": "Enter an email address or a phone number."},
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "ann@example.com or +44 20 7946 0000"}),
    )

    def clean_person(self):
        try:
            return person_parse(self.cleaned_data["person"])
        except InvalidPerson as error:
            raise forms.ValidationError(str(error)) from None


@require_GET
@role_required(COMPLIANCE)
def subject_access(request):
    shown_as = request.GET.get("format") or PAGE
    if shown_as not in (PAGE, JSON):
        return HttpResponseBadRequest("Choose the format: json, or none for the page.", content_type="text/plain")
    form = PersonForm(request.GET if "person" in request.GET else None)
    if not form.is_valid():
        return render(request, "audit/subject_access.html", {"form": form}, status=400 if form.is_bound else 200)
    document = subject_access_export(person=form.cleaned_data["person"], user=request.user, shown_as=shown_as)
    if shown_as == JSON:
        response = HttpResponse(json.dumps(document, ensure_ascii=False, indent=2),
                                content_type="application/json; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="subject-access-{stamp}.json"'
        patch_cache_control(response, private=True, no_store=True)
        return response
    return render(request, "audit/subject_access.html", {"form": form, "document": document})
