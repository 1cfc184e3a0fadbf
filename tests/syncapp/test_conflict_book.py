"""What a pull page does to open conflicts: sides updated, settled when all agree, a
reviewer's decision never undone by a page that loaded the conflict before it."""
import pytest

from syncapp.models import Conflict
from syncapp.services.conflict_book import ConflictBook, Side
from tests.syncapp.conflict_rows import conflict_make, contact_make, two_way_make
from tests.workspace import run_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    workspace = two_way_make()
    contact = contact_make(workspace, "ann@example.com", first_name="Ann")
    conflict = conflict_make(workspace, contact, hubspot="Anna", mailchimp="Annie")
    run = run_make(workspace.sync)
    return workspace, contact, conflict, run


def book_for(workspace, contact, run) -> ConflictBook:
    return ConflictBook(sync_id=workspace.sync.pk, run_id=run.pk, contact_ids=[contact.pk])


def mailchimp_side(workspace, value) -> Side:
    return Side(workspace.mailchimp.pk, workspace.mailchimp.name, "FNAME", value, value, None)


def test_a_new_value_from_one_system_updates_its_side_and_holds_the_field(setup):
    workspace, contact, conflict, run = setup
    book = book_for(workspace, contact, run)
    assert book.held(contact.pk) == {"first_name"}
    assert book.observe(book.find(contact.pk, "first_name"), mailchimp_side(workspace, "Annette")) is None
    book.write(links_by_contact={}, side_of=lambda link, field: None, audits=[])
    conflict.refresh_from_db()
    assert conflict.is_open
    assert {side["system"]: side["value"] for side in conflict.sides}[workspace.mailchimp.name] == "Annette"


def test_every_side_agreeing_settles_it(setup):
    workspace, contact, conflict, run = setup
    book = book_for(workspace, contact, run)
    audits = []
    assert book.observe(book.find(contact.pk, "first_name"), mailchimp_side(workspace, "Anna")) == ("Anna",)
    book.write(links_by_contact={}, side_of=lambda link, field: None, audits=audits)
    conflict.refresh_from_db()
    assert (conflict.status, conflict.chosen_value) == (Conflict.Status.SETTLED, "Anna")
    assert [row.action for row in audits] == ["conflict.settled"]


def test_a_reviewers_decision_made_meanwhile_stands(setup):
    workspace, contact, conflict, run = setup
    book = book_for(workspace, contact, run)
    # The page loaded the conflict open; a reviewer resolves it before the page writes.
    Conflict.objects.filter(pk=conflict.pk).update(status=Conflict.Status.RESOLVED, chosen_value="Ann")
    audits = []
    book.observe(book.find(contact.pk, "first_name"), mailchimp_side(workspace, "Anna"))
    book.write(links_by_contact={}, side_of=lambda link, field: None, audits=audits)
    conflict.refresh_from_db()
    assert (conflict.status, conflict.chosen_value) == (Conflict.Status.RESOLVED, "Ann")
    assert audits == []
