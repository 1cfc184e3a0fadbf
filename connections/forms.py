"""The connection form: credentials are write-only and never shown back."""
from __future__ import annotations

from typing import Any

from django import forms
from django.utils.text import capfirst

from connections.models import Connection
from connections.registry import provider_choices
from connections.services import SECRET_FIELDS
from connections.validators import validate_public_base_url
from syncapp.security.inputs import JSONInputField

# As written mid-sentence; capfirst() makes the field labels.
SECRET_LABELS = {
    "api_key": "API key",
    "access_token": "OAuth access token",
    "refresh_token": "OAuth refresh token",
    "webhook_secret": "webhook secret",
    "client_secret": "OAuth client secret",
}


def secret_input_name(name: str) -> str:
    return f"new_{name}"


def secret_clear_name(name: str) -> str:
    return f"clear_{name}"


def _secret_input(name: str) -> forms.CharField:
    return forms.CharField(
        label=capfirst(SECRET_LABELS[name]),
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def _clear_box(name: str) -> forms.BooleanField:
    return forms.BooleanField(label=f"Clear the stored {SECRET_LABELS[name]}", required=False)


class ConnectionForm(forms.ModelForm):
    """Edit a connection. Each secret has a blank input and a "clear" box.

    The stored value is never put into the page: the input is always empty and its help
    text only says whether a value is set. An empty input keeps the stored secret.
    """

    class Meta:
        model = Connection
        fields = [
            "name",
            "provider",
            "base_url",
            "token_expires_at",
            "scopes",
            "settings",
            "default_phone_region",
            "rate_limit_requests",
            "rate_limit_window_seconds",
            "max_concurrency",
            "rate_budget",
            "status",
            "last_error",
        ]

    provider = forms.ChoiceField(choices=provider_choices)
    # Left out of a form, as by a page or a script older than the field: shared, the default.
    rate_budget = forms.ChoiceField(
        choices=Connection.RateBudgetKept.choices, required=False, initial=Connection.RateBudgetKept.SHARED,
        help_text=Connection._meta.get_field("rate_budget").help_text,
    )
    base_url = forms.URLField(
        max_length=300,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "vURLField"}),
        help_text=Connection._meta.get_field("base_url").help_text,
    )
    settings = JSONInputField(
        required=False,
        help_text='A JSON object of the provider\'s settings, e.g. {"list_id": "abc123"} for Mailchimp.',
    )
    new_api_key = _secret_input("api_key")
    clear_api_key = _clear_box("api_key")
    new_access_token = _secret_input("access_token")
    clear_access_token = _clear_box("access_token")
    new_refresh_token = _secret_input("refresh_token")
    clear_refresh_token = _clear_box("refresh_token")
    new_webhook_secret = _secret_input("webhook_secret")
    clear_webhook_secret = _clear_box("webhook_secret")
    new_client_secret = _secret_input("client_secret")
    clear_client_secret = _clear_box("client_secret")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            field = self.fields.get(secret_input_name(name))
            if field is not None:
                is_set = bool(self.instance.pk and getattr(self.instance, name))
                field.help_text = "Set. Leave empty to keep it." if is_set else "Not set."

    def clean_base_url(self) -> str:
        # Here rather than among the field's validators, which run on input that is not a
        # URL at all ("[]" takes urlsplit for an IPv6 host and it raises).
        base_url = self.cleaned_data["base_url"]
        validate_public_base_url(base_url)
        return base_url

    def clean_rate_budget(self) -> str:
        return self.cleaned_data.get("rate_budget") or Connection.RateBudgetKept.SHARED

    def clean_settings(self) -> dict[str, Any]:
        settings = self.cleaned_data["settings"]
        if settings is None:
            # Left empty, or typed as null: no settings.
            return {}
        if not isinstance(settings, dict):
            raise forms.ValidationError(
                'Enter the settings as a JSON object, e.g. {"list_id": "abc123"}.', code="not_an_object"
            )
        return settings

    def clean(self):
        cleaned = super().clean()
        for name in SECRET_FIELDS:
            if cleaned.get(secret_input_name(name)) and cleaned.get(secret_clear_name(name)):
                self.add_error(
                    secret_clear_name(name),
                    f"Either enter a new {SECRET_LABELS[name]} or clear it, not both.",
                )
        return cleaned

    def connection_fields(self) -> dict[str, Any]:
        """Return the values to save: every plain field, and only the secrets to change."""
        values = {name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.cleaned_data}
        for name in SECRET_FIELDS:
            if self.cleaned_data.get(secret_clear_name(name)):
                values[name] = None
            elif self.cleaned_data.get(secret_input_name(name)):
                values[name] = self.cleaned_data[secret_input_name(name)]
        return values


EDITABLE_FIELDS = tuple(ConnectionForm.Meta.fields)
