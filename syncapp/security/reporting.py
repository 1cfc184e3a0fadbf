"""Error pages and error mails that never show a secret.

Django masks settings and request headers whose names look secret, and whatever a view
marks with `sensitive_variables` or `sensitive_post_parameters`. These classes mask
more, always (with DEBUG on too): POST fields and local variables whose names look
secret (new_api_key, token, secrets...), and credential-looking text in every other
value, the exception message, the query string and the request's headers.
"""
from __future__ import annotations

from django.template.defaultfilters import pprint
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from connections.redaction import redact


class _Shown:
    """A value already rendered and redacted: the reporter prints it as it is."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request) -> bool:
        # Django leaves variables unmasked under DEBUG; a developer's screen and a
        # pasted traceback must not carry a customer's token either.
        return True

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

    def get_traceback_text(self):
        # Error mails and plain-text error pages carry this form: mask anything
        # credential-like left in it.
        return redact(super().get_traceback_text())

    def _query_value(self, name: str, value: str) -> str:
        if self.filter.hidden_settings.search(name) or redact(f"{name}={value}") != f"{name}={value}":
            return self.filter.cleansed_substitute
        return value
