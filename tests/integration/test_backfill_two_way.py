"""Backfills on the demo's two-way sync: the changed mapping alone is read and written afresh.

Review of issue 9: a backfill merged every reader of the field without its base, so an
unchanged value became "changed on both sides" (a conflict for every record under
manual review), and compared every writer exactly, so a system whose mapping had not
changed was rewritten in another spelling.
"""
import pytest

from audit.models import AuditEvent
from mappings.models import FieldMapping
from mappings.services import mapping_editor_save
from syncapp.models import Conflict, Contact, SyncRun
from syncapp.services.runs import run_execute
from tests.integration.two_way import (
    hubspot_by_id,
    hubspot_create,
    mailchimp_by_email,
    run,
    two_way_workspace,
    write_calls,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PEOPLE = {"ann@example.com": ("ann", "Lee", "+44 20 7946 0908"), "bob@example.com": ("bob", "Ray", "+1 415 555 0101")}


@pytest.fixture
def workspace(sandbox):
    workspace = two_way_workspace(sandbox)
    # HubSpot's phone written too, as in E.164 both ways.
    FieldMapping.objects.filter(sync=workspace.sync, connection=workspace.hubspot, hub_field="phone").update(
        direction="both")
    ids = {email: hubspot_create(sandbox, email=email, firstname=first, lastname=last, phone=phone)
           for email, (first, last, phone) in PEOPLE.items()}
    run(workspace)
    run(workspace)
    return workspace, ids


def edited(workspace, connection, hub_field: str, transforms: list) -> SyncRun:
    """Change one system's mapping of a field as the editor saves it, and run the backfill it asks for."""
    mapping = FieldMapping.objects.get(sync=workspace.sync, connection=connection, hub_field=hub_field)
    mapping.transforms = transforms
    saved = mapping_editor_save(mapping=mapping, user=None)
    way = {spec.get("direction", "both") for spec in transforms}.pop()
    assert saved.backfill is not None and saved.backfill.backfill_fields == [f"{hub_field}@{connection.pk}:{way}"]
    finished = run_execute(run_id=saved.backfill.pk)
    assert finished.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), finished.error
    return finished


def test_a_changed_inbound_transform_under_manual_review_applies_without_conflicts(sandbox, workspace):
    workspace, ids = workspace
    sandbox.reset_stats()
    # Upper case on the way in only: HubSpot's own values are left as they are.
    backfill = edited(workspace, workspace.hubspot, "first_name", [{"name": "uppercase", "direction": "in"}])

    assert (backfill.conflict_count, Conflict.objects.count()) == (0, 0)
    assert sorted(Contact.objects.values_list("first_name", flat=True)) == ["ANN", "BOB"]
    assert {email: mailchimp_by_email(sandbox, email)["merge_fields"]["FNAME"] for email in PEOPLE} == {
        "ann@example.com": "ANN", "bob@example.com": "BOB"}
    # HubSpot holds what it held: only its reading changed.
    assert {email: hubspot_by_id(sandbox, ids[email])["properties"]["firstname"] for email in PEOPLE} == {
        "ann@example.com": "ann", "bob@example.com": "bob"}
    assert not any(route.startswith("hubspot") for route in write_calls(sandbox))

    # The next run reads its own writes back as echoes.
    sandbox.reset_stats()
    assert run(workspace).conflict_count == 0
    assert write_calls(sandbox) == {}


def test_a_change_to_mailchimps_phone_mapping_leaves_hubspots_spelling_alone(sandbox, workspace):
    workspace, ids = workspace
    held_in_hubspot = {email: hubspot_by_id(sandbox, ids[email])["properties"]["phone"] for email in PEOPLE}
    assert held_in_hubspot["ann@example.com"] == "+44 20 7946 0908"
    sandbox.reset_stats()
    # Mailchimp's mapping changes in a way that sends the same values: nothing to write
    # anywhere. HubSpot is written the phone too, in E.164, and holds its own spelling,
    # which the sync never rewrites only to restyle it; its mapping did not change.
    edited(workspace, workspace.mailchimp, "phone", [{"name": "trim", "direction": "out"}])

    assert write_calls(sandbox) == {}
    assert {email: hubspot_by_id(sandbox, ids[email])["properties"]["phone"] for email in PEOPLE} == held_in_hubspot
    assert AuditEvent.objects.filter(action="sync.backfill_requested").count() == 1
