"""Schema drift through the sandbox: a mapped merge field deleted in Mailchimp pauses the sync before it writes.

A run asks for fields when they are due (SCHEMA_CHECK_INTERVAL_SECONDS since they were last
seen) and before its first write; a run with nothing to write within the interval asks
nothing (services.schema_drift.RunSchemaCheck).
"""
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import Connection
from mappings.models import FieldCatalog, FieldMapping
from syncapp.models import Sync, SyncRun
from syncapp.services.schema_drift import connection_fields_refresh
from syncapp.services.syncs import sync_pause, sync_resume
from tests.integration.workspace import hubspot_edit, importable, run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", email="owner@example.com")


@pytest.fixture
def sync(sandbox, owner):
    sandbox.limits(hubspot_rate_limit=0)
    sandbox.seed(hubspot_contacts=40, random_seed=11)
    sync = sandbox_sync(sandbox, owner=owner)
    mailchimp = Connection.objects.get(name="Mailchimp")
    hubspot = Connection.objects.get(name="HubSpot")
    FieldMapping.objects.create(sync=sync, connection=hubspot, hub_field="company", external_field="company",
                                direction="in", is_owner=True)
    FieldMapping.objects.create(sync=sync, connection=mailchimp, hub_field="company", external_field="COMPANY",
                                direction="out")
    return sync


def merge_field_delete(sandbox, tag: str) -> None:
    """Delete a merge field the way a Mailchimp user would, through the API itself."""
    auth = ("any", sandbox.mailchimp_key)
    base = f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields"
    listed = requests.get(base, params={"count": 100}, auth=auth, timeout=10).json()["merge_fields"]
    merge_id = next(field["merge_id"] for field in listed if field["tag"] == tag)
    assert requests.delete(f"{base}/{merge_id}", auth=auth, timeout=10).status_code == 204


def edit_some(sandbox, count: int = 3) -> list[dict]:
    people = [same[0] for same in importable(sandbox.hubspot_contacts()).values() if len(same) == 1][:count]
    for number, contact in enumerate(people):
        hubspot_edit(sandbox, contact["id"], firstname=f"Drifted{number}")
    return people


def fields_last_seen_long_ago() -> None:
    """Make every connection's fields due for a check, as if the last one were more than the interval ago."""
    FieldCatalog.objects.update(
        refreshed_at=timezone.now() - timedelta(seconds=settings.SCHEMA_CHECK_INTERVAL_SECONDS + 60))


def test_a_deleted_merge_field_pauses_the_sync_before_it_writes_and_resuming_goes_on_from_the_cursors(
        sandbox, sync, owner):
    first = run_now(sync)
    assert first.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), first.error
    # Mappings saved without a type get the one found at the first check.
    assert FieldMapping.objects.get(sync=sync, external_field="COMPANY").external_type == "text"
    assert FieldMapping.objects.get(sync=sync, external_field="firstname").external_type == "string"

    edited = edit_some(sandbox)
    merge_field_delete(sandbox, "COMPANY")
    fields_last_seen_long_ago()
    sandbox.reset_stats()
    mail.outbox.clear()

    paused_run = run_now(sync)
    assert paused_run.status == SyncRun.Status.PAUSED
    assert "COMPANY in Mailchimp was removed" in paused_run.error
    sync.refresh_from_db()
    assert sync.paused and "COMPANY in Mailchimp was removed" in sync.paused_reason
    # Nothing written anywhere, nothing read past the fields, and the cursors stand still.
    stats = sandbox.stats()
    assert stats["writes"] == 0
    assert set(stats["requests"]["mailchimp"]) == {"GET /lists/{list_id}/merge-fields"}
    assert set(stats["requests"]["hubspot"]) == {"GET /crm/v3/properties/contacts"}
    assert paused_run.cursors_after == paused_run.cursors_before == first.cursors_after
    assert (paused_run.read_count, paused_run.pushed_count) == (0, 0)
    # The pause is audited, and the owner told which field and where.
    assert AuditEvent.objects.filter(action="sync.paused", object_id=str(sync.pk)).exists()
    (message,) = mail.outbox
    assert message.to == ["owner@example.com"]
    assert "Mailchimp: COMPANY was removed" in message.body and sync.name in message.subject

    # Fix the mapping (stop writing the company to Mailchimp) and resume.
    FieldMapping.objects.filter(sync=sync, external_field="COMPANY").delete()
    sync = sync_resume(sync=sync, user=owner)
    resumed = run_now(sync)
    assert resumed.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), resumed.error
    assert resumed.cursors_before == first.cursors_after
    # Only the contacts edited while paused were read again and pushed.
    assert resumed.pushed_count == len(edited)
    members = {m["email_address"].lower(): m for m in sandbox.mailchimp_members()}
    for number, contact in enumerate(edited):
        assert members[contact["properties"]["email"].strip().lower()]["merge_fields"]["FNAME"] == f"Drifted{number}"
    assert len(mail.outbox) == 1


def test_within_the_interval_a_run_with_something_to_write_asks_first_and_pauses_before_writing(
        sandbox, sync, owner):
    first = run_now(sync)
    edited = edit_some(sandbox)
    merge_field_delete(sandbox, "COMPANY")
    sandbox.reset_stats()
    mail.outbox.clear()

    paused_run = run_now(sync)

    assert paused_run.status == SyncRun.Status.PAUSED
    assert "COMPANY in Mailchimp was removed" in paused_run.error
    # The changes were read into the hub; nothing was written to any system, and the
    # fields were asked for before the first write.
    stats = sandbox.stats()
    assert stats["writes"] == 0
    assert stats["requests"]["mailchimp"] == {"GET /lists/{list_id}/merge-fields": 1}
    assert stats["requests"]["hubspot"]["GET /crm/v3/properties/contacts"] == 1
    assert paused_run.read_count == len(edited) and paused_run.pushed_count == 0
    assert paused_run.cursors_after != first.cursors_after
    assert len(mail.outbox) == 1

    # Once the mapping is fixed, resuming pushes what the paused run read.
    FieldMapping.objects.filter(sync=sync, external_field="COMPANY").delete()
    resumed = run_now(sync_resume(sync=sync, user=owner))
    assert resumed.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), resumed.error
    assert resumed.pushed_count == len(edited)
    members = {m["email_address"].lower(): m for m in sandbox.mailchimp_members()}
    for number, contact in enumerate(edited):
        assert members[contact["properties"]["email"].strip().lower()]["merge_fields"]["FNAME"] == f"Drifted{number}"


def test_within_the_interval_a_run_with_nothing_to_write_asks_no_system_and_the_next_check_notices(sandbox, sync):
    run_now(sync)
    merge_field_delete(sandbox, "COMPANY")
    sandbox.reset_stats()

    quiet = run_now(sync)

    assert quiet.status == SyncRun.Status.SUCCEEDED, quiet.error
    requests_made = sandbox.stats()["requests"]
    assert "GET /lists/{list_id}/merge-fields" not in requests_made.get("mailchimp", {})
    assert "GET /crm/v3/properties/contacts" not in requests_made.get("hubspot", {})
    # The first run once the interval has passed asks again, and pauses.
    fields_last_seen_long_ago()
    due = run_now(sync)
    assert due.status == SyncRun.Status.PAUSED
    assert "COMPANY in Mailchimp was removed" in due.error
    assert Sync.objects.get(pk=sync.pk).paused


def test_a_refresh_from_the_connection_page_pauses_the_syncs_using_the_field(sandbox, sync, owner):
    run_now(sync)
    other = Sync.objects.create(name="Unrelated", schedule_minutes=0)
    merge_field_delete(sandbox, "COMPANY")
    sandbox.reset_stats()

    catalog, paused = connection_fields_refresh(connection=Connection.objects.get(name="Mailchimp"), user=owner)
    assert "COMPANY" not in {row["name"] for row in catalog.fields}
    assert paused == [sync]
    sync.refresh_from_db()
    other.refresh_from_db()
    assert sync.paused and "COMPANY in Mailchimp was removed" in sync.paused_reason
    assert not other.paused
    assert sandbox.stats()["writes"] == 0
    assert len(mail.outbox) == 1
    # Refreshing again pauses nothing more and mails nobody again.
    assert connection_fields_refresh(connection=Connection.objects.get(name="Mailchimp"), user=owner)[1] == []
    assert len(mail.outbox) == 1


def test_a_scheduled_refresh_checks_a_sync_a_person_paused_and_audits_the_pause_as_syncapp(sandbox, sync, owner):
    run_now(sync)
    sync_pause(sync=sync, user=owner)
    merge_field_delete(sandbox, "COMPANY")
    mail.outbox.clear()

    catalog, paused = connection_fields_refresh(connection=Connection.objects.get(name="Mailchimp"), user=None)

    assert paused == [sync]
    sync.refresh_from_db()
    assert sync.paused and "COMPANY in Mailchimp was removed" in sync.paused_reason
    event = AuditEvent.objects.filter(action="sync.paused").latest("pk")
    assert (event.actor, event.system) == (None, "Syncapp")
    assert event.changes == {"paused_reason": ["", sync.paused_reason]}
    assert len(mail.outbox) == 1
    # Resuming into the drift is refused until the mapping is fixed.
    with pytest.raises(ValidationError, match="COMPANY in Mailchimp was removed"):
        sync_resume(sync=sync, user=owner)
    assert Sync.objects.get(pk=sync.pk).paused


def test_a_changed_type_pauses_the_sync_too(sandbox, sync):
    run_now(sync)
    mapping = FieldMapping.objects.get(sync=sync, external_field="COMPANY")
    # As if the mapping had been saved when COMPANY held numbers.
    FieldMapping.objects.filter(pk=mapping.pk).update(external_type="number")
    fields_last_seen_long_ago()
    run = run_now(sync)
    assert run.status == SyncRun.Status.PAUSED
    assert "COMPANY in Mailchimp changed from number to text" in run.error
