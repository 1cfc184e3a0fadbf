"""Reads of the trail: who reads which events, keyset pages, export chunks, and a person's history.

The last test is the issue's: a person search finds the conflict events of a contact
whose email changed after the conflict, with every event made by the real engine
against the sandbox.
"""
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.selectors import audit_actions, audit_systems, events_in_chunks, trail_events, trail_page
from syncapp.models import Conflict, Contact
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from syncapp.services.conflicts import Choice, conflict_resolve
from tests.audit.trail_rows import event
from tests.integration.two_way import hubspot_create, hubspot_edit, mailchimp_edit, run, two_way_workspace
from tests.workspace import user_with_role


@pytest.fixture
def kinds(db):
    """One event of each kind the scope decides on, by name."""
    contact = Contact.objects.create(email="ann@example.com")
    return {
        "pulled": event("contact.updated", contact=contact, run_id=4, system="HubSpot"),
        "resolved": event("conflict.resolved", contact=contact, object_type="conflict", object_id="2"),
        "sync_paused": event("sync.paused", object_type="sync", object_id="1"),
        "mapping": event("fieldmapping.created", object_type="fieldmapping", object_id="5"),
        "connection": event("connection.updated", object_type="connection", object_id="3"),
        "deletion": event("deletion.requested", object_type="deletionrequest", object_id="1"),
        "erased": event("contact.erased", contact=contact),
        "exported": event("audit.exported", object_type="audit_trail", object_id="export"),
        "subject_access": event("audit.subject_access_exported", object_type="person", object_id="ab12"),
        "login": event("login.failed", object_type="username", object_id="k", object_repr="mallory"),
        "keys": event("encryption_keys.rotated", object_type="secrets", object_id="all"),
    }


SYNCS_OWN = {"pulled", "resolved", "sync_paused", "mapping", "connection"}


def readable(user, kinds) -> set[str]:
    ids = set(trail_events(user=user).values_list("pk", flat=True))
    return {name for name, item in kinds.items() if item.pk in ids}


def test_compliance_and_superusers_read_everything(kinds):
    assert readable(user_with_role("carla", COMPLIANCE), kinds) == set(kinds)
    assert readable(user_with_role("root", superuser=True), kinds) == set(kinds)


@pytest.mark.parametrize("role", [MARKETER, REVIEWER])
def test_marketers_and_reviewers_read_the_syncs_events_and_none_of_compliances(role, kinds):
    assert readable(user_with_role("someone", role), kinds) == SYNCS_OWN


def test_others_read_nothing(kinds):
    assert readable(user_with_role("nobody"), kinds) == set()
    assert readable(AnonymousUser(), kinds) == set()


def test_newest_first(kinds):
    ids = list(trail_events(user=user_with_role("carla", COMPLIANCE)).values_list("pk", flat=True))
    assert ids == sorted(ids, reverse=True)


def test_the_distinct_actions_and_systems(kinds):
    assert audit_actions() == sorted({item.action for item in kinds.values()})
    assert audit_systems() == ["HubSpot", "hub"]


@pytest.mark.django_db
def test_pages_follow_the_last_id_seen_and_never_count():
    ids = [event("sync.paused").pk for _ in range(7)][::-1]
    events = AuditEvent.objects.order_by("-id")
    with CaptureQueriesContext(connection) as queries:
        first = trail_page(events, size=3)
        second = trail_page(events, after=first.older_than, size=3)
        third = trail_page(events, after=second.older_than, size=3)
        back = trail_page(events, before=third.newer_than, size=3)
    assert not any("COUNT(" in query["sql"].upper() for query in queries)
    assert [item.pk for item in first.events] == ids[:3] and first.newer_than is None
    assert [item.pk for item in second.events] == ids[3:6]
    assert [item.pk for item in third.events] == ids[6:] and third.older_than is None
    assert [item.pk for item in back.events] == ids[3:6]
    assert back.newer_than == ids[3] and back.older_than == ids[5]
    assert trail_page(events, before=ids[0], size=3).events == []


@pytest.mark.django_db
def test_chunks_hold_every_event_once_newest_first_and_stop_below_an_id():
    ids = [event("sync.paused").pk for _ in range(10)][::-1]
    chunks = list(events_in_chunks(AuditEvent.objects.all(), fields=["id", "action"], size=4))
    assert [len(chunk) for chunk in chunks] == [4, 4, 2]
    assert [row[0] for chunk in chunks for row in chunk] == ids
    below = list(events_in_chunks(AuditEvent.objects.all(), fields=["id"], below=ids[2], size=4))
    assert [row[0] for chunk in below for row in chunk] == ids[3:]
    assert list(events_in_chunks(AuditEvent.objects.none(), fields=["id"])) == []


# The test: a person search across an email change, with the real engine.


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_person_search_finds_the_conflict_events_of_a_contact_whose_email_changed_later(client, sandbox):
    workspace = two_way_workspace(sandbox)
    hubspot_id = hubspot_create(sandbox, email="ann@example.com", firstname="Ann", lastname="Lee")
    hubspot_create(sandbox, email="bob@example.com", firstname="Bob", lastname="Ray")
    run(workspace)
    run(workspace)
    # Ann's first name changed differently in both systems: a conflict, then resolved.
    hubspot_edit(sandbox, hubspot_id, firstname="Annie")
    mailchimp_edit(sandbox, "ann@example.com", FNAME="Anita")
    assert run(workspace).conflict_count == 1
    conflict = Conflict.objects.get(status=Conflict.Status.OPEN)
    reviewer = user_with_role("rita", REVIEWER)
    value, resolution = Choice.side(workspace.mailchimp.pk).pick(conflict)
    conflict_resolve(conflict=conflict, value=value, resolution=resolution, user=reviewer, reason="Signed as Anita")
    # Then her address changed in HubSpot; the next run carries it to the hub.
    hubspot_edit(sandbox, hubspot_id, email="ann.lee@example.com")
    run(workspace)
    ann = Contact.objects.get(pk=conflict.contact_id)
    assert ann.email == "ann.lee@example.com"

    carla = user_with_role("carla", COMPLIANCE)
    found = AuditEventFilter({"person": "ann@example.com"}, queryset=trail_events(user=carla), user=carla)
    assert found.is_valid(), found.errors
    actions = list(found.qs.values_list("action", flat=True))
    assert {"conflict.opened", "conflict.resolved"} <= set(actions)
    assert set(found.qs.values_list("contact_id", flat=True)) == {ann.pk}
    # The new address finds the same history; nobody else's is in it.
    by_new = AuditEventFilter({"person": "ann.lee@example.com"}, queryset=trail_events(user=carla), user=carla)
    assert by_new.is_valid() and list(by_new.qs.values_list("pk", flat=True)) == list(
        found.qs.values_list("pk", flat=True))
    bob = Contact.objects.get(email="bob@example.com")
    assert not found.qs.filter(contact_id=bob.pk).exists()

    # And on the page, as a compliance user sees it.
    client.force_login(carla)
    page = client.get(reverse("audit:trail"), {"person": "ann@example.com", "action": "conflict.opened"})
    assert page.status_code == 200
    assert 'data-testid="event-row"' in page.content.decode()
    assert "Annie" in page.content.decode() and "Anita" in page.content.decode()
