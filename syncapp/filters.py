"""FilterSets the pages share with any export or API over the same rows."""
from __future__ import annotations

from datetime import timedelta

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Connection
from syncapp.models import Conflict, Sync
from syncapp.models.hub import hub_field_label

# Age choice -> how old a conflict must be at least.
AGES = {
    "1d": ("Older than a day", timedelta(days=1)),
    "7d": ("Older than a week", timedelta(days=7)),
    "30d": ("Older than 30 days", timedelta(days=30)),
}


class ConflictFilter(django_filters.FilterSet):
    """The review queue's filters. Without a status in the query, only open conflicts."""

    status = django_filters.ChoiceFilter(choices=Conflict.Status.choices, empty_label="Any status")
    sync = django_filters.ModelChoiceFilter(queryset=Sync.objects.all(), empty_label="Any sync")
    hub_field = django_filters.ChoiceFilter(label="Field", choices=(), empty_label="Any field")
    connection = django_filters.ModelChoiceFilter(
        label="System", field_name="connections", queryset=Connection.objects.all(), empty_label="Any system"
    )
    age = django_filters.ChoiceFilter(
        label="Age", choices=[(key, label) for key, (label, _) in AGES.items()], empty_label="Any age",
        method="filter_age",
    )
    created_after = django_filters.DateFilter(
        label="Found on or after", field_name="created_at", lookup_expr="date__gte",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    created_before = django_filters.DateFilter(
        label="Found on or before", field_name="created_at", lookup_expr="date__lte",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    class Meta:
        model = Conflict
        fields = ["status", "sync", "hub_field", "connection", "age", "created_after", "created_before"]

    def __init__(self, data=None, *args, **kwargs):
        if data is None or "status" not in data:
            # A blank status ("Any status") is a choice; no status at all means the queue.
            data = data.copy() if data is not None else {}
            data["status"] = Conflict.Status.OPEN
        super().__init__(data, *args, **kwargs)
        fields = Conflict.objects.order_by().values_list("hub_field", flat=True).distinct()
        self.filters["hub_field"].extra["choices"] = sorted(
            ((name, hub_field_label(name)) for name in fields), key=lambda choice: choice[1].lower()
        )

    def filter_age(self, queryset: QuerySet[Conflict], name: str, value: str) -> QuerySet[Conflict]:
        _, age = AGES[value]
        return queryset.filter(created_at__lt=timezone.now() - age)
