"""A canary secret, planted as every kind of credential, is found nowhere but in the
encrypted columns: not in logs, pages, error pages, error mails, task arguments, audit
payloads, error messages or any other column of the database.

The canary credentials are the real ones: a sandbox of their own accepts them, so the
app sends them over HTTP while runs meet 429s, 5xx, refused records, a revoked token and
an expired one.
"""
from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ, Schedule

from audit.models import AuditEvent
from connections.models import Connection
from connections.redaction import RedactSecretsFilter
from mappings.models import FieldMapping
from sandbox.launcher import SandboxProcess
from syncapp.models import RecordError, Sync, SyncConnection, SyncRun
from syncapp.roles import MARKETER
from syncapp.services.runs import run_execute
from tests.security.rawdb import encoded_rows, raw_rows
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CANARY = f"canary{secrets.token_hex(12)}"
HUBSPOT_TOKEN = f"pat-na1-{CANARY}"
MAILCHIMP_KEY = f"{CANARY}-us1"
REVOKED_TOKEN = f"revoked-{CANARY}"
SECRET_INPUTS = {
    "new_refresh_token": f"refresh-{CANARY}",
    "new_webhook_secret": f"whsec-{CANARY}",
    "new_client_secret": f"client-{CANARY}",
}


@pytest.fixture(scope="module")
def canary_sandbox():
    """A sandbox whose HubSpot token and Mailchimp key are the canaries."""
    process = SandboxProcess.start(
        "--hubspot-token", HUBSPOT_TOKEN, "--mailchimp-key", MAILCHIMP_KEY, "--hubspot-rate-limit", "0"
    )
    yield process
    process.stop()


@pytest.fixture
def app_log(caplog):
    """Everything logged at any level, as the records and as the app's handlers print it."""
    caplog.set_level(logging.DEBUG)
    printed = io.StringIO()
    handlers = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    assert handlers, "the console handler of settings.LOGGING is missing"
    streams = [handler.setStream(printed) for handler in handlers]
    yield caplog, printed
    for handler, stream in zip(handlers, streams, strict=True):
        handler.setStream(stream)


class Browsing:
    """A logged-in client that keeps every response it got."""

    def __init__(self, client: Client):
        self.client = client
        self.responses: list[tuple[str, str]] = []

    def get(self, url: str, **kwargs):
        return self._keep(url, self.client.get(url, **kwargs))

    def post(self, url: str, data: dict, **kwargs):
        return self._keep(url, self.client.post(url, data, **kwargs))

    def _keep(self, url, response):
        headers = "\n".join(f"{name}: {value}" for name, value in response.items())
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.responses.append((url, headers + "\n\n" + body.decode("utf-8", errors="replace")))
        return response


def connect(browsing: Browsing, name: str, provider: str, base_url: str, **fields) -> Connection:
    """Add a connection through the admin form, typing its secrets in as a marketer would."""
    data = {
        "name": name,
        "provider": provider,
        "base_url": base_url,
        "settings": "{}",
        "default_phone_region": "US",
        "scopes": "",
        "status": "connected",
        "token_expires_at_0": "",
        "token_expires_at_1": "",
        **fields,
    }
    response = browsing.post(reverse("admin:connections_connection_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Connection.objects.get(name=name)


def sync_between(name: str, hubspot: Connection, mailchimp: Connection) -> Sync:
    sync = Sync.objects.create(name=name, schedule_minutes=0)
    SyncConnection.objects.create(sync=sync, connection=hubspot, read=True, write=False)
    # Chosen, so that people of unknown consent become members (the default creates none).
    SyncConnection.objects.create(sync=sync, connection=mailchimp, read=False, write=True,
                                  new_member_status="subscribed", new_member_legal_basis="Canary test contacts")
    for connection, hub_field, external_field, direction, transforms in [
        (hubspot, "email", "email", "in", ["trim", "lowercase"]),
        (hubspot, "first_name", "firstname", "in", ["trim"]),
        (hubspot, "phone", "phone", "in", ["phone_e164"]),
        (mailchimp, "email", "email_address", "out", []),
        (mailchimp, "first_name", "FNAME", "out", []),
        (mailchimp, "phone", "PHONE", "out", []),
    ]:
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, transforms=transforms,
                                    is_owner=connection == hubspot)
    return sync


def run_through_the_page(browsing: Browsing, sync: Sync) -> SyncRun:
    """Press Run now (which queues a task), then execute the run as the worker would."""
    response = browsing.post(reverse("sync_run_now", args=[sync.pk]), {})
    assert response.status_code == 302
    run = sync.runs.get(status=SyncRun.Status.QUEUED)
    return run_execute(run_id=run.pk)


def pages_to_visit() -> Iterator[str]:
    """Every page that shows connections, syncs, runs, errors, the trail or the queue."""
    yield from (reverse("dashboard"), reverse("sync_list"))
    for sync in Sync.objects.all():
        yield reverse("sync_detail", args=[sync.pk])
        for run in sync.runs.all():
            yield reverse("run_detail", args=[sync.pk, run.pk])
            yield reverse("run_progress", args=[sync.pk, run.pk])
    for model in (Connection, Sync, SyncRun, RecordError, FieldMapping, AuditEvent, Schedule, OrmQ):
        # The queue's admin exists only with the ORM broker.
        if admin.site.is_registered(model):
            yield reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    yield reverse("admin:connections_connection_add")
    for queryset in (Connection.objects.all(), Sync.objects.all(), SyncRun.objects.all(),
                     RecordError.objects.all()[:20], AuditEvent.objects.all(), OrmQ.objects.all()):
        for row in queryset:
            if admin.site.is_registered(type(row)):
                yield reverse(f"admin:{row._meta.app_label}_{row._meta.model_name}_change", args=[row.pk])


def logged_text(caplog, printed: io.StringIO) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join([*(formatter.format(record) for record in caplog.records), printed.getvalue()])


def test_the_canary_is_nowhere_but_in_the_encrypted_columns(client, canary_sandbox, app_log, queued_tasks):
    caplog, printed = app_log
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    marketer = Browsing(client)

    hubspot = connect(marketer, "HubSpot", "hubspot", canary_sandbox.hubspot_url,
                      new_access_token=HUBSPOT_TOKEN, **SECRET_INPUTS)
    mailchimp = connect(marketer, "Mailchimp", "mailchimp", canary_sandbox.mailchimp_url, new_api_key=MAILCHIMP_KEY,
                        settings=json.dumps({"list_id": canary_sandbox.list_id}), **SECRET_INPUTS)
    revoked = connect(marketer, "HubSpot (revoked)", "hubspot", canary_sandbox.hubspot_url,
                      new_access_token=REVOKED_TOKEN)
    refused = marketer.post(reverse("admin:connections_connection_add"), {
        "name": "Metadata", "provider": "hubspot", "base_url": "http://169.254.169.254/latest",
        "settings": "{}", "default_phone_region": "US", "status": "connected", "new_access_token": CANARY,
    })
    assert refused.status_code == 200 and "private or local network" in refused.content.decode()

    sync = sync_between("HubSpot to Mailchimp", hubspot, mailchimp)
    revoked_sync = sync_between("Revoked HubSpot to Mailchimp", revoked, mailchimp)
    canary_sandbox.seed(hubspot_contacts=40, hostile=True, random_seed=11)
    # Every call fails until two faults were served: 429s, 5xx and dropped connections.
    canary_sandbox.faults(provider="all", rate=0.6, reset_rate=0.4, statuses=[429, 500, 503], count=2, retry_after=0,
                          random_seed=11)

    flaky_run = run_through_the_page(marketer, sync)
    revoked_run = run_through_the_page(marketer, revoked_sync)
    canary_sandbox.clear_faults()
    canary_sandbox.faults(provider="hubspot", expire_tokens=True)
    expired_run = run_through_the_page(marketer, sync)
    canary_sandbox.clear_faults()

    # The canaries did their work: they were sent and accepted, refused, or expired.
    assert flaky_run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), flaky_run.error
    assert flaky_run.failed_count > 0 and canary_sandbox.mailchimp_members()
    assert "retry" in printed.getvalue()
    assert revoked_run.status == SyncRun.Status.FAILED and "401" in revoked_run.error
    assert expired_run.status == SyncRun.Status.FAILED and "expired" in expired_run.error
    assert Connection.objects.get(pk=revoked.pk).status == Connection.Status.NEEDS_REAUTH

    superuser = Browsing(Client())
    superuser.client.force_login(user_with_role("root", superuser=True))
    for url in pages_to_visit():
        for browsing in (marketer, superuser):
            browsing.get(url)

    # Queued tasks carry ids only.
    tasks = queued_tasks()
    for task in tasks:
        assert all(isinstance(arg, int) for arg in task["args"]) and task["kwargs"] == {}, task
        assert CANARY not in repr(task)
    assert {(flaky_run.pk,), (revoked_run.pk,), (expired_run.pk,)} <= {tuple(task["args"]) for task in tasks}

    leaks = [f"response {url}" for url, text in marketer.responses + superuser.responses if CANARY in text]
    leaks += ["logs"] if CANARY in logged_text(caplog, printed) else []
    leaks += [f"column {table}.{column}" for table, column, text in raw_rows() if CANARY in text]
    leaks += [f"encoded {where}" for where, text in encoded_rows() if CANARY in text]
    assert leaks == []
    assert len(marketer.responses) + len(superuser.responses) > 50


@pytest.fixture
def hubspot_connection():
    return Connection.objects.create(name="HubSpot", provider="hubspot", base_url="https://api.hubapi.com",
                                     access_token=HUBSPOT_TOKEN, webhook_secret=SECRET_INPUTS["new_webhook_secret"])


def fail_with_a_secret(client: Client):
    return client.post(f"/fail/HubSpot/?access_token={CANARY}&page=2", {"new_api_key": CANARY, "name": "x"})


@pytest.mark.urls("tests.security.crash_urls")
def test_the_server_error_page_log_and_mail_show_no_secret(settings, hubspot_connection, app_log):
    caplog, printed = app_log
    settings.DEBUG = False
    settings.ADMINS = [("Operations", "ops@example.com")]
    client = Client(raise_request_exception=False)

    response = fail_with_a_secret(client)
    assert response.status_code == 500
    assert CANARY not in response.content.decode()

    logged = logged_text(caplog, printed)
    assert "ProviderError" in logged and CANARY not in logged
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    # The mail is a full report: the traceback, the query string, the posted fields.
    assert "fail_with_a_secret_in_scope" in message.body
    assert "access_token = '[redacted]'" in message.body and "new_api_key = '[redacted]'" in message.body
    assert CANARY not in message.subject + message.body


@pytest.mark.urls("tests.security.crash_urls")
def test_the_debug_error_page_and_log_show_no_secret(settings, hubspot_connection, app_log):
    caplog, printed = app_log
    settings.DEBUG = True
    response = fail_with_a_secret(Client(raise_request_exception=False))
    page = response.content.decode()
    assert response.status_code == 500
    # The technical page is there, with each frame's variables, only masked.
    assert "fail_with_a_secret_in_scope" in page and "********************" in page
    assert CANARY not in page
    logged = logged_text(caplog, printed)
    assert "ProviderError" in logged and CANARY not in logged


def test_every_log_handler_redacts():
    """A handler without the filter would print what the others mask."""
    unfiltered = [
        (name, type(handler).__name__)
        for name, logger in [("root", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        # pytest's own capture handlers, and handlers that drop everything.
        if not type(handler).__module__.startswith("_pytest") and not isinstance(handler, logging.NullHandler)
        and not any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
    ]
    assert unfiltered == []
