"""Every event about a person carries the contact's id, so searching the trail by person finds it.

The bug this guards: conflict events name "first_name of contact 1", not an address; a
search by the person's email found them only through the contact's id.
"""
import pytest

from audit.models import AuditEvent
from mappings.models import FieldMapping
from syncapp.models import Conflict, Contact, DuplicatePair, SyncRun
from syncapp.roles import REVIEWER
from syncapp.services.conflicts import conflict_resolve
from syncapp.services.consent_ledger import consent_statement_record
from syncapp.services.duplicates import contacts_merge, duplicate_dismiss
from syncapp.services.runs import run_execute, run_request
from tests.syncapp.fake_providers import World, fake_workspace
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer():
    return user_with_role("rita", REVIEWER)


def execute(sync, world) -> SyncRun:
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def actions_about(contact_id: int) -> set[str]:
    return set(AuditEvent.objects.filter(contact_id=contact_id).values_list("action", flat=True))


def test_a_conflict_opened_by_a_run_and_resolved_by_a_reviewer_is_filed_under_the_contact(reviewer):
    sync, world = fake_workspace(), World()
    FieldMapping.objects.filter(sync=sync, hub_field="first_name").update(
        conflict_policy=FieldMapping.ConflictPolicy.MANUAL)
    world.add("1", email="ann@example.com", firstname="Ann")
    execute(sync, world)
    contact = Contact.objects.get(email="ann@example.com")
    # The hub and the CRM both change the name since they last agreed.
    Contact.objects.filter(pk=contact.pk).update(first_name="Annie")
    world.add("1", firstname="Anna")
    execute(sync, world)
    conflict = Conflict.objects.get(contact=contact)

    conflict_resolve(conflict=conflict, value="Anna", resolution=Conflict.Resolution.SIDE, user=reviewer,
                     reason="The CRM has the signed form")

    events = AuditEvent.objects.filter(object_type="conflict", object_id=str(conflict.pk))
    assert {(event.action, event.contact_id) for event in events} == {
        ("conflict.opened", contact.pk), ("conflict.resolved", contact.pk)}
    # Pushed to the audience too, under the same person.
    assert {"contact.created", "conflict.opened", "conflict.resolved", "contact.pushed"} <= actions_about(contact.pk)


def test_a_merge_is_filed_under_the_survivor_and_names_the_merged_contact(reviewer):
    survivor = Contact.objects.create(email="ann@example.com", phone="+14155550100")
    other = Contact.objects.create(email="ann.lee@example.com", phone="+14155550100")
    pair = DuplicatePair.objects.create(contact_a=survivor, contact_b=other, reason=DuplicatePair.Reason.SAME_PHONE)

    contacts_merge(pair=pair, survivor=survivor, user=reviewer, reason="Same phone")

    event = AuditEvent.objects.get(action="contact.merged")
    assert event.contact_id == survivor.pk
    assert event.changes["merged_contact_id"] == [None, other.pk]


def test_a_dismissed_pair_is_filed_under_each_of_its_contacts_and_names_both(reviewer):
    first = Contact.objects.create(email="ann@example.com")
    second = Contact.objects.create(email="bo@example.com")
    pair = DuplicatePair.objects.create(contact_a=first, contact_b=second, reason=DuplicatePair.Reason.SAME_PHONE)

    duplicate_dismiss(pair=pair, user=reviewer, reason="Twins")

    events = AuditEvent.objects.filter(action="duplicate.dismissed").order_by("contact_id")
    assert [event.contact_id for event in events] == [first.pk, second.pk]
    assert all(event.changes["contacts"] == [None, [first.pk, second.pk]] for event in events)


def test_a_consent_statement_is_filed_under_the_contact(reviewer):
    contact = Contact.objects.create(email="ann@example.com", email_consent="subscribed")
    consent_statement_record(contact=contact, channel="email", state="unsubscribed", user=reviewer, note="Phone call")
    assert "consent.recorded" in actions_about(contact.pk)
