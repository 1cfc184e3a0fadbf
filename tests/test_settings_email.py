"""Outgoing mail is configured by EMAIL_URL: the console in development, SMTP in production."""
import json

from tests.test_settings import PRODUCTION_KEYS, run_python

SHOW_EMAIL = """
import json
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in (
    "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_USE_TLS", "DEFAULT_FROM_EMAIL")}))
"""


def email_settings(**env: str) -> dict:
    result = run_python(SHOW_EMAIL, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_development_prints_mails_on_the_console():
    assert email_settings()["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_production_sends_through_the_local_relay_unless_told_otherwise():
    loaded = email_settings(DJANGO_SETTINGS_MODULE="syncapp.settings.production", ALLOWED_HOSTS="sync.example.com",
                            **PRODUCTION_KEYS)
    assert (loaded["EMAIL_BACKEND"], loaded["EMAIL_HOST"], loaded["EMAIL_PORT"]) == (
        "django.core.mail.backends.smtp.EmailBackend", "localhost", 25)


def test_an_email_url_names_the_server_the_account_and_tls():
    loaded = email_settings(EMAIL_URL="smtp+tls://alerts:pw@mail.example.com:587",
                            DEFAULT_FROM_EMAIL="Syncapp <alerts@example.com>")
    assert (loaded["EMAIL_BACKEND"], loaded["EMAIL_HOST"], loaded["EMAIL_PORT"], loaded["EMAIL_HOST_USER"],
            loaded["EMAIL_USE_TLS"]) == ("django.core.mail.backends.smtp.EmailBackend", "mail.example.com", 587,
                                         "alerts", True)
    assert loaded["DEFAULT_FROM_EMAIL"] == "Syncapp <alerts@example.com>"
