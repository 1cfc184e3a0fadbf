"""Who may open which page and take which action: one table of role by page.

Marketers run connections, mappings, syncs and runs; reviewers get none of those but
decide conflicts, which marketers and compliance may only look at; compliance reads the
audit trail; superusers reach everything, yet nobody edits runs or the audit trail. Every
role user is staff, as the demo makes them, so the admin's own permission checks are
what is under test.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

from audit.services import audit_record
from syncapp.models import Conflict, Contact, DuplicatePair, RecordError, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "marketer", "reviewer", "compliance", "superuser")
ROLE_GROUPS = {"marketer": MARKETER, "reviewer": REVIEWER, "compliance": COMPLIANCE}


@dataclass(frozen=True)
class Page:
    label: str
    method: str
    url_name: str
    # Names of the workspace objects whose ids the URL takes, in order.
    args: tuple[str, ...]
    # Expected status for anonymous, marketer, reviewer, compliance, superuser.
    expected: tuple[int, int, int, int, int]


def pages(label: str, url_name: str, args: tuple[str, ...], expected, method: str = "GET") -> Page:
    return Page(label, method, url_name, args, expected)


MARKETERS_ONLY = (302, 200, 403, 403, 200)
COMPLIANCE_READS = (302, 403, 403, 200, 200)
SUPERUSERS_ONLY = (302, 403, 403, 403, 200)
NOBODY = (302, 403, 403, 403, 403)
EVERY_ROLE = (302, 200, 200, 200, 200)
REVIEWERS_ONLY = (302, 403, 200, 403, 200)

TABLE = [
    # The app's pages.
    pages("login page", "login", (), (200, 302, 302, 302, 302)),
    pages("dashboard", "dashboard", (), (302, 200, 200, 200, 200)),
    pages("sync list", "sync_list", (), MARKETERS_ONLY),
    pages("sync page", "sync_detail", ("sync",), MARKETERS_ONLY),
    pages("run page", "run_detail", ("sync", "run"), MARKETERS_ONLY),
    pages("run progress", "run_progress", ("sync", "run"), MARKETERS_ONLY),
    pages("Run now", "sync_run_now", ("sync",), (302, 302, 403, 403, 302), method="POST"),
    pages("Run now by GET", "sync_run_now", ("sync",), (405, 405, 405, 405, 405)),
    pages("connection pages", "connections:list", (), MARKETERS_ONLY),
    pages("connection page", "connections:detail", ("connection",), MARKETERS_ONLY),
    pages("connect an account", "connections:connect", (), MARKETERS_ONLY),
    # Marketers get past the check to the refresh, which fails (the test connection is unreachable) with a message.
    pages("refresh a connection's fields", "connections:fields_refresh", ("connection",), (302, 302, 403, 403, 302),
          method="POST"),
    pages("review queue", "conflict_queue", (), EVERY_ROLE),
    pages("conflict page", "conflict_detail", ("conflict",), EVERY_ROLE),
    # Reviewers get past the permission check to the form, which refuses an empty decision.
    pages("resolve a conflict", "conflict_resolve", ("conflict",), (302, 403, 400, 403, 400), method="POST"),
    pages("resolve a conflict by GET", "conflict_resolve", ("conflict",), (405, 405, 405, 405, 405)),
    pages("resolve in bulk", "conflicts_resolve_bulk", (), (302, 403, 302, 403, 302), method="POST"),
    pages("contact list", "contact_list", (), EVERY_ROLE),
    pages("contact page", "contact_detail", ("contact",), EVERY_ROLE),
    # Those who may change contacts get past the check to the form, which refuses an empty statement.
    pages("record a consent statement", "contact_consent_record", ("contact",), (302, 403, 400, 403, 400),
          method="POST"),
    pages("duplicates list", "duplicate_list", (), REVIEWERS_ONLY),
    pages("duplicate pair", "duplicate_detail", ("pair",), REVIEWERS_ONLY),
    pages("merge a pair", "duplicate_merge", ("pair",), (302, 403, 400, 403, 400), method="POST"),
    pages("dismiss a pair", "duplicate_dismiss", ("pair",), (302, 403, 302, 403, 302), method="POST"),
    # The admin.
    pages("admin index", "admin:index", (), (302, 200, 200, 200, 200)),
    pages("connection list", "admin:connections_connection_changelist", (), MARKETERS_ONLY),
    pages("connection add", "admin:connections_connection_add", (), MARKETERS_ONLY),
    pages("connection change", "admin:connections_connection_change", ("connection",), MARKETERS_ONLY),
    pages("connection save", "admin:connections_connection_change", ("connection",), MARKETERS_ONLY, method="POST"),
    pages("connection delete", "admin:connections_connection_delete", ("connection",), MARKETERS_ONLY),
    pages("sync list (admin)", "admin:syncapp_sync_changelist", (), MARKETERS_ONLY),
    pages("sync add", "admin:syncapp_sync_add", (), MARKETERS_ONLY),
    pages("sync change", "admin:syncapp_sync_change", ("sync",), MARKETERS_ONLY),
    pages("sync save", "admin:syncapp_sync_change", ("sync",), MARKETERS_ONLY, method="POST"),
    pages("mapping list", "admin:mappings_fieldmapping_changelist", (), MARKETERS_ONLY),
    pages("mapping add", "admin:mappings_fieldmapping_add", (), MARKETERS_ONLY),
    pages("mapping change", "admin:mappings_fieldmapping_change", ("mapping",), MARKETERS_ONLY),
    pages("run list", "admin:syncapp_syncrun_changelist", (), MARKETERS_ONLY),
    pages("run view", "admin:syncapp_syncrun_change", ("run",), MARKETERS_ONLY),
    pages("run add", "admin:syncapp_syncrun_add", (), NOBODY),
    pages("run edit", "admin:syncapp_syncrun_change", ("run",), NOBODY, method="POST"),
    pages("run delete", "admin:syncapp_syncrun_delete", ("run",), NOBODY),
    pages("record error list", "admin:syncapp_recorderror_changelist", (), MARKETERS_ONLY),
    pages("record error view", "admin:syncapp_recorderror_change", ("record_error",), MARKETERS_ONLY),
    pages("record error add", "admin:syncapp_recorderror_add", (), NOBODY),
    pages("audit trail", "admin:audit_auditevent_changelist", (), COMPLIANCE_READS),
    pages("audit event view", "admin:audit_auditevent_change", ("audit_event",), COMPLIANCE_READS),
    pages("audit event add", "admin:audit_auditevent_add", (), NOBODY),
    pages("audit event edit", "admin:audit_auditevent_change", ("audit_event",), NOBODY, method="POST"),
    pages("audit event delete", "admin:audit_auditevent_delete", ("audit_event",), NOBODY),
    pages("user list", "admin:auth_user_changelist", (), SUPERUSERS_ONLY),
    pages("user change", "admin:auth_user_change", ("user",), SUPERUSERS_ONLY),
    pages("group list", "admin:auth_group_changelist", (), SUPERUSERS_ONLY),
    pages("task schedules", "admin:django_q_schedule_changelist", (), SUPERUSERS_ONLY),
    pages("successful tasks", "admin:django_q_success_changelist", (), SUPERUSERS_ONLY),
    pages("failed tasks", "admin:django_q_failure_changelist", (), SUPERUSERS_ONLY),
]


@pytest.fixture
def workspace() -> dict[str, int]:
    """The ids of one of each object the pages show."""
    sync = workspace_make()
    run = run_make(sync, status=SyncRun.Status.PARTIAL, failed_count=1)
    connection = sync.endpoints.first().connection
    error = RecordError.objects.create(run=run, connection=connection, external_id="42", error_class="invalid_email",
                                       message="Invalid email")
    event = audit_record(action="sync.created", obj=sync, changes={"name": [None, sync.name]})
    contact = Contact.objects.create(email="ann@example.com", first_name="Ann")
    conflict = Conflict.objects.create(sync=sync, contact=contact, hub_field="first_name", base_value="Ann",
                                       hub_value="Ann", sides=[])
    pair = DuplicatePair.objects.create(contact_a=contact, contact_b=Contact.objects.create(email="ann2@example.com"),
                                        reason=DuplicatePair.Reason.SAME_PHONE)
    return {
        "contact": contact.pk,
        "pair": pair.pk,
        "sync": sync.pk,
        "run": run.pk,
        "connection": connection.pk,
        "mapping": sync.mappings.first().pk,
        "record_error": error.pk,
        "audit_event": event.pk,
        "conflict": conflict.pk,
        "user": user_with_role("someone").pk,
    }


def log_in(client, role: str) -> User | None:
    if role == "anonymous":
        return None
    user = user_with_role(role, ROLE_GROUPS.get(role), staff=True, superuser=role == "superuser")
    client.force_login(user)
    return user


@pytest.mark.parametrize("page", TABLE, ids=[page.label for page in TABLE])
@pytest.mark.parametrize("role", ROLES)
def test_role_table(client, workspace, role, page):
    log_in(client, role)
    url = reverse(page.url_name, args=[workspace[name] for name in page.args])
    response = client.post(url, {}) if page.method == "POST" else client.get(url)

    expected = page.expected[ROLES.index(role)]
    assert response.status_code == expected, f"{role} {page.method} {url}"
    if expected == 302:
        login_page = reverse("admin:login") if url.startswith("/admin/") else reverse(settings.LOGIN_URL)
        sent_to_login = response["Location"].startswith(login_page)
        # Only visitors are sent to log in; a logged-in user's 302 is the page's own.
        assert sent_to_login == (role == "anonymous"), response["Location"]


@pytest.mark.parametrize(
    "role, visible",
    [
        ("marketer", {"connections.Connection", "syncapp.Sync", "syncapp.SyncRun", "syncapp.RecordError",
                      "mappings.FieldMapping"}),
        ("reviewer", set()),
        ("compliance", {"audit.AuditEvent"}),
    ],
)
def test_the_admin_index_lists_only_what_the_role_may_see(client, role, visible):
    log_in(client, role)
    response = client.get(reverse("admin:index"))
    listed = {f"{app['app_label']}.{model['object_name']}"
              for app in response.context["app_list"] for model in app["models"]}
    assert listed == visible


def test_the_superuser_sees_every_model_in_the_admin(client):
    from django.contrib import admin

    log_in(client, "superuser")
    response = client.get(reverse("admin:index"))
    listed = {f"{app['app_label']}.{model['object_name']}"
              for app in response.context["app_list"] for model in app["models"]}
    assert listed == {model._meta.label for model in admin.site._registry}


@pytest.mark.parametrize("role, creates_a_run", [("marketer", True), ("reviewer", False), ("compliance", False)])
def test_only_marketers_can_start_a_run(client, workspace, role, creates_a_run):
    log_in(client, role)
    client.post(reverse("sync_run_now", args=[workspace["sync"]]))
    assert SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL, requested_by__isnull=False).exists() == creates_a_run


@pytest.mark.parametrize("role", ["reviewer", "compliance"])
def test_other_roles_dashboards_show_no_connection_or_sync(client, workspace, role):
    log_in(client, role)
    page = client.get(reverse("dashboard")).content.decode()
    assert "HubSpot" not in page and "Mailchimp" not in page
    assert reverse("sync_list") not in page
