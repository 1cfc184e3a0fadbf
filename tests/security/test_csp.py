"""The Content Security Policy: on every page, admin included, and nothing on those pages
needs more than it allows (no inline script, style or event handler)."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from syncapp.models import RecordError, SyncRun
from syncapp.roles import MARKETER
from syncapp.security.csp import ContentSecurityPolicyMiddleware, policy_header
from tests.workspace import run_make, user_with_role, workspace_make

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@pytest.fixture
def workspace(db):
    sync = workspace_make()
    run = run_make(sync, status=SyncRun.Status.PARTIAL, progress_done=3, progress_total=3, failed_count=1)
    RecordError.objects.create(run=run, connection=sync.endpoints.first().connection, external_id="7",
                               error_class="invalid_email", message="Invalid email <b>x</b>")
    return {"sync": sync, "run": run, "connection": sync.endpoints.first().connection}


def page_urls(workspace) -> list[str]:
    sync, run, connection = workspace["sync"], workspace["run"], workspace["connection"]
    return [
        reverse("dashboard"),
        reverse("sync_list"),
        reverse("sync_detail", args=[sync.pk]),
        reverse("run_detail", args=[sync.pk, run.pk]),
        reverse("admin:index"),
        reverse("admin:connections_connection_changelist"),
        reverse("admin:connections_connection_change", args=[connection.pk]),
        reverse("admin:connections_connection_add"),
        reverse("admin:syncapp_sync_change", args=[sync.pk]),
        reverse("admin:syncapp_syncrun_changelist"),
        reverse("admin:syncapp_syncrun_change", args=[run.pk]),
        reverse("admin:audit_auditevent_changelist"),
    ]


class InlineCode(HTMLParser):
    """Collect what a strict policy blocks: inline scripts and styles, handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and "src" not in attributes:
            self._in_script = True
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"inline script: {data.strip()[:60]}")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


def test_the_policy_header_is_built_from_the_setting(settings):
    assert policy_header(settings.SECURE_CSP) == POLICY


@pytest.mark.django_db
def test_the_login_page_and_error_pages_carry_the_policy(client):
    for url in (reverse("login"), reverse("admin:login"), "/no-such-page/"):
        assert client.get(url)["Content-Security-Policy"] == POLICY, url


def test_every_page_carries_the_policy_and_needs_nothing_inline(admin_client, workspace):
    for url in page_urls(workspace):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == POLICY, url
        assert inline_code(response.content.decode()) == [], url


def test_a_refusal_carries_the_policy_too(client, workspace):
    client.force_login(user_with_role("rita", "Reviewer"))
    response = client.get(reverse("sync_list"))
    assert response.status_code == 403
    assert response["Content-Security-Policy"] == POLICY
    assert inline_code(response.content.decode()) == []


def test_a_marketer_sees_the_same_policy(client, workspace):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    assert client.get(reverse("sync_detail", args=[workspace["sync"].pk]))["Content-Security-Policy"] == POLICY


def test_a_response_with_its_own_policy_keeps_it():
    own = "default-src 'none'"

    def view(request):
        response = HttpResponse("ok")
        response["Content-Security-Policy"] = own
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    assert response["Content-Security-Policy"] == own


def test_without_a_policy_setting_no_header_is_sent(settings):
    settings.SECURE_CSP = {}
    response = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("ok"))(RequestFactory().get("/"))
    assert "Content-Security-Policy" not in response
