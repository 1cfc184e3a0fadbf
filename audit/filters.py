"""The audit trail's filters, shared by its page and its exports."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from audit.models import AuditEvent
from audit.people import EMAIL, InvalidPerson, Person, person_contact_ids, person_parse
from audit.selectors import action_is_compliance_only, audit_actions, audit_systems, events_between, sync_events
from syncapp.models import Sync
from syncapp.roles import COMPLIANCE, user_has_role
from syncapp.security.inputs import ID_MAX

MOMENT_HELP = "A date (the whole day), or a date and time: 2026-03-01 or 2026-03-01 14:30 (UTC)."


class MomentField(forms.DateTimeField):
    """A date, or a date and time. With `day_end`, a date alone means the end of that day."""

    def __init__(self, *, day_end: bool = False, **kwargs):
        self.day_end = day_end
        super().__init__(**kwargs)

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is not None and self.day_end and _is_date_only(value):
            try:
                moment += timedelta(days=1)
            except OverflowError:
                # 9999-12-31 has no next day to end at.
                raise forms.ValidationError("Enter a date before 9999-12-31.", code="invalid") from None
        return moment


def _is_date_only(value) -> bool:
    try:
        date.fromisoformat(str(value).strip())
    except ValueError:
        return False
    return True


class MomentFilter(django_filters.Filter):
    field_class = MomentField


class IdFilter(django_filters.Filter):
    """A database id: a positive integer no larger than an id can be."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        kwargs.setdefault("widget", forms.NumberInput(attrs={"min": 1}))
        super().__init__(*args, **kwargs)


class TrailFilterForm(forms.Form):
    """Checks the filters that name someone: the person must be known, the user must exist."""

    # The person cleaned (set by clean_person), for describing the filter in the trail.
    person_found: Person | None = None

    def clean_person(self) -> frozenset[int] | None:
        text = self.cleaned_data.get("person")
        if not text:
            return None
        try:
            person = person_parse(text)
        except InvalidPerson as error:
            raise forms.ValidationError(str(error), code="invalid") from None
        contact_ids = person_contact_ids(person)
        if not contact_ids:
            noun = "email address" if person.kind == EMAIL else "phone number"
            raise forms.ValidationError(f"No contact has or had this {noun}.", code="unknown")
        self.person_found = person
        return frozenset(contact_ids)

    def clean_actor(self) -> int | None:
        username = self.cleaned_data.get("actor")
        if not username:
            return None
        user = get_user_model().objects.filter(username=username.strip()).only("pk").first()
        if user is None:
            raise forms.ValidationError("No user has this username.", code="unknown")
        return user.pk


class AuditEventFilter(django_filters.FilterSet):
    """The trail's filters. Invalid input is a form error; the views then show no events."""

    person = django_filters.CharFilter(
        label="Person", method="filter_person",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Email or phone", "maxlength": 320}),
        help_text="Found through the contact, including events from before an email change.",
    )
    action = django_filters.ChoiceFilter(label="Action", choices=(), empty_label="Any action")
    actor = django_filters.CharFilter(label="User", field_name="actor_id",
                                      widget=forms.TextInput(attrs={"placeholder": "Username", "maxlength": 150}))
    system = django_filters.ChoiceFilter(label="Connection", choices=(), empty_label="Any connection")
    sync = django_filters.ModelChoiceFilter(label="Sync", queryset=Sync.objects.order_by("name"),
                                            empty_label="Any sync", method="filter_sync")
    run = IdFilter(label="Run", field_name="run_id")
    # created_at >= since and created_at < until, applied as bounds on the id
    # (audit.selectors.events_between).
    since = MomentFilter(label="Since", field_name="created_at", method="filter_since", help_text=MOMENT_HELP,
                         widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD"}))
    until = MomentFilter(label="Until", field_name="created_at", method="filter_until", day_end=True,
                         help_text=MOMENT_HELP, widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD"}))

    class Meta:
        model = AuditEvent
        form = TrailFilterForm
        fields = ["person", "action", "actor", "system", "sync", "run", "since", "until"]

    def __init__(self, data=None, *args, user=None, **kwargs):
        super().__init__(data, *args, **kwargs)
        actions = audit_actions()
        if user is None or not user_has_role(user, COMPLIANCE):
            actions = [action for action in actions if not action_is_compliance_only(action)]
        self.filters["action"].extra["choices"] = [(action, action) for action in actions]
        self.filters["system"].extra["choices"] = [(system, system) for system in audit_systems()]

    def filter_person(self, queryset: QuerySet[AuditEvent], name: str, contact_ids: frozenset[int]):
        return queryset.filter(contact_id__in=sorted(contact_ids))

    def filter_since(self, queryset: QuerySet[AuditEvent], name: str, since: datetime):
        return events_between(queryset, since=since)

    def filter_until(self, queryset: QuerySet[AuditEvent], name: str, until: datetime):
        return events_between(queryset, until=until)

    def filter_sync(self, queryset: QuerySet[AuditEvent], name: str, sync: Sync):
        return sync_events(queryset, sync)

    @property
    def person_found(self) -> Person | None:
        """The person filtered on, once the form is valid."""
        return self.form.person_found

    def described(self) -> dict[str, str]:
        """Return the filters in use as the query gave them, the person as a digest, for the trail."""
        described = {}
        for name in self.form.fields:
            value = self.form.data.get(name, "")
            if name == "person" and self.person_found is not None:
                value = self.person_found.audit_key()
            if value:
                described[name] = str(value)
        return described


class TrailPageForm(forms.Form):
    """Where a page of the trail starts: after (older than) or before (newer than) an id."""

    after = forms.IntegerField(required=False, min_value=1, max_value=ID_MAX)
    before = forms.IntegerField(required=False, min_value=0, max_value=ID_MAX)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("after") is not None and cleaned.get("before") is not None:
            raise forms.ValidationError("A page starts after an id or before one, not both.")
        return cleaned
