"""Error pages and error mails that never show a secret.

Django masks settings and request headers whose names look secret, and whatever a view
marks with `sensitive_variables` or `sensitive_post_parameters`. These classes mask
more, always (with DEBUG on too): POST fields and local variables whose names look
secret (new_api_key, token, secrets...), passwords in URLs, and credential-looking text
in every other value, the exception message, the query string and the request's headers.

Names are not enough: a credential typed into the connection form travels down a dozen
frames as `value`, `values`, `fields` or inside a model instance, under names that say
nothing. So the reporter also gathers every value known to be secret (POST and query
fields with secret names, cookies, credential headers, secret settings, secret-named
locals, the encrypted fields of model instances in any frame) and masks each one
wherever it appears in the finished report.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cached_property
from types import FrameType

from django.conf import settings
from django.db import models
from django.template.defaultfilters import pprint
from django.utils.datastructures import MultiValueDict
from django.utils.html import escape
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from connections.fields import SecretField
from connections.redaction import REDACTED, redact

# Names whose values are credentials. Narrower than the filter's `hidden_settings`, which
# masks a variable called `key` or `token_url` where it is shown: a value gathered here
# is masked everywhere in the report, so `AUTH_USER_MODEL` must not make "auth.User" vanish.
SECRET_NAME = re.compile(
    r"(?i)secret_key|apikey$|(^|[-_])(secrets?|passw(or)?d\d?|passwd|api[-_]key|salt|salt_key|private[-_]key"
    r"|credentials?|signature|token|authorization|code)$"
)
# The password of a URL such as redis://:password@host or postgres://user:password@host.
URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)@")
# How far the gathering looks into nested values, and how many items of each.
GATHER_DEPTH = 4
GATHER_ITEMS = 200
# Shorter values would mask ordinary words all over the report; redact() uses the same floor.
SECRET_MIN_LENGTH = 4


class _Shown:
    """A value already rendered and redacted: the reporter prints it as it is."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _url_passwords_masked(text: str, substitute: str) -> str:
    return URL_PASSWORD.sub(lambda match: f"{match[1]}{substitute}@", text)


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request) -> bool:
        # Django leaves variables unmasked under DEBUG; a developer's screen and a
        # pasted traceback must not carry a customer's token either.
        return True

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            # REDIS_URL, a cache LOCATION, Q_CLUSTER's broker: names that say nothing.
            return _url_passwords_masked(cleansed, self.cleansed_substitute)
        return cleansed

    def get_safe_request_meta(self, request):
        # The query string, the referrer and the like can carry tokens (OAuth callbacks).
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in super().get_safe_request_meta(request).items()
        }

    def get_post_parameters(self, request):
        parameters = super().get_post_parameters(request)
        if not parameters:
            return parameters
        cleansed = parameters.copy()
        for name in cleansed:
            if self.hidden_settings.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self._cleanse_variable(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _cleanse_variable(self, name: str, value):
        if self.hidden_settings.search(name):
            return self.cleansed_substitute
        # cleanse_setting masks secret-looking keys of dictionaries, recursively.
        return _Shown(redact(pprint(self.cleanse_setting(name, value))))


def _gathered(name: str, value, found: set[str], depth: int = 0) -> None:
    """Add to `found` the secrets `value` holds, if it is a secret by `name` or holds some."""
    if depth > GATHER_DEPTH:
        return
    if isinstance(value, str):
        if SECRET_NAME.search(name):
            found.add(value)
            # "Bearer <token>", "Basic <credentials>": the credential alone may appear elsewhere.
            found.update(value.split()[1:2])
        found.update(match[2] for match in URL_PASSWORD.finditer(value))
    elif isinstance(value, models.Model):
        found.update(
            secret for model_field in value._meta.concrete_fields if isinstance(model_field, SecretField)
            # Read from the instance's dict: a deferred field must not be loaded here.
            if isinstance(secret := value.__dict__.get(model_field.attname), str)
        )
    elif isinstance(value, MultiValueDict):
        for key, items in list(value.lists())[:GATHER_ITEMS]:
            for item in items[:GATHER_ITEMS]:
                _gathered(str(key), item, found, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in list(value.items())[:GATHER_ITEMS]:
            _gathered(str(key), item, found, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        # Items keep the container's name: a list called `tokens` holds tokens.
        for item in list(value)[:GATHER_ITEMS]:
            _gathered(name, item, found, depth + 1)


class SecretSafeExceptionReporter(ExceptionReporter):
    def get_traceback_data(self):
        data = super().get_traceback_data()
        for key in ("exception_value", "exception_notes", "request_insecure_uri"):
            if key in data:
                data[key] = redact(data[key])
        if "request_GET_items" in data:
            data["request_GET_items"] = [
                (name, self._query_value(name, value)) for name, value in data["request_GET_items"]
            ]
        for frame in data["frames"]:
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = redact(str(frame["exc_cause"]))
        return data

    def get_traceback_html(self):
        html = super().get_traceback_html()
        for secret in self._known_secrets:
            html = html.replace(escape(secret), REDACTED).replace(secret, REDACTED)
        return html

    def get_traceback_text(self):
        # Error mails and plain-text error pages carry this form: mask anything
        # credential-like left in it.
        return redact(super().get_traceback_text(), self._known_secrets)

    @cached_property
    def _known_secrets(self) -> tuple[str, ...]:
        """Every secret value the request, the settings and the traceback's frames hold, longest first."""
        found: set[str] = set()
        if self.request is not None:
            _gathered("POST", getattr(self.request, "POST", {}), found)
            _gathered("GET", getattr(self.request, "GET", {}), found)
            # Every cookie: the session cookie is a credential, whatever its name.
            found.update(value for value in getattr(self.request, "COOKIES", {}).values() if isinstance(value, str))
            for name, value in getattr(self.request, "META", {}).items():
                # HTTP_AUTHORIZATION, HTTP_X_API_KEY and the like hold credentials whole.
                _gathered("authorization" if self.filter.hidden_settings.search(name) else name, value, found)
        for name in dir(settings):
            if name.isupper():
                _gathered(name, getattr(settings, name), found)
        for frame in self._frames():
            for name, value in frame.f_locals.items():
                _gathered(name, value, found)
        return tuple(sorted((secret for secret in found if len(secret) >= SECRET_MIN_LENGTH), key=len, reverse=True))

    def _frames(self) -> Iterator[FrameType]:
        """The frames of the exception and of each exception it was raised from or during."""
        seen: set[int] = set()
        exception, traceback = self.exc_value, self.tb
        while exception is not None and id(exception) not in seen:
            seen.add(id(exception))
            while traceback is not None:
                yield traceback.tb_frame
                traceback = traceback.tb_next
            exception = self._get_explicit_or_implicit_cause(exception)
            traceback = getattr(exception, "__traceback__", None)

    def _query_value(self, name: str, value: str) -> str:
        if self.filter.hidden_settings.search(name) or redact(f"{name}={value}") != f"{name}={value}":
            return self.filter.cleansed_substitute
        return value
