"""FilterSets the pages share with any export or API over the same rows."""
from __future__ import annotations

from datetime import timedelta

import django_filters
from django import forms
from django.db import connection, models
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Connection
from syncapp.engine.identity import InvalidPhone, normalize_phone
from syncapp.models import Conflict, Contact, Sync
from syncapp.models.hub import hub_field_label
from syncapp.pagination import capped_count
from syncapp.search import starts_with
from syncapp.selectors import ContactCursor

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


# What a phone number can be typed with: "+1 (415) 555-0100", "415.555.0100".
PHONE_CHARACTERS = frozenset("0123456789+-(). ")
# Enough to tell a word that starts a few contacts' values from one that starts many.
RAREST_WORD_CAP = 5_000


class ContactFilter(django_filters.FilterSet):
    """Search by the start of an email, a first or last name (every word typed must start one), or by phone.

    A search typed as a phone number finds the contacts with that number, written in any
    form the systems' default regions read, or whose E.164 number starts with its digits.
    Prefixes, not substrings: each is one range of an index (syncapp.search).

    Which index finds the matches: the rarest word's, the others tested on the rows it
    finds. With `walk`, none: the list is read in its own
    order and each contact tested, which finds a page of a search that matches many
    contacts (one letter) sooner than collecting and sorting all of them.
    """

    q = django_filters.CharFilter(
        label="Search", method="filter_search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Email, phone or name"}),
    )

    class Meta:
        model = Contact
        fields = []

    def __init__(self, *args, walk: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.walk = walk

    def filter_search(self, queryset: QuerySet[Contact], name: str, value: str) -> QuerySet[Contact]:
        phones = phone_prefixes(value)
        if phones:
            matches = models.Q()
            for phone in phones:
                matches |= starts_with("phone", phone, indexed=not self.walk)
            return queryset.filter(matches)
        words = value.lower().split()
        leading = self._rarest(queryset, words)
        for word in words:
            queryset = queryset.filter(_word_matches(word, indexed=word == leading and not self.walk))
        return queryset

    @staticmethod
    def _rarest(queryset: QuerySet[Contact], words: list[str]) -> str | None:
        """Return the word starting the fewest contacts' values (counted up to RAREST_WORD_CAP), else the longest.

        SQLite has no statistics to choose by, and takes the first word it is given; a
        first name shared by one contact in twenty before a rare surname costs a scan of
        tens of thousands. PostgreSQL chooses for itself.
        """
        if len(words) < 2 or connection.vendor != "sqlite":
            return words[0] if words else None
        return min(words, key=lambda word: (capped_count(queryset.filter(_word_matches(word)), RAREST_WORD_CAP),
                                            -len(word)))


def _word_matches(word: str, *, indexed: bool = True) -> models.Q:
    return (starts_with("email", word, indexed=indexed) | starts_with("first_name", word, lower=True, indexed=indexed)
            | starts_with("last_name", word, lower=True, indexed=indexed))


def phone_prefixes(text: str) -> list[str]:
    """Return the E.164 numbers or prefixes a search typed as a phone number stands for; [] if it is not one."""
    text = text.strip()
    digits = "".join(char for char in text if char.isdigit())
    if not digits or not set(text) <= PHONE_CHARACTERS:
        return []
    regions = set(Connection.objects.values_list("default_phone_region", flat=True).distinct())
    regions.add(Connection._meta.get_field("default_phone_region").default)
    numbers = set()
    for region in sorted(regions):
        try:
            numbers.add(normalize_phone(text, region))
        except InvalidPhone:
            pass
    # Digits with their country code ("14155550100", "+1 415"): the start of an E.164 number.
    return sorted(numbers | {f"+{digits}"})


class ContactPageForm(forms.Form):
    """Where a page of the contact list starts: `after` a contact (older ones), or `before` one (newer ones)."""

    after = forms.CharField(required=False)
    before = forms.CharField(required=False)

    def _cursor(self, name: str) -> ContactCursor | None:
        text = self.cleaned_data[name]
        if not text:
            return None
        try:
            return ContactCursor.parse(text)
        except (ValueError, OverflowError):
            raise forms.ValidationError("Not a place in the contact list.", code="invalid_cursor") from None

    def clean_after(self) -> ContactCursor | None:
        return self._cursor("after")

    def clean_before(self) -> ContactCursor | None:
        return self._cursor("before")
