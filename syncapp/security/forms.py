"""Login forms that refuse locked-out usernames and addresses with a clear message."""
from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import ngettext

from syncapp.security.throttle import client_ip, login_lockout_seconds


class ThrottledLoginMixin:
    """Check the lockout before the password, so a locked-out login is never tried."""

    def clean(self):
        seconds = login_lockout_seconds(username=self.cleaned_data.get("username") or "", ip=client_ip(self.request))
        if seconds:
            minutes = math.ceil(seconds / 60)
            raise forms.ValidationError(
                ngettext(
                    "Too many failed login attempts. Try again in %(minutes)d minute.",
                    "Too many failed login attempts. Try again in %(minutes)d minutes.",
                    minutes,
                ),
                code="locked_out",
                params={"minutes": minutes},
            )
        return super().clean()


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The app's login form."""


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's login form."""
