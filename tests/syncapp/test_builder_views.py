"""The sync builder's pages: a marketer creates, edits, pauses, resumes and deletes a sync, each audited."""
from __future__ import annotations

import html

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from audit.models import AuditEvent
from mappings.models import FieldMapping
from syncapp.engine.schedule import next_run_at
from syncapp.models import Sync, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from syncapp.services.schedules import schedule_name
from syncapp.services.syncs import sync_pause
from tests.workspace import connection_make, run_make, user_with_role

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def marketer():
    return user_with_role("maria", MARKETER)


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


@pytest.fixture
def connections():
    return {
        "hubspot": connection_make("HubSpot", "hubspot", access_token="hs-token-0123456789"),
        "mailchimp": connection_make("Mailchimp", "mailchimp", api_key="mc-key-0123456789-us1",
                                     settings={"list_id": "abc"}),
    }


def builder_post(connections, marketer, **fields) -> dict:
    """HubSpot read, Mailchimp written with new members pending, every 15 minutes."""
    data = {
        "name": "HubSpot to Mailchimp",
        "owner": str(marketer.pk),
        "schedule": "interval",
        "schedule_minutes": "15",
        "schedule_cron": "",
        "batch_size": "",
        "delete_handling": "archive",
        "endpoints-TOTAL_FORMS": "2",
        "endpoints-INITIAL_FORMS": "2",
        "endpoints-0-connection": str(connections["hubspot"].pk),
        "endpoints-0-role": "read",
        "endpoints-1-connection": str(connections["mailchimp"].pk),
        "endpoints-1-role": "write",
        "endpoints-1-new_member_status": "pending",
        "endpoints-1-new_member_legal_basis": "",
    }
    data.update(fields)
    return data


@pytest.fixture
def sync(marketer_client, connections, marketer):
    response = marketer_client.post(reverse("sync_create"), builder_post(connections, marketer))
    assert response.status_code == 302, response.content.decode()[:3000]
    return Sync.objects.get(name="HubSpot to Mailchimp")


def schedule_of(sync):
    return Schedule.objects.filter(name=schedule_name(sync.pk)).first()


class TestCreate:
    def test_the_new_sync_page_lists_every_connection_with_no_status_preselected(self, marketer_client, connections):
        response = marketer_client.get(reverse("sync_create"))
        assert response.status_code == 200
        page = response.content.decode()
        assert "HubSpot" in page and "Mailchimp" in page
        assert "Pending (double opt-in)" in page and "Transactional" in page and "Subscribed" in page
        assert 'name="endpoints-1-new_member_status"' in page
        assert "checked" not in page.split('name="endpoints-1-new_member_status"')[1].split(">")[0]
        assert "realtime" not in page.lower() and "real-time" not in page.lower()
        # Reached from the nav and the sync list.
        assert reverse("sync_create") in marketer_client.get(reverse("sync_list")).content.decode()

    def test_a_marketer_creates_a_sync_audited_with_its_values(self, sync, marketer):
        assert (sync.schedule_minutes, sync.schedule_cron, sync.delete_handling, sync.owner) == (
            15, "", "archive", marketer)
        created = AuditEvent.objects.get(action="sync.created")
        assert created.actor == marketer
        assert created.changes["name"] == [None, "HubSpot to Mailchimp"]
        assert created.changes["delete_handling"] == [None, "archive"]
        endpoints = AuditEvent.objects.filter(action="endpoint.created").order_by("id")
        assert [event.changes["new_member_status"] for event in endpoints] == [[None, ""], [None, "pending"]]
        assert {event.actor for event in endpoints} == {marketer}

    def test_an_interval_schedule_row_in_the_task_queue(self, sync):
        schedule = schedule_of(sync)
        assert (schedule.schedule_type, schedule.minutes, schedule.func, schedule.args) == (
            Schedule.MINUTES, 15, "syncapp.tasks.run_scheduled_task", f"({sync.pk},)")

    def test_a_cron_schedule_row_in_the_task_queue(self, marketer_client, connections, marketer):
        before = timezone.now()
        response = marketer_client.post(reverse("sync_create"), builder_post(
            connections, marketer, schedule="cron", schedule_cron="0 6 * * 1-5"))
        assert response.status_code == 302
        sync = Sync.objects.get()
        schedule = schedule_of(sync)
        assert (schedule.schedule_type, schedule.cron, schedule.minutes) == (Schedule.CRON, "0 6 * * 1-5", None)
        assert schedule.next_run == next_run_at(minutes=0, cron="0 6 * * 1-5", now=before)
        # The sync page shows the schedule in words and the scheduler's next run.
        page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        assert "On the cron schedule 0 6 * * 1-5" in page
        assert f'datetime="{timezone.localtime(schedule.next_run).isoformat()}"' in page

    def test_a_refused_form_saves_nothing_and_keeps_what_was_typed(self, marketer_client, connections, marketer):
        response = marketer_client.post(reverse("sync_create"), builder_post(
            connections, marketer, name="Keep me", schedule="cron", schedule_cron="0 25 * * *"))
        assert response.status_code == 400
        page = response.content.decode()
        assert "The hour field “25” is not valid: use 0 to 23" in html.unescape(page)
        assert 'value="Keep me"' in page and 'value="0 25 * * *"' in page
        assert not Sync.objects.exists() and not AuditEvent.objects.exists()
        assert not Schedule.objects.filter(name__startswith="sync:").exists()

    def test_the_next_run_is_shown_on_the_form_after_validation(self, marketer_client, connections, marketer):
        # Valid schedule, refused elsewhere: the form says when this schedule would run.
        response = marketer_client.post(reverse("sync_create"), builder_post(
            connections, marketer, name="", schedule="cron", schedule_cron="@daily"))
        assert response.status_code == 400
        page = response.content.decode()
        assert "Next run with this schedule:" in page
        tomorrow = (timezone.localtime() + timezone.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
        assert f'datetime="{tomorrow}' in page

    def test_a_hostile_name_is_stored_and_shown_as_text(self, marketer_client, connections, marketer):
        response = marketer_client.post(reverse("sync_create"), builder_post(connections, marketer, name=SCRIPT))
        assert response.status_code == 302
        page = marketer_client.get(response["Location"]).content.decode()
        assert SCRIPT not in page and html.escape(SCRIPT) in page

    def test_a_legal_basis_of_10000_characters_is_refused_cleanly(self, marketer_client, connections, marketer):
        response = marketer_client.post(reverse("sync_create"), builder_post(
            connections, marketer, **{"endpoints-1-new_member_status": "subscribed",
                                       "endpoints-1-new_member_legal_basis": "b" * 10_000}))
        assert response.status_code == 400
        assert "at most 2000 characters" in response.content.decode()
        assert not Sync.objects.exists()


class TestEdit:
    def test_changes_are_audited_with_before_and_after(self, marketer_client, sync, connections, marketer):
        response = marketer_client.post(reverse("sync_edit", args=[sync.pk]), builder_post(
            connections, marketer, schedule="cron", schedule_cron="30 7 * * *",
            **{"endpoints-1-new_member_status": "subscribed",
               "endpoints-1-new_member_legal_basis": "Consent on the signup form"}))
        assert response.status_code == 302
        updated = AuditEvent.objects.get(action="sync.updated")
        assert updated.actor == marketer
        assert updated.changes == {"schedule_minutes": [15, 0], "schedule_cron": ["", "30 7 * * *"]}
        endpoint = AuditEvent.objects.get(action="endpoint.updated")
        assert endpoint.changes == {"new_member_status": ["pending", "subscribed"],
                                    "new_member_legal_basis": ["", "Consent on the signup form"]}
        assert (schedule_of(sync).schedule_type, schedule_of(sync).cron) == (Schedule.CRON, "30 7 * * *")
        page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        assert "Subscribed" in page and "Legal basis: Consent on the signup form" in page

    def test_back_to_an_interval_and_then_off(self, marketer_client, sync, connections, marketer):
        marketer_client.post(reverse("sync_edit", args=[sync.pk]),
                             builder_post(connections, marketer, schedule="cron", schedule_cron="@hourly"))
        marketer_client.post(reverse("sync_edit", args=[sync.pk]),
                             builder_post(connections, marketer, schedule="interval", schedule_minutes="45"))
        assert (schedule_of(sync).schedule_type, schedule_of(sync).minutes, schedule_of(sync).cron) == (
            Schedule.MINUTES, 45, None)
        marketer_client.post(reverse("sync_edit", args=[sync.pk]), builder_post(connections, marketer, schedule="off"))
        assert schedule_of(sync) is None
        assert "Off: runs only when started" in (
            marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        )

    def test_a_refused_edit_changes_nothing(self, marketer_client, sync, connections, marketer):
        audit_rows = AuditEvent.objects.count()
        response = marketer_client.post(reverse("sync_edit", args=[sync.pk]), builder_post(
            connections, marketer, name="Renamed", schedule_minutes="0"))
        assert response.status_code == 400
        assert "at least 1 minute" in response.content.decode()
        sync.refresh_from_db()
        assert (sync.name, sync.schedule_minutes) == ("HubSpot to Mailchimp", 15)
        assert AuditEvent.objects.count() == audit_rows
        # The page keeps the stored name in its title while showing what was typed.
        assert "<bdi>HubSpot to Mailchimp</bdi>" in response.content.decode()

    def test_removing_a_mapped_connection_is_refused_with_the_reason(self, marketer_client, sync, connections,
                                                                     marketer):
        FieldMapping.objects.create(sync=sync, connection=connections["mailchimp"], hub_field="email",
                                    external_field="email_address")
        third = connection_make("HubSpot EU", "hubspot", access_token="hs-token-9876543210")
        data = builder_post(connections, marketer, **{
            "endpoints-TOTAL_FORMS": "3", "endpoints-INITIAL_FORMS": "3",
            "endpoints-1-role": "", "endpoints-2-connection": str(third.pk), "endpoints-2-role": "write"})
        response = marketer_client.post(reverse("sync_edit", args=[sync.pk]), data)
        assert response.status_code == 400
        assert "Mailchimp has 1 field mapping in this sync" in response.content.decode()
        assert sync.endpoints.count() == 2

    def test_a_role_change_that_strands_mappings_is_refused_with_the_reason(self, marketer_client, sync,
                                                                              connections, marketer):
        FieldMapping.objects.create(sync=sync, connection=connections["hubspot"], hub_field="first_name",
                                    external_field="firstname", direction="in")
        audit_rows = AuditEvent.objects.count()
        data = builder_post(connections, marketer, **{"endpoints-0-role": "write", "endpoints-1-role": "both"})
        response = marketer_client.post(reverse("sync_edit", args=[sync.pk]), data)
        assert response.status_code == 400
        assert ("The sync would no longer read HubSpot, but 1 mapping reads from it: First name (firstname). Change "
                "it to Out of the hub, or delete it, in the mapping editor first") in html.unescape(
            response.content.decode())
        assert sorted(sync.endpoints.values_list("connection__name", "read", "write")) == [
            ("HubSpot", True, False), ("Mailchimp", False, True)]
        assert AuditEvent.objects.count() == audit_rows

    def test_the_sync_page_links_to_edit_and_the_mapping_editor(self, marketer_client, sync):
        page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        assert reverse("sync_edit", args=[sync.pk]) in page
        assert reverse("mapping_editor", args=[sync.pk]) in page
        assert "archived in every other system this sync writes to" in page
        assert "Pending (double opt-in)" in page


class TestPauseAndResume:
    def test_pause_then_resume(self, marketer_client, sync, marketer):
        response = marketer_client.post(reverse("sync_pause", args=[sync.pk]))
        assert response.status_code == 302
        sync.refresh_from_db()
        assert sync.paused and schedule_of(sync) is None
        paused = AuditEvent.objects.get(action="sync.paused")
        assert (paused.actor, paused.changes) == (marketer, {"paused": [False, True]})
        page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        assert 'data-testid="pause-banner"' in page and reverse("sync_resume", args=[sync.pk]) in page

        response = marketer_client.post(reverse("sync_resume", args=[sync.pk]))
        assert response.status_code == 302
        sync.refresh_from_db()
        assert not sync.paused and schedule_of(sync).minutes == 15
        resumed = AuditEvent.objects.get(action="sync.resumed")
        assert (resumed.actor, resumed.changes) == (marketer, {"paused": [True, False]})

    def test_the_reason_of_a_pause_by_the_engine_is_shown_as_text_and_cleared_on_resume(
        self, marketer_client, sync, marketer
    ):
        reason = f"The Mailchimp field {SCRIPT} was removed; fix the mapping, then resume."
        sync_pause(sync=sync, user=None, reason=reason)
        for url in (reverse("sync_detail", args=[sync.pk]), reverse("dashboard"), reverse("sync_list")):
            page = marketer_client.get(url).content.decode()
            assert html.escape(reason) in page and SCRIPT not in page, url
        marketer_client.post(reverse("sync_resume", args=[sync.pk]))
        sync.refresh_from_db()
        assert (sync.paused, sync.paused_reason) == (False, "")
        assert AuditEvent.objects.get(action="sync.resumed").changes == {
            "paused": [True, False], "paused_reason": [reason, ""]}
        assert 'data-testid="paused-syncs"' not in marketer_client.get(reverse("dashboard")).content.decode()

    def test_a_long_reason_keeps_the_page_whole(self, marketer_client, sync):
        sync_pause(sync=sync, user=None, reason="r" * 10_000)
        page = marketer_client.get(reverse("sync_detail", args=[sync.pk])).content.decode()
        assert 'class="reason-text" data-testid="paused-reason"' in page

    def test_pause_and_resume_take_only_posts(self, marketer_client, sync):
        assert marketer_client.get(reverse("sync_pause", args=[sync.pk])).status_code == 405
        assert marketer_client.get(reverse("sync_resume", args=[sync.pk])).status_code == 405


class TestDelete:
    def test_delete_after_a_confirmation(self, marketer_client, sync, marketer):
        page = marketer_client.get(reverse("sync_delete", args=[sync.pk]))
        assert page.status_code == 200 and "The contacts in the hub and the records in each system are not touched" in (
            page.content.decode())
        assert Sync.objects.filter(pk=sync.pk).exists()
        response = marketer_client.post(reverse("sync_delete", args=[sync.pk]))
        assert response.status_code == 302 and response["Location"] == reverse("sync_list")
        assert not Sync.objects.filter(pk=sync.pk).exists() and schedule_of(sync) is None
        deleted = AuditEvent.objects.get(action="sync.deleted")
        assert (deleted.actor, deleted.changes["name"]) == (marketer, ["HubSpot to Mailchimp", None])

    def test_a_sync_with_a_run_under_way_is_not_deleted(self, marketer_client, sync):
        run_make(sync, status=SyncRun.Status.RUNNING)
        assert "A run of this sync is under way" in marketer_client.get(
            reverse("sync_delete", args=[sync.pk])).content.decode()
        marketer_client.post(reverse("sync_delete", args=[sync.pk]))
        assert Sync.objects.filter(pk=sync.pk).exists()


class TestAccess:
    @pytest.fixture
    def urls(self, sync):
        return {
            "get": [reverse("sync_create"), reverse("sync_edit", args=[sync.pk]),
                    reverse("sync_delete", args=[sync.pk])],
            "post": [reverse("sync_create"), reverse("sync_edit", args=[sync.pk]),
                     reverse("sync_pause", args=[sync.pk]), reverse("sync_resume", args=[sync.pk]),
                     reverse("sync_delete", args=[sync.pk])],
        }

    @pytest.mark.parametrize("role", [REVIEWER, COMPLIANCE])
    def test_other_roles_are_refused(self, client, urls, role, sync, connections, marketer):
        client.force_login(user_with_role("other", role, staff=True))
        for url in urls["get"]:
            assert client.get(url).status_code == 403, url
        for url in urls["post"]:
            assert client.post(url, builder_post(connections, marketer, name="Hijacked")).status_code == 403, url
        sync.refresh_from_db()
        assert (sync.name, sync.paused) == ("HubSpot to Mailchimp", False)

    def test_visitors_are_sent_to_log_in(self, client, urls):
        client.logout()
        for url in urls["get"]:
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
        for url in urls["post"]:
            assert client.post(url).status_code == 302

    def test_a_marketer_needs_no_admin(self, marketer_client, marketer):
        assert not marketer.is_staff
        page = marketer_client.get(reverse("sync_list")).content.decode()
        assert reverse("admin:index") not in page
        assert reverse("sync_create") in page
