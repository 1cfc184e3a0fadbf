"""Likely duplicates: the list of open pairs, one pair's page, merging and dismissing.

Seeing pairs needs syncapp.view_duplicatepair; merging or dismissing them needs
syncapp.change_duplicatepair.
"""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from syncapp.models import DuplicatePair, RecordLink
from syncapp.services.duplicates import (
    PairChanged,
    PairClosed,
    PersonSuppressed,
    RemoteMergeFailed,
    contacts_merge,
    duplicate_dismiss,
    duplicate_pairs_to_review,
)
from syncapp.views.access import permission_needed

PAIRS_PER_PAGE = 25
REASON_MAX_LENGTH = 2000


class MergeForm(forms.Form):
    """Which of the pair's two contacts survives the merge, and why they are one person."""

    survivor = forms.TypedChoiceField(
        coerce=int, widget=forms.RadioSelect, label="Keep",
        error_messages={"required": "Choose which contact to keep.",
                        "invalid_choice": "Choose one of the pair's two contacts to keep."},
    )
    reason = forms.CharField(required=False, max_length=REASON_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded in the audit trail with your name.")

    def __init__(self, *args, pair: DuplicatePair, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["survivor"].choices = [
            (pair.contact_a_id, f"Contact #{pair.contact_a_id}"),
            (pair.contact_b_id, f"Contact #{pair.contact_b_id}"),
        ]


class DismissForm(forms.Form):
    reason = forms.CharField(required=False, max_length=REASON_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Recorded in the audit trail with your name.")


def _pairs():
    links = RecordLink.objects.select_related("connection").order_by("connection__name")
    return DuplicatePair.objects.select_related("contact_a", "contact_b").prefetch_related(
        Prefetch("contact_a__links", queryset=links), Prefetch("contact_b__links", queryset=links)
    )


@require_GET
@permission_needed("syncapp.view_duplicatepair")
def duplicate_list(request):
    pairs = Paginator(duplicate_pairs_to_review(_pairs()), PAIRS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(request, "syncapp/duplicates/list.html", {
        "pairs": pairs,
        "can_decide": request.user.has_perm("syncapp.change_duplicatepair"),
    })


@require_GET
@permission_needed("syncapp.view_duplicatepair")
def duplicate_detail(request, pair_id: int):
    pair = get_object_or_404(_pairs(), pk=pair_id)
    return _detail(request, pair, MergeForm(pair=pair), DismissForm())


@require_POST
@permission_needed("syncapp.change_duplicatepair")
def duplicate_merge(request, pair_id: int):
    pair = get_object_or_404(_pairs(), pk=pair_id)
    if pair.status != DuplicatePair.Status.OPEN:
        messages.warning(request, "This pair was already decided by someone else.")
        return redirect("duplicate_list")
    form = MergeForm(request.POST, pair=pair)
    if not form.is_valid():
        return _detail(request, pair, form, DismissForm(), status=400)
    survivor = pair.contact_a if form.cleaned_data["survivor"] == pair.contact_a_id else pair.contact_b
    merged_id = pair.contact_b_id if survivor.pk == pair.contact_a_id else pair.contact_a_id
    try:
        contacts_merge(pair=pair, survivor=survivor, user=request.user, reason=form.cleaned_data["reason"])
    except PairClosed:
        messages.warning(request, "This pair was already decided by someone else.")
        return redirect("duplicate_list")
    except (RemoteMergeFailed, PairChanged, PersonSuppressed) as error:
        form.add_error(None, _refusal(error))
        return _detail(request, pair, form, DismissForm(), status=409)
    messages.success(request, f"Contact #{merged_id} was merged into contact #{survivor.pk}. "
                              "A run was requested to write the merged values to every system.")
    return redirect("contact_detail", survivor.pk)


@require_POST
@permission_needed("syncapp.change_duplicatepair")
def duplicate_dismiss_view(request, pair_id: int):
    pair = get_object_or_404(_pairs(), pk=pair_id)
    form = DismissForm(request.POST)
    if not form.is_valid():
        return _detail(request, pair, MergeForm(pair=pair), form, status=400)
    try:
        duplicate_dismiss(pair=pair, user=request.user, reason=form.cleaned_data["reason"])
    except PairClosed:
        messages.warning(request, "This pair was already decided by someone else.")
        return redirect("duplicate_list")
    messages.success(request, f"Contacts #{pair.contact_a_id} and #{pair.contact_b_id} are kept apart; "
                              "this pair will not be proposed again.")
    return redirect("duplicate_list")


def _refusal(error: Exception) -> str:
    if isinstance(error, PairChanged):
        return "The two contacts changed while they were being merged. Nothing was merged; try again."
    return f"Nothing was merged. {error}"


def _detail(request, pair: DuplicatePair, merge_form: MergeForm, dismiss_form: DismissForm, status: int = 200):
    return render(request, "syncapp/duplicates/detail.html", {
        "pair": pair,
        "merge_form": merge_form,
        "dismiss_form": dismiss_form,
        "can_decide": (pair.status == DuplicatePair.Status.OPEN
                       and request.user.has_perm("syncapp.change_duplicatepair")),
    }, status=status)
