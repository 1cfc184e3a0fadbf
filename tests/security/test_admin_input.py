"""The admin answers bad filters, ids and row counts with its "invalid" page or a form error."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from mappings.models import FieldMapping
from syncapp.models import Sync
from syncapp.roles import MARKETER
from syncapp.security.admin_input import BadInputRefusedMixin
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

HUGE = str(10**30)
PAST_64_BITS = str(2**63)


def logged_in(role: str | None = None, *, superuser: bool = False) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user_with_role("someone", role, staff=True, superuser=superuser))
    return client


@pytest.fixture
def sync() -> Sync:
    sync = workspace_make()
    run_make(sync)
    return sync


@pytest.mark.parametrize("list_name, query", [
    ("syncapp_syncrun", "started_at__year=99999999"),
    ("syncapp_syncrun", "queued_at__year=99999999"),
    ("syncapp_sync", "updated_at__year=-5"),
])
def test_a_year_no_date_can_have_is_reported_as_an_invalid_filter(sync, list_name, query):
    client = logged_in(MARKETER)
    url = reverse(f"admin:{list_name}_changelist")

    response = client.get(f"{url}?{query}")

    assert response.status_code == 302 and response["Location"] == f"{url}?e=1"
    assert client.get(response["Location"]).status_code == 200


@pytest.mark.parametrize("list_name, query", [
    ("syncapp_syncrun", f"sync={HUGE}"),
    ("syncapp_syncrun", f"id__in=1,{PAST_64_BITS}"),
    ("syncapp_syncrun", "cursors_before__contains={}"),
    ("syncapp_sync", "name__regex=("),
    ("syncapp_sync", "name__icontains=%00"),
    ("syncapp_recorderror", f"connection__in={HUGE}"),
    ("mappings_fieldmapping", f"connection={PAST_64_BITS}"),
    ("connections_connection", "settings__has_key=x&rate_limit_requests__gt=1e309"),
])
def test_a_filter_the_database_may_refuse_lists_nothing_or_is_reported_as_invalid(sync, list_name, query):
    """SQLite refuses some of these (64-bit overflow, JSON lookups it lacks), PostgreSQL others (NUL)."""
    url = reverse(f"admin:{list_name}_changelist")

    response = logged_in(MARKETER).get(f"{url}?{query}")

    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response["Location"] == f"{url}?e=1"


def test_a_filter_still_refused_on_the_invalid_page_shows_the_admins_error_page(sync):
    url = reverse("admin:syncapp_syncrun_changelist")
    response = logged_in(MARKETER).get(f"{url}?e=1&started_at__year=99999999")

    assert response.status_code == 200
    assert "Database error" in response.content.decode()


def test_valid_filters_still_filter(sync):
    other = Sync.objects.create(name="Other", schedule_minutes=0)
    run_make(other)
    url = reverse("admin:syncapp_syncrun_changelist")

    response = logged_in(MARKETER).get(f"{url}?sync__id__exact={other.pk}")

    assert response.status_code == 200
    assert [run.sync_id for run in response.context["cl"].result_list] == [other.pk]


@pytest.mark.parametrize("too_large", [PAST_64_BITS, HUGE])
def test_a_group_given_a_permission_id_past_the_range_is_a_form_error(too_large):
    permission = Permission.objects.first()
    response = logged_in(superuser=True).post(reverse("admin:auth_group_add"), {
        "name": "Auditors", "permissions": [str(permission.pk), too_large],
    })

    assert response.status_code == 200
    assert f"{too_large} is not one of the available choices" in response.content.decode()
    assert not Group.objects.filter(name="Auditors").exists()


def sync_form(sync: Sync, **overrides) -> dict:
    data = {
        "name": sync.name, "schedule_minutes": "15", "batch_size": "", "delete_handling": "ignore",
        "endpoints-TOTAL_FORMS": "0", "endpoints-INITIAL_FORMS": "0",
        "mappings-TOTAL_FORMS": "0", "mappings-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("formset, limit", [("endpoints", 20), ("mappings", 200)])
@pytest.mark.parametrize("claimed", ["201", PAST_64_BITS, HUGE])
def test_a_sync_form_claiming_more_rows_than_a_sync_has_is_refused_without_building_them(formset, limit, claimed):
    sync = Sync.objects.create(name="Empty", schedule_minutes=0)
    client = logged_in(MARKETER)

    response = client.post(reverse("admin:syncapp_sync_change", args=[sync.pk]),
                           sync_form(sync, **{f"{formset}-TOTAL_FORMS": claimed}))

    assert response.status_code == 200
    assert f"Please submit at most {limit} forms." in response.content.decode()
    built = {inline.formset.prefix: len(inline.formset.forms) for inline in response.context["inline_admin_formsets"]}
    assert built[formset] <= limit


def test_a_mapping_whose_transforms_are_not_json_is_a_form_error(sync):
    mapping = sync.mappings.first()
    client = logged_in(MARKETER)
    response = client.post(reverse("admin:mappings_fieldmapping_change", args=[mapping.pk]), {
        "sync": sync.pk, "connection": mapping.connection_id, "hub_field": "email", "external_field": "email",
        "direction": "both", "transforms": "[NaN]", "conflict_policy": "owner_wins",
    })

    assert response.status_code == 200
    assert "Numbers must be finite" in response.content.decode()
    assert FieldMapping.objects.get(pk=mapping.pk).transforms == mapping.transforms


def test_an_admin_object_id_with_a_nul_is_not_found():
    client = logged_in(superuser=True)

    response = client.get(reverse("admin:django_q_failure_change", args=["task\x00id"]))

    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_every_model_admin_refuses_bad_input():
    """Django's and django-q2's admins too, not only ours."""
    assert all(isinstance(model_admin, BadInputRefusedMixin) for model_admin in admin.site._registry.values())


def test_an_endpoint_row_repeating_a_stored_one_is_a_form_error(sync):
    """Rows sent as new (INITIAL_FORMS=0) for connections the sync already has: the constraint holds."""
    endpoints = list(sync.endpoints.order_by("pk"))
    rows = {}
    for index, endpoint in enumerate(endpoints):
        rows.update({f"endpoints-{index}-id": endpoint.pk, f"endpoints-{index}-sync": sync.pk,
                     f"endpoints-{index}-connection": endpoint.connection_id, f"endpoints-{index}-read": "on"})
    client = logged_in(MARKETER)

    response = client.post(reverse("admin:syncapp_sync_change", args=[sync.pk]), sync_form(
        sync, **{"endpoints-TOTAL_FORMS": str(len(endpoints)), "endpoints-INITIAL_FORMS": "0"}, **rows,
    ))

    assert response.status_code == 200
    assert "Sync connection with this Sync and Connection already exists." in response.content.decode()
    assert list(sync.endpoints.order_by("pk")) == endpoints
