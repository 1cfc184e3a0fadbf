"""The debug page and the error mails show no credential, wherever the crash left one.

A credential typed into the connection form ends up in the local variables of a dozen
frames under names that say nothing (`value`, `values`, `obj`, `fields`): the reports
mask every value the request, the settings or any frame holds as a secret, wherever
else it appears, besides the names and shapes that look secret.
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager

import pytest
from django.core import mail
from django.db import connection as db
from django.test import Client
from django.urls import reverse

from connections.models import Connection
from syncapp.roles import MARKETER
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db

CANARY = f"canary{secrets.token_hex(8)}"
TYPED = {
    "new_api_key": f"{CANARY}-key-us1",
    "new_access_token": f"pat-na1-{CANARY}",
    "new_refresh_token": f"refresh-{CANARY}",
    "new_webhook_secret": f"whsec-{CANARY}",
    "new_client_secret": f"client-{CANARY}",
}
REFUSAL = "the disk is full"
ADD_URL = "/admin/connections/connection/add/"


@contextmanager
def connection_writes_refused():
    """Make the database refuse every write to connections, as a full disk would."""
    table = Connection._meta.db_table
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            cursor.execute(f"CREATE FUNCTION refuse_write() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION '{REFUSAL}'; "
                           "END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION refuse_write()")
        else:
            for event in ("INSERT", "UPDATE"):
                cursor.execute(f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {table} "
                               f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")
    yield


def form_data(**overrides) -> dict:
    return {
        "name": "HubSpot", "provider": "hubspot", "base_url": "http://127.0.0.1:9/hubspot", "settings": "{}",
        "default_phone_region": "US", "status": "connected", "token_expires_at_0": "", "token_expires_at_1": "",
        "scopes": "", "rate_limit_requests": "", "rate_limit_window_seconds": "", "max_concurrency": "",
        **TYPED, **overrides,
    }


@pytest.fixture
def marketer() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    return client


@pytest.fixture(params=["add", "change"])
def form_url(request) -> str:
    if request.param == "add":
        return reverse("admin:connections_connection_add")
    stored = Connection.objects.create(name="HubSpot", provider="hubspot", base_url="http://127.0.0.1:9/hubspot")
    return reverse("admin:connections_connection_change", args=[stored.pk])


# The technical report as a browser gets it, with every frame's variables, and as text.
REPORT_MARKERS = {"text/html": "Local vars", "text/plain": "Traceback (most recent call last)"}


@pytest.mark.parametrize("accept", REPORT_MARKERS)
def test_the_debug_page_masks_credentials_typed_into_the_connection_form(settings, marketer, form_url, accept):
    settings.DEBUG = True
    with connection_writes_refused():
        response = marketer.post(form_url, form_data(), HTTP_ACCEPT=accept)

    page = response.content.decode()
    assert response.status_code == 500
    assert REFUSAL in page and REPORT_MARKERS[accept] in page
    assert "connection_create" in page or "connection_update" in page
    assert "new_api_key" in page
    assert CANARY not in page


def test_the_error_mail_masks_credentials_typed_into_the_connection_form(settings, marketer, form_url):
    settings.DEBUG = False
    settings.ADMINS = [("Operations", "ops@example.com")]
    with connection_writes_refused():
        response = marketer.post(form_url, form_data())

    assert response.status_code == 500
    assert len(mail.outbox) == 1
    report = mail.outbox[0]
    assert "Traceback (most recent call last)" in report.body and "new_api_key" in report.body
    assert CANARY not in report.subject + report.body


def test_the_debug_page_masks_secrets_in_settings_under_any_name(settings, marketer):
    settings.DEBUG = True
    settings.REDIS_URL = f"redis://:{CANARY}@127.0.0.1:6379/0"
    settings.CACHES = {**settings.CACHES, "other": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                                    "LOCATION": f"redis://ops:{CANARY}@127.0.0.1:6379/1"}}
    with connection_writes_refused():
        page = marketer.post(ADD_URL, form_data(**{name: "" for name in TYPED})).content.decode()

    assert "REDIS_URL" in page and "127.0.0.1:6379" in page
    assert CANARY not in page


def test_the_debug_page_masks_credentials_sent_in_headers_and_the_query_string(settings, marketer):
    settings.DEBUG = True
    with connection_writes_refused():
        page = marketer.post(
            f"{ADD_URL}?hapikey={CANARY}&next=/", form_data(**{name: "" for name in TYPED}),
            HTTP_AUTHORIZATION=f"Bearer {CANARY}", HTTP_X_API_KEY=CANARY, HTTP_X_FORWARDED_FOR="203.0.113.9",
        ).content.decode()

    assert "203.0.113.9" in page
    assert CANARY not in page


@pytest.mark.urls("tests.security.crash_urls")
def test_a_secret_read_from_the_database_is_masked_in_every_frame(settings):
    """The crashing view holds the connection itself: its decrypted credentials are masked too."""
    settings.DEBUG = True
    Connection.objects.create(name="HubSpot", provider="hubspot", base_url="https://api.hubapi.com",
                              access_token=f"pat-na1-{CANARY}", refresh_token=f"refresh-{CANARY}",
                              webhook_secret=f"whsec-{CANARY}")

    page = Client(raise_request_exception=False).get("/fail/HubSpot/").content.decode()

    assert "fail_with_a_secret_in_scope" in page and "HubSpot" in page
    assert CANARY not in page
