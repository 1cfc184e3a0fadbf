import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import Connection
from mappings.models import FieldMapping
from syncapp import queue
from syncapp.models import RecordError, Sync, SyncConnection, SyncRun
from syncapp.roles import MARKETER
from syncapp.services.schedules import schedule_name
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

# django-q2 registers its queue page (OrmQ) only with the ORM broker, so the pages
# checked are those registered under the broker in use.
DJANGO_Q_PAGES = [model._meta.model_name for model in admin.site._registry if model._meta.app_label == "django_q"]


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    return client


def sync_form_data(sync: Sync, **overrides) -> dict:
    """What the sync change form posts when the user edits nothing."""
    data = {
        "name": sync.name,
        "schedule_minutes": sync.schedule_minutes,
        "batch_size": sync.batch_size or "",
        "delete_handling": sync.delete_handling,
    }
    if sync.paused:
        data["paused"] = "on"
    endpoints = list(sync.endpoints.all())
    data.update({"endpoints-TOTAL_FORMS": len(endpoints), "endpoints-INITIAL_FORMS": len(endpoints)})
    for index, endpoint in enumerate(endpoints):
        data.update({
            f"endpoints-{index}-id": endpoint.pk,
            f"endpoints-{index}-sync": sync.pk,
            f"endpoints-{index}-connection": endpoint.connection_id,
        })
        data.update({f"endpoints-{index}-{flag}": "on" for flag in ("read", "write") if getattr(endpoint, flag)})
    mappings = list(sync.mappings.all())
    data.update({"mappings-TOTAL_FORMS": len(mappings), "mappings-INITIAL_FORMS": len(mappings)})
    for index, mapping in enumerate(mappings):
        data.update({
            f"mappings-{index}-id": mapping.pk,
            f"mappings-{index}-sync": sync.pk,
            f"mappings-{index}-connection": mapping.connection_id,
            f"mappings-{index}-hub_field": mapping.hub_field,
            f"mappings-{index}-external_field": mapping.external_field,
            f"mappings-{index}-direction": mapping.direction,
            f"mappings-{index}-transforms": "[]",
            f"mappings-{index}-conflict_policy": mapping.conflict_policy,
        })
        if mapping.never_overwrite_with_empty:
            data[f"mappings-{index}-never_overwrite_with_empty"] = "on"
    data.update(overrides)
    return data


def test_saving_the_sync_form_audits_the_sync_and_its_mappings(marketer_client, sync):
    url = reverse("admin:syncapp_sync_change", args=[sync.pk])
    mailchimp = Connection.objects.get(name="Mailchimp")
    data = sync_form_data(sync, schedule_minutes=30)
    data.update({
        "mappings-TOTAL_FORMS": 5,
        "mappings-4-sync": sync.pk,
        "mappings-4-connection": mailchimp.pk,
        "mappings-4-hub_field": "last_name",
        "mappings-4-external_field": "LNAME",
        "mappings-4-direction": "out",
        "mappings-4-transforms": '["trim"]',
        "mappings-4-conflict_policy": "owner_wins",
        "mappings-0-DELETE": "on",
    })
    response = marketer_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    sync.refresh_from_db()
    assert sync.schedule_minutes == 30
    actions = sorted(AuditEvent.objects.values_list("action", flat=True))
    assert actions == ["mapping.created", "mapping.deleted", "sync.updated"]
    updated = AuditEvent.objects.get(action="sync.updated")
    assert updated.changes == {"schedule_minutes": [15, 30]}
    assert updated.actor.username == "maria"
    created = AuditEvent.objects.get(action="mapping.created")
    assert created.changes["external_field"] == [None, "LNAME"]
    assert FieldMapping.objects.filter(sync=sync, external_field="LNAME", transforms=["trim"]).exists()
    assert queue.schedule_minutes(name=schedule_name(sync.pk)) == 30


def test_an_unchanged_submission_writes_no_audit_rows(marketer_client, sync):
    response = marketer_client.post(reverse("admin:syncapp_sync_change", args=[sync.pk]), sync_form_data(sync))
    assert response.status_code == 302
    assert not AuditEvent.objects.exists()


def test_the_endpoint_cursor_is_shown_but_never_editable(marketer_client, sync):
    endpoint = sync.endpoints.first()
    SyncConnection.objects.filter(pk=endpoint.pk).update(cursor="2026-01-01T00:00:00Z",
                                                         cursor_updated_at=timezone.now())
    html = marketer_client.get(reverse("admin:syncapp_sync_change", args=[sync.pk])).content.decode()
    assert "2026-01-01T00:00:00Z" in html
    assert 'name="endpoints-0-cursor"' not in html

    # A cursor the engine moves while the form is open survives the form's save.
    SyncConnection.objects.filter(pk=endpoint.pk).update(cursor="2026-02-02T00:00:00Z")
    data = sync_form_data(sync)
    data.pop("endpoints-0-write", None)
    data["endpoints-0-write"] = "on"
    marketer_client.post(reverse("admin:syncapp_sync_change", args=[sync.pk]), data)
    endpoint.refresh_from_db()
    assert endpoint.cursor == "2026-02-02T00:00:00Z"


def test_unknown_hub_fields_and_transforms_are_refused(marketer_client, sync):
    data = sync_form_data(sync, **{"mappings-0-hub_field": "shoe_size", "mappings-1-transforms": '["rot13"]'})
    response = marketer_client.post(reverse("admin:syncapp_sync_change", args=[sync.pk]), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown hub field" in html and "rot13" in html
    assert not AuditEvent.objects.exists()


def test_deleting_a_sync_audits_it_with_its_endpoints_and_mappings(marketer_client, sync):
    response = marketer_client.post(reverse("admin:syncapp_sync_delete", args=[sync.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Sync.objects.exists()
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("sync.deleted") == 1
    assert actions.count("endpoint.deleted") == 2
    assert actions.count("mapping.deleted") == 4


def test_runs_are_read_only_and_link_to_their_record_errors(marketer_client, sync, hostile_contacts):
    run = run_make(sync, status=SyncRun.Status.PARTIAL, read_count=10, failed_count=1, api_calls={"HubSpot": 3})
    mailchimp = Connection.objects.get(name="Mailchimp")
    RecordError.objects.create(
        run=run, connection=mailchimp, external_id="xss1@example.com", error_class="invalid_resource",
        message=hostile_contacts[0]["firstname"],
    )
    url = reverse("admin:syncapp_syncrun_change", args=[run.pk])
    html = marketer_client.get(url).content.decode()
    assert 'name="_save"' not in html
    assert "1 record error" in html and f"run__id__exact={run.pk}" in html
    assert marketer_client.post(url, {"status": "succeeded"}).status_code == 403
    assert marketer_client.get(reverse("admin:syncapp_syncrun_add")).status_code == 403
    run.refresh_from_db()
    assert run.status == SyncRun.Status.PARTIAL

    errors = marketer_client.get(reverse("admin:syncapp_recorderror_changelist"), {"run__id__exact": run.pk})
    assert errors.status_code == 200
    html = errors.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)</script>" not in html
    filtered = marketer_client.get(reverse("admin:syncapp_recorderror_changelist"), {"retriable__exact": "1"})
    assert "xss1@example.com" not in filtered.content.decode()


def test_the_task_queue_admin_is_for_superusers_only(client):
    marketer = user_with_role("maria", MARKETER, staff=True)
    # Even a user granted django-q2's permissions directly does not get its pages.
    marketer.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))
    client.force_login(marketer)
    assert "Task queue" not in client.get(reverse("admin:index")).content.decode()
    for model in DJANGO_Q_PAGES:
        assert client.get(reverse(f"admin:django_q_{model}_changelist")).status_code == 403

    client.force_login(user_with_role("root", superuser=True))
    assert "Task queue" in client.get(reverse("admin:index")).content.decode()
    for model in DJANGO_Q_PAGES:
        assert client.get(reverse(f"admin:django_q_{model}_changelist")).status_code == 200
