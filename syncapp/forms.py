"""The sync builder's forms: the sync's settings and each connection's part in it.

`SyncBuilder` binds the two together: the sync form, and one row per connection of the
workspace (a fixed list, not rows to add: every connection is there, with a role
"not in this sync", read, write or both). Rules that span both (a batch size within
every written system's maximum) are checked there. Nothing is saved until every rule
holds; the view then calls `syncapp.services.syncs.sync_builder_save`.
"""
from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from connections.models import Connection
from connections.registry import UnknownProvider, provider_class
from mappings.models import FieldMapping
from mappings.validation import Role
from syncapp import queue
from syncapp.engine.schedule import cron_error, next_run_at
from syncapp.models import Sync, SyncConnection
from syncapp.models.hub import hub_field_label
from syncapp.models.sync import new_member_choice_errors
from syncapp.roles import MARKETER

SCHEDULE_INTERVAL, SCHEDULE_CRON, SCHEDULE_OFF = "interval", "cron", "off"
SCHEDULE_CHOICES = [
    (SCHEDULE_INTERVAL, "Every few minutes"),
    (SCHEDULE_CRON, "On a cron schedule"),
    (SCHEDULE_OFF, "Off: runs only when someone presses Run now"),
]
# Shown as the new sync's interval until the marketer picks another.
DEFAULT_INTERVAL = 15

ROLE_NONE, ROLE_READ, ROLE_WRITE, ROLE_BOTH = "", "read", "write", "both"
ROLE_CHOICES = [
    (ROLE_NONE, "Not in this sync"),
    (ROLE_READ, "Read: take changes from it"),
    (ROLE_WRITE, "Write: send changes to it"),
    (ROLE_BOTH, "Read and write"),
]
ROLE_FLAGS = {ROLE_NONE: (False, False), ROLE_READ: (True, False), ROLE_WRITE: (False, True), ROLE_BOTH: (True, True)}

# What each delete handling does to a person deleted in one system, in words (the
# engine's behaviour: syncapp.services.page_deletes).
DELETE_HANDLING_HELP = {
    Sync.DeleteHandling.IGNORE: "The person stays in the other systems as they are; the sync stops sending "
    "changes to the record that was deleted.",
    Sync.DeleteHandling.ARCHIVE: "The person is archived in every other system this sync writes to (archived, not "
    "erased: their history stays). If they reappear in the first system, they stay archived elsewhere.",
    Sync.DeleteHandling.MIRROR: "As archive, and the other way too: if the person reappears in the first system, "
    "they are created again in the others.",
}

# The email consent states a provider may offer for new records (see
# Provider.new_record_consent_states), explained; "{system}" is the connection's provider.
NEW_MEMBER_STATUS_HELP = {
    "pending": ("Pending (double opt-in)",
                "{system} emails each new member a confirmation; they get marketing emails only once they confirm."),
    "transactional": ("Transactional",
                      "No marketing emails; only messages such as receipts and password resets."),
    "subscribed": ("Subscribed",
                   "Marketing emails from the next campaign on. You must have a legal basis (such as consent "
                   "collected on your signup form) and record it below."),
}
SUBSCRIBED = "subscribed"
LEGAL_BASIS_MAX_LENGTH = 2000
# More connections than any workspace lists: a bound on the rows a posted form may claim.
MAX_CONNECTION_ROWS = 200
# Mappings a refused role change names; the others are counted.
MAPPINGS_NAMED = 3


def owner_choices():
    """The people who may own a sync: active marketers and superusers."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=MARKETER))
        .distinct()
        .order_by("username")
    )


def provider_of(connection: Connection):
    """Return the connection's provider class, or None for a provider this installation lacks."""
    try:
        return provider_class(connection.provider)
    except UnknownProvider:
        return None


class OwnerField(forms.ModelChoiceField):
    def label_from_instance(self, user) -> str:
        full_name = user.get_full_name()
        return f"{full_name} ({user.get_username()})" if full_name else user.get_username()


class SyncForm(forms.ModelForm):
    """A sync's own settings; its connections are the `EndpointForm` rows."""

    schedule = forms.ChoiceField(choices=SCHEDULE_CHOICES, widget=forms.RadioSelect, label="Schedule")
    # Text, parsed in clean(): the input of a schedule kind not chosen is ignored, so its
    # content must not raise a field error of its own.
    schedule_minutes = forms.CharField(required=False, label="Minutes between runs", max_length=20)
    schedule_cron = forms.CharField(
        required=False, label="Cron expression", max_length=100,
        help_text="minute hour day-of-month month day-of-week, e.g. 0 6 * * 1-5 for 06:00 on weekdays",
    )
    batch_size = forms.IntegerField(
        required=False, min_value=1, label="Batch size",
        help_text="Records sent per call. Leave empty for each system's maximum.",
    )
    delete_handling = forms.ChoiceField(
        choices=Sync.DeleteHandling.choices, widget=forms.RadioSelect, label="When a person is deleted in one system"
    )
    owner = OwnerField(
        queryset=owner_choices(), label="Owner",
        error_messages={"invalid_choice": "Choose an active marketer as the owner.",
                        "required": "Choose who owns the sync."},
        help_text="Gets the email when the sync pauses itself (a mapped field changed in a system).",
    )
    fix_email_typos = forms.BooleanField(
        required=False, label="Fix common email domain typos",
        help_text="Off: an address such as ann@gmial.com is a record error with the suggested fix (ann@gmail.com). "
        "On: the suggested fix is applied and each fix is audited with the old and new address.",
    )

    class Meta:
        model = Sync
        fields = ["name", "schedule_minutes", "schedule_cron", "batch_size", "delete_handling", "owner",
                  "fix_email_typos"]
        error_messages = {
            "name": {
                "unique": "Another sync already has this name; choose another.",
                "required": "Give the sync a name.",
            },
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = owner_choices()
        sync = self.instance
        if sync.schedule_cron:
            kind = SCHEDULE_CRON
        elif sync.schedule_minutes:
            kind = SCHEDULE_INTERVAL
        else:
            kind = SCHEDULE_OFF if sync.pk else SCHEDULE_INTERVAL
        self.initial.setdefault("schedule", kind)
        self.initial["schedule_minutes"] = sync.schedule_minutes or DEFAULT_INTERVAL
        self.fields["name"].help_text = "Shown on the dashboard and in alerts; at most 100 characters."

    def delete_handling_options(self) -> list[dict]:
        """Each delete handling with what it does, for the page."""
        chosen = self["delete_handling"].value()
        return [
            {"value": value, "label": label, "help": DELETE_HANDLING_HELP[value], "checked": value == chosen,
             "id": f"id_delete_handling_{value}"}
            for value, label in Sync.DeleteHandling.choices
        ]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("schedule")
        minutes_text = (self.data.get(self.add_prefix("schedule_minutes")) or "").strip() if self.is_bound else ""
        cron = (cleaned.get("schedule_cron") or "").strip()
        if kind == SCHEDULE_INTERVAL:
            cleaned["schedule_minutes"] = self._interval(minutes_text)
            cleaned["schedule_cron"] = ""
        elif kind == SCHEDULE_CRON:
            if "schedule_cron" in self.errors:
                return cleaned
            reason = cron_error(cron)
            if reason:
                self.add_error("schedule_cron", reason)
            cleaned["schedule_cron"] = cron
            cleaned["schedule_minutes"] = 0
        elif kind == SCHEDULE_OFF:
            cleaned["schedule_minutes"], cleaned["schedule_cron"] = 0, ""
        else:
            # No schedule kind chosen (its own field error says so): keep the stored one.
            cleaned["schedule_minutes"] = self.instance.schedule_minutes
            cleaned["schedule_cron"] = self.instance.schedule_cron
        return cleaned

    def _interval(self, text: str) -> int | None:
        if not text:
            self.add_error("schedule_minutes", "Enter the minutes between runs, or choose another schedule.")
            return None
        if not text.isascii() or not text.isdigit():
            self.add_error("schedule_minutes", "Enter a whole number of minutes, such as 15.")
            return None
        minutes = int(text)
        if minutes < 1:
            self.add_error("schedule_minutes", "Enter at least 1 minute, or choose Off.")
            return None
        if minutes > queue.MAX_SCHEDULE_MINUTES:
            self.add_error(
                "schedule_minutes",
                f"Enter at most {queue.MAX_SCHEDULE_MINUTES} minutes (about 22 days); for rarer runs use a cron "
                "schedule such as 0 6 1 * * (06:00 on the first of each month).",
            )
            return None
        return minutes

    def next_run(self) -> datetime | None:
        """When the schedule as entered would run next; None when off or not valid yet."""
        if self.is_bound:
            if not hasattr(self, "cleaned_data") or any(
                name in self.errors for name in ("schedule", "schedule_minutes", "schedule_cron")
            ):
                return None
            minutes = self.cleaned_data.get("schedule_minutes") or 0
            cron = self.cleaned_data.get("schedule_cron") or ""
        else:
            minutes, cron = self.instance.schedule_minutes, self.instance.schedule_cron
        return next_run_at(minutes=minutes, cron=cron, now=timezone.localtime())


class EndpointForm(forms.Form):
    """One connection of the workspace and its part in the sync."""

    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), widget=forms.HiddenInput)
    role = forms.ChoiceField(choices=ROLE_CHOICES, required=False, label="Role")
    # Text, checked in clean() against the connection's provider: the choices differ by row.
    new_member_status = forms.CharField(required=False, max_length=20, label="New members get")
    new_member_legal_basis = forms.CharField(
        required=False, max_length=LEGAL_BASIS_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}),
        label="Legal basis for subscribing them",
    )

    def __init__(self, *args, sync: Sync, **kwargs):
        self.sync = sync
        super().__init__(*args, **kwargs)

    @property
    def row_connection(self) -> Connection | None:
        """The row's connection: as posted when valid, else as first shown."""
        if self.is_bound and hasattr(self, "cleaned_data") and self.cleaned_data.get("connection"):
            return self.cleaned_data["connection"]
        return self.initial.get("connection")

    @property
    def provider_label(self) -> str:
        connection = self.row_connection
        provider = provider_of(connection) if connection else None
        return provider.label if provider else (connection.provider if connection else "")

    def status_options(self) -> list[dict]:
        """The new-member states the row's provider offers, each explained, for the page."""
        connection = self.row_connection
        provider = provider_of(connection) if connection else None
        if provider is None:
            return []
        chosen = self["new_member_status"].value() or ""
        options = []
        for state in provider.new_record_consent_states:
            label, help_text = NEW_MEMBER_STATUS_HELP.get(state, (state.capitalize(), ""))
            options.append({"value": state, "label": label, "help": help_text.format(system=provider.label),
                            "checked": state == chosen, "id": f"{self.auto_id % self.add_prefix('status')}_{state}"})
        return options

    def clean(self):
        cleaned = super().clean()
        connection = cleaned.get("connection")
        if connection is None:
            return cleaned
        role = cleaned.get("role") or ROLE_NONE
        cleaned["read"], cleaned["write"] = ROLE_FLAGS.get(role, (False, False))
        provider = provider_of(connection)
        states = provider.new_record_consent_states if provider else ()
        status = (cleaned.get("new_member_status") or "").strip()
        basis = (cleaned.get("new_member_legal_basis") or "").strip()
        if not cleaned["write"]:
            # Nothing is created in a system the sync does not write; a radio button
            # still checked from before the role changed cannot be unchecked.
            status = basis = ""
        elif states and not status:
            self.add_error(
                "new_member_status",
                f"Choose the status new members get in {connection.name} when the hub does not know their consent.",
            )
        if status != SUBSCRIBED:
            # A legal basis is recorded for subscribing people; with another status it
            # would read as if one had been given for something that is not done.
            basis = ""
        # The model's rules, one source for the form and the model (SyncConnection.clean).
        for name, message in new_member_choice_errors(system=connection.name, offered=states,
                                                      written=cleaned["write"], status=status,
                                                      legal_basis=basis).items():
            self.add_error(name, message)
        cleaned["new_member_status"], cleaned["new_member_legal_basis"] = status, basis
        return cleaned


class BaseEndpointFormSet(forms.BaseFormSet):
    def clean(self):
        if any(self.errors):
            return
        rows = [form.cleaned_data for form in self.forms if form.cleaned_data.get("connection")]
        seen: dict[int, int] = {}
        for form in self.forms:
            connection = form.cleaned_data.get("connection")
            if connection is None or not form.cleaned_data.get("role"):
                continue
            if connection.pk in seen:
                form.add_error("role", f"{connection.name} is listed twice; give each connection one role.")
            seen[connection.pk] = seen.get(connection.pk, 0) + 1
        chosen = [row for row in rows if row.get("role")]
        if len({row["connection"].pk for row in chosen}) < 2:
            raise ValidationError(
                "Choose at least two connections: a sync keeps contacts identical between systems."
            )
        if not any(row["read"] for row in chosen):
            raise ValidationError("No connection is read: set at least one to Read or Read and write.")
        if not any(row["write"] for row in chosen):
            raise ValidationError("No connection is written: set at least one to Write or Read and write.")
        self._refuse_removing_mapped()
        self._refuse_stranding_mapped()

    def _refuse_removing_mapped(self) -> None:
        sync = self.forms[0].sync if self.forms else None
        if sync is None or sync.pk is None:
            return
        for form in self.forms:
            connection = form.cleaned_data.get("connection")
            if connection is None or form.cleaned_data.get("role"):
                continue
            mapped = sync.mappings.filter(connection=connection).count()
            if mapped and sync.endpoints.filter(connection=connection).exists():
                form.add_error(
                    "role",
                    f"{connection.name} has {mapped} field mapping{'s' if mapped != 1 else ''} in this sync: "
                    "delete them in the mapping editor first, or keep the connection in the sync.",
                )

    def _refuse_stranding_mapped(self) -> None:
        """Refuse a changed role that leaves mappings of its connection doing nothing.

        A mapping is read only from a system the sync reads and written only to one it
        writes: turning reading off under a mapping into the hub would silently stop it.
        The mapping form refuses such a direction (mappings.validation.Role); the builder
        must not bring one about by changing the role underneath. A role left as it was
        is not checked: saving other settings never depends on the mappings.
        """
        sync = self.forms[0].sync if self.forms else None
        if sync is None or sync.pk is None:
            return
        stored = {endpoint.connection_id: endpoint for endpoint in sync.endpoints.all()}
        for form in self.forms:
            connection = form.cleaned_data.get("connection")
            endpoint = stored.get(connection.pk) if connection is not None else None
            if endpoint is None or not form.cleaned_data.get("role"):
                continue
            role = Role(read=form.cleaned_data["read"], written=form.cleaned_data["write"])
            if (endpoint.read, endpoint.write) == (role.read, role.written):
                continue
            stranded = [mapping for mapping in sync.mappings.filter(connection=connection).order_by("id")
                        if not role.carries(mapping.direction)]
            if stranded:
                form.add_error("role", _stranded_message(connection.name, role, stranded))


def _stranded_message(system: str, role: Role, mappings: list[FieldMapping]) -> str:
    """Say which mappings a role would leave doing nothing, and what to change first."""
    count = len(mappings)
    named = ", ".join(f"{hub_field_label(mapping.hub_field)} ({mapping.external_field})"
                      for mapping in mappings[:MAPPINGS_NAMED])
    if count > MAPPINGS_NAMED:
        named += f" and {count - MAPPINGS_NAMED} more"
    several = count != 1
    mapped, them = f"{count} mapping{'s' if several else ''}", "them" if several else "it"
    if not role.read:
        return (f"The sync would no longer read {system}, but {mapped} {'read' if several else 'reads'} from it: "
                f"{named}. Change {them} to Out of the hub, or delete {them}, in the mapping editor first; or keep "
                f"reading {system}.")
    return (f"The sync would no longer write to {system}, but {mapped} {'write' if several else 'writes'} to it: "
            f"{named}. Change {them} to Into the hub, or delete {them}, in the mapping editor first; or keep "
            f"writing to {system}.")


EndpointFormSet = forms.formset_factory(
    EndpointForm, formset=BaseEndpointFormSet, extra=0,
    max_num=MAX_CONNECTION_ROWS, absolute_max=MAX_CONNECTION_ROWS, validate_max=True,
)


class SyncBuilder:
    """The sync form and its connection rows, validated together."""

    def __init__(self, data=None, *, sync: Sync, user):
        self.sync = sync
        self.user = user
        # The creator owns a new sync unless they pick someone else.
        self.form = SyncForm(data, instance=sync, initial={"owner": sync.owner_id or user.pk})
        self.endpoints = EndpointFormSet(data, initial=self._rows(), prefix="endpoints", form_kwargs={"sync": sync})

    def _rows(self) -> list[dict]:
        stored = {endpoint.connection_id: endpoint for endpoint in self.sync.endpoints.all()} if self.sync.pk else {}
        rows = []
        for connection in Connection.objects.order_by("name")[:MAX_CONNECTION_ROWS]:
            endpoint = stored.get(connection.pk)
            role = ROLE_NONE
            if endpoint is not None:
                role = {(True, True): ROLE_BOTH, (True, False): ROLE_READ, (False, True): ROLE_WRITE}.get(
                    (endpoint.read, endpoint.write), ROLE_NONE)
            rows.append({
                "connection": connection,
                "role": role,
                "new_member_status": endpoint.new_member_status if endpoint else "",
                "new_member_legal_basis": endpoint.new_member_legal_basis if endpoint else "",
            })
        return rows

    def is_valid(self) -> bool:
        form_valid = self.form.is_valid()
        endpoints_valid = self.endpoints.is_valid()
        if form_valid and endpoints_valid:
            self._check_batch_size()
        return self.form.is_valid() and endpoints_valid

    def _check_batch_size(self) -> None:
        batch_size = self.form.cleaned_data.get("batch_size")
        if not batch_size:
            return
        limits = []
        for row in self.chosen_rows():
            provider = provider_of(row["connection"])
            if row["write"] and provider is not None:
                limits.append((provider.max_batch, row["connection"].name))
        if not limits:
            return
        limit, name = min(limits, key=lambda pair: pair[0])
        if batch_size > limit:
            self.form.add_error(
                "batch_size",
                f"{name} takes at most {limit} records per call: enter {limit} or less, or leave it empty "
                "for each system's maximum.",
            )

    def chosen_rows(self) -> list[dict]:
        return [form.cleaned_data for form in self.endpoints.forms
                if form.cleaned_data.get("connection") and form.cleaned_data.get("role")]

    def endpoint_instances(self) -> list[SyncConnection]:
        """The sync's endpoints as chosen: stored rows changed in place, new ones unsaved."""
        stored = {endpoint.connection_id: endpoint for endpoint in self.sync.endpoints.all()} if self.sync.pk else {}
        instances = []
        for row in self.chosen_rows():
            connection = row["connection"]
            endpoint = stored.get(connection.pk) or SyncConnection(connection=connection)
            endpoint.read, endpoint.write = row["read"], row["write"]
            endpoint.new_member_status = row["new_member_status"]
            endpoint.new_member_legal_basis = row["new_member_legal_basis"]
            instances.append(endpoint)
        return instances

    def next_run(self) -> datetime | None:
        return self.form.next_run()
