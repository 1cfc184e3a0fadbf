"""Resolving conflicts: the hub takes the decision, bases move, systems are marked, all audited."""
import pytest

from audit.models import AuditEvent
from audit.suppression import suppress
from syncapp.models import Conflict, Contact, PendingPush, RecordLink, Sync, SyncConnection, SyncRun
from syncapp.roles import REVIEWER
from syncapp.services.conflicts import (
    Choice,
    ConflictClosed,
    InvalidResolution,
    conflict_outcome,
    conflict_resolve,
    conflicts_resolve_many,
)
from tests.syncapp.conflict_rows import conflict_make, contact_make, side, two_way_make
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

SIDE = Conflict.Resolution.SIDE
TYPED = Conflict.Resolution.TYPED


@pytest.fixture
def workspace():
    return two_way_make()


@pytest.fixture
def reviewer():
    return user_with_role("rita", REVIEWER)


@pytest.fixture
def contact(workspace):
    return contact_make(workspace, "ann@example.com", first_name="Ann", last_name="Lee")


@pytest.fixture
def conflict(workspace, contact):
    # HubSpot says Anna, Mailchimp says Annie; the hub kept Ann, the last agreed value.
    return conflict_make(workspace, contact, hubspot="Anna", mailchimp="Annie")


def link(contact, connection) -> RecordLink:
    return RecordLink.objects.get(contact=contact, connection=connection)


def marking(link: RecordLink) -> set[str]:
    """Return the names of the syncs that have the link marked for a push."""
    return set(link.pending_pushes.values_list("sync__name", flat=True))


def test_keeping_one_systems_value_writes_it_to_the_hub_and_closes_the_conflict(workspace, contact, conflict,
                                                                                reviewer):
    resolved = conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer,
                                reason="HubSpot has the signed form")

    contact.refresh_from_db()
    assert contact.first_name == "Anna"
    assert contact.updated_at >= resolved.created_at
    stored = Conflict.objects.get(pk=conflict.pk)
    assert (stored.status, stored.resolution, stored.chosen_value) == ("resolved", "side", "Anna")
    assert (stored.resolved_by, stored.reason) == (reviewer, "HubSpot has the signed form")
    assert stored.resolved_at is not None
    assert conflict_outcome(stored) == "Kept HubSpot's value"


def test_each_systems_base_becomes_what_it_holds_now_and_every_written_system_is_marked(workspace, contact,
                                                                                       conflict, reviewer):
    conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="r")

    hubspot, mailchimp = link(contact, workspace.hubspot), link(contact, workspace.mailchimp)
    # Each system's current value is taken as read, so the next read is not a new change;
    # Mailchimp's base ("Annie") differs from the hub's "Anna": the push writes it there.
    assert hubspot.merge_base["firstname"] == "Anna"
    assert mailchimp.merge_base["FNAME"] == "Annie"
    # The other fields' bases are untouched.
    assert hubspot.merge_base["lastname"] == mailchimp.merge_base["LNAME"] == "Lee"
    assert marking(hubspot) == marking(mailchimp) == {workspace.sync.name}


def test_bases_take_each_systems_raw_value_not_the_hub_form(workspace, reviewer):
    contact = contact_make(workspace, "bo@example.com", phone="+442079460958")
    conflict = conflict_make(
        workspace, contact, hub_field="phone",
        sides=[side(workspace.hubspot, "phone", "+442079460000", raw="020 7946 0000"),
               side(workspace.mailchimp, "PHONE", "+442079461111")],
    )
    conflict_resolve(conflict=conflict, value="+442079461111", resolution=SIDE, user=reviewer, reason="r")
    assert link(contact, workspace.hubspot).merge_base["phone"] == "020 7946 0000"
    assert link(contact, workspace.mailchimp).merge_base["PHONE"] == "+442079461111"
    contact.refresh_from_db()
    assert contact.phone == "+442079461111"


def test_a_system_the_sync_only_reads_is_not_marked_for_a_push(workspace, contact, conflict, reviewer):
    SyncConnection.objects.filter(sync=workspace.sync, connection=workspace.hubspot).update(write=False)
    conflict_resolve(conflict=conflict, value="Annie", resolution=SIDE, user=reviewer, reason="r")
    assert marking(link(contact, workspace.hubspot)) == set()
    assert marking(link(contact, workspace.mailchimp)) == {workspace.sync.name}


def test_another_sync_writing_one_of_the_systems_is_marked_too(workspace, contact, conflict, reviewer):
    # The hub's value changed: a sync sharing Mailchimp sends it with its own mappings
    # (or settles its mark when they do not send the field); a sync only reading is not marked.
    sharing = Sync.objects.create(name="Audience only", schedule_minutes=0)
    SyncConnection.objects.create(sync=sharing, connection=workspace.mailchimp, read=False, write=True)
    SyncConnection.objects.create(sync=sharing, connection=workspace.hubspot, read=True, write=False)
    conflict_resolve(conflict=conflict, value="Annie", resolution=SIDE, user=reviewer, reason="r")
    assert marking(link(contact, workspace.mailchimp)) == {workspace.sync.name, "Audience only"}
    assert marking(link(contact, workspace.hubspot)) == {workspace.sync.name}


def test_the_decision_is_audited_with_who_and_why(contact, conflict, reviewer):
    conflict_resolve(conflict=conflict, value="Annie", resolution=SIDE, user=reviewer,
                     reason="She asked to be called Annie")

    event = AuditEvent.objects.get(action="conflict.resolved")
    assert (event.actor, event.contact_id, event.object_type, event.object_id) == (
        reviewer, contact.pk, "conflict", str(conflict.pk))
    assert event.changes["first_name"] == ["Ann", "Annie"]
    assert event.changes["reason"] == [None, "She asked to be called Annie"]
    assert event.changes["resolution"] == [None, "Kept Mailchimp's value"]


def test_a_run_is_requested_to_send_the_value_everywhere(workspace, conflict, reviewer):
    conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="r")
    run = SyncRun.objects.get(sync=workspace.sync)
    assert (run.status, run.trigger, run.requested_by) == ("queued", "manual", reviewer)


def test_a_paused_sync_gets_the_decision_without_a_run(workspace, contact, conflict, reviewer):
    workspace.sync.paused = True
    workspace.sync.save()
    conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="r")
    assert not SyncRun.objects.exists()
    # Still marked: the push happens on the first run after the sync is resumed.
    assert marking(link(contact, workspace.mailchimp)) == {workspace.sync.name}


def test_keeping_the_hubs_value(contact, conflict, reviewer):
    value, resolution = Choice.hub().pick(conflict)
    resolved = conflict_resolve(conflict=conflict, value=value, resolution=resolution, user=reviewer,
                                reason="Both edits were mistakes")
    contact.refresh_from_db()
    assert contact.first_name == "Ann"
    assert (resolved.resolution, resolved.chosen_value) == (Conflict.Resolution.HUB, "Ann")
    assert conflict_outcome(resolved) == "Kept the hub's value"


def test_a_typed_value_is_checked_and_stored_as_the_hub_field_holds_it(workspace, reviewer):
    contact = contact_make(workspace, "cy@example.com", phone="+442079460958")
    conflict = conflict_make(workspace, contact, hub_field="phone", hubspot="+442079460000",
                             mailchimp="+442079461111")
    # A national number is read in the region of the conflict's first system (HubSpot: GB).
    resolved = conflict_resolve(conflict=conflict, value=" 020 7946 0999 ", resolution=TYPED, user=reviewer,
                                reason="Called her")
    contact.refresh_from_db()
    assert contact.phone == resolved.chosen_value == "+442079460999"
    assert conflict_outcome(resolved) == "Typed a value"


def test_a_typed_text_is_cleaned_as_incoming_text_is(contact, conflict, reviewer):
    # "é" as "e" and a combining accent, and a NUL byte: stored in NFC, without the NUL.
    resolved = conflict_resolve(conflict=conflict, value="Rene\u0301e\x00", resolution=TYPED, user=reviewer,
                                reason="r")
    contact.refresh_from_db()
    assert contact.first_name == resolved.chosen_value == "Ren\u00e9e"


def test_a_typed_value_the_field_cannot_hold_is_refused_with_a_message(workspace, reviewer):
    contact = contact_make(workspace, "di@example.com")
    conflict = conflict_make(workspace, contact, hub_field="email", hubspot="di@example.org",
                             mailchimp="di@example.net")
    with pytest.raises(InvalidResolution) as refused:
        conflict_resolve(conflict=conflict, value="not an address", resolution=TYPED, user=reviewer, reason="r")

    assert str(refused.value) == ("The typed value does not fit Email: 'not an address': an email address must "
                                  "have an @-sign.")
    conflict.refresh_from_db()
    contact.refresh_from_db()
    assert conflict.is_open and contact.email == "di@example.com"
    assert not AuditEvent.objects.filter(action="conflict.resolved").exists()
    assert not SyncRun.objects.exists()
    assert not PendingPush.objects.exists()


@pytest.mark.parametrize(("hub_field", "sides", "typed"), [
    ("email", ("di@example.org", "di@example.net"), " ADA@example.com "),
    # Read in the region of the conflict's first system (HubSpot: GB).
    ("phone", ("+442079460000", "+442079461111"), "020 7946 0999"),
])
def test_a_typed_email_or_phone_of_a_person_erased_on_request_is_refused(workspace, reviewer, hub_field, sides, typed):
    suppress(email="ada@example.com", phone="+442079460999")
    contact = contact_make(workspace, "di@example.com", phone="+442079460958")
    conflict = conflict_make(workspace, contact, hub_field=hub_field, hubspot=sides[0], mailchimp=sides[1])

    with pytest.raises(InvalidResolution, match="erased on request") as refused:
        conflict_resolve(conflict=conflict, value=typed, resolution=TYPED, user=reviewer, reason="r")

    assert "ada" not in str(refused.value).lower() and "7946" not in str(refused.value)
    conflict.refresh_from_db()
    contact.refresh_from_db()
    assert conflict.is_open and (contact.email, contact.phone) == ("di@example.com", "+442079460958")
    assert not AuditEvent.objects.filter(action="conflict.resolved").exists()


def test_a_side_value_no_system_holds_any_more_is_refused(contact, conflict, reviewer):
    # The page showed HubSpot's "Anna"; a run has read "Anne" from HubSpot since.
    sides = [dict(entry) for entry in conflict.sides]
    sides[0].update(raw="Anne", value="Anne")
    Conflict.objects.filter(pk=conflict.pk).update(sides=sides)

    with pytest.raises(InvalidResolution, match="changed since the page was loaded"):
        conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="r")
    contact.refresh_from_db()
    assert contact.first_name == "Ann"


@pytest.mark.parametrize("status", [Conflict.Status.RESOLVED, Conflict.Status.SETTLED])
def test_a_closed_conflict_is_refused(contact, conflict, reviewer, status):
    Conflict.objects.filter(pk=conflict.pk).update(status=status)
    with pytest.raises(ConflictClosed):
        conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="r")
    contact.refresh_from_db()
    assert contact.first_name == "Ann"
    assert not AuditEvent.objects.filter(action="conflict.resolved").exists()


def test_a_conflict_is_resolved_once_even_when_two_reviewers_decide(conflict, reviewer):
    other = user_with_role("otto", REVIEWER)
    conflict_resolve(conflict=conflict, value="Anna", resolution=SIDE, user=reviewer, reason="first")
    # The second reviewer's page still showed it open.
    with pytest.raises(ConflictClosed):
        conflict_resolve(conflict=conflict, value="Annie", resolution=SIDE, user=other, reason="second")
    assert Conflict.objects.get(pk=conflict.pk).resolved_by == reviewer


# Bulk


def test_one_choice_resolves_a_selection_each_with_its_own_audit_row(workspace, reviewer):
    contacts = [contact_make(workspace, f"p{n}@example.com", first_name=f"P{n}") for n in range(3)]
    conflicts = [conflict_make(workspace, contact, hubspot=f"HubSpot {n}", mailchimp=f"Mailchimp {n}")
                 for n, contact in enumerate(contacts)]

    outcome = conflicts_resolve_many(conflicts=conflicts, choice=Choice.side(workspace.hubspot.pk), user=reviewer,
                                     reason="HubSpot is the CRM of record")

    assert [conflict.pk for conflict in outcome.resolved] == [conflict.pk for conflict in conflicts]
    assert outcome.refused == []
    assert [Contact.objects.get(pk=c.pk).first_name for c in contacts] == ["HubSpot 0", "HubSpot 1", "HubSpot 2"]
    events = AuditEvent.objects.filter(action="conflict.resolved").order_by("id")
    assert [event.contact_id for event in events] == [contact.pk for contact in contacts]
    assert all(event.actor == reviewer for event in events)
    assert {event.changes["reason"][1] for event in events} == {"HubSpot is the CRM of record"}
    # One run for the sync, not one per conflict.
    assert SyncRun.objects.filter(sync=workspace.sync).count() == 1


def test_conflicts_without_the_chosen_systems_side_are_reported_not_skipped(workspace, reviewer):
    third = connection_make("Klaviyo", "mailchimp", api_key="kl-0123456789-us1")
    both = conflict_make(workspace, contact_make(workspace, "both@example.com", first_name="B"))
    # A conflict between Mailchimp and a third system: HubSpot has no side in it.
    other = conflict_make(
        workspace, contact_make(workspace, "other@example.com", first_name="O"),
        sides=[side(workspace.mailchimp, "FNAME", "Olga"), side(third, "first_name", "Olya")],
    )
    closed = conflict_make(workspace, contact_make(workspace, "closed@example.com", first_name="C"),
                           status=Conflict.Status.SETTLED)

    outcome = conflicts_resolve_many(conflicts=[both, other, closed], choice=Choice.side(workspace.hubspot.pk),
                                     user=reviewer, reason="r")

    assert [conflict.pk for conflict in outcome.resolved] == [both.pk]
    assert [(conflict.pk, why) for conflict, why in outcome.refused] == [
        (other.pk, "No value from that system in this conflict."),
        (closed.pk, "It was closed already."),
    ]
    assert Conflict.objects.get(pk=other.pk).is_open
    assert Contact.objects.get(email="other@example.com").first_name == "O"


def test_a_bulk_typed_value_is_checked_per_conflict(workspace, reviewer):
    name = conflict_make(workspace, contact_make(workspace, "n@example.com", first_name="N"))
    email = conflict_make(workspace, contact_make(workspace, "e@example.com"), hub_field="email",
                          hubspot="e@example.org", mailchimp="e@example.net")

    outcome = conflicts_resolve_many(conflicts=[name, email], choice=Choice.typed("Nina"), user=reviewer, reason="r")

    assert [conflict.pk for conflict in outcome.resolved] == [name.pk]
    assert [conflict.pk for conflict, _ in outcome.refused] == [email.pk]
    assert "does not fit Email" in outcome.refused[0][1]


def test_bulk_requests_one_run_per_sync(reviewer):
    first, second = two_way_make("First"), two_way_make("Second", prefix="2 ")
    conflicts = [
        conflict_make(workspace, contact_make(workspace, f"{n}-{workspace.sync.pk}@example.com", first_name="X"))
        for workspace in (first, second) for n in range(2)
    ]
    conflicts_resolve_many(conflicts=conflicts, choice=Choice.hub(), user=reviewer, reason="r")
    assert sorted(SyncRun.objects.values_list("sync__name", flat=True)) == ["First", "Second"]
