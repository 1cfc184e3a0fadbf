"""A person named by an email or a phone, and the contacts that are or were them."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.people import EMAIL, PHONE, InvalidPerson, Person, person_contact_ids, person_parse
from audit.suppression import identifier_key
from syncapp.models import Contact
from tests.audit.trail_rows import email_change, event
from tests.workspace import connection_make

pytestmark = pytest.mark.django_db


# Parsing


def test_an_email_is_normalized():
    assert person_parse("  Ann.Lee@Example.COM ") == Person(EMAIL, "ann.lee@example.com")


def test_a_phone_with_its_country_code_is_read_anywhere():
    assert person_parse("+44 20 7946 0958") == Person(PHONE, "+442079460958")


def test_a_national_phone_is_read_in_the_region_every_connection_uses():
    connection_make("HubSpot", "hubspot", default_phone_region="US")
    connection_make("Mailchimp", "mailchimp", default_phone_region="US")
    assert person_parse("(415) 555-0100") == Person(PHONE, "+14155550100")


def test_a_national_phone_needs_its_code_when_connections_disagree():
    connection_make("HubSpot", "hubspot", default_phone_region="US")
    connection_make("Mailchimp", "mailchimp", default_phone_region="GB")
    with pytest.raises(InvalidPerson, match="country code"):
        person_parse("(415) 555-0100")


@pytest.mark.parametrize(("text", "reason"), [
    ("", "Enter an email address or a phone number."),
    ("a..b@example.com", "This email address"),
    ("nodomain@", "This email address"),
    ("+1-800-FLOWERS", "This phone number contains letters"),
    ("+1 415 555 0100 ext. 12", "This phone number has an extension"),
])
def test_what_names_no_one_is_refused_with_the_reason(text, reason):
    with pytest.raises(InvalidPerson, match=reason):
        person_parse(text)


def test_the_trail_names_a_person_by_their_keyed_hash():
    person = Person(EMAIL, "ann@example.com")
    assert person.audit_key() == identifier_key(EMAIL, "ann@example.com")
    assert "ann" not in person.audit_key()


# Their contacts


def test_the_contacts_holding_the_email_or_the_phone_now():
    ann = Contact.objects.create(email="ann@example.com", phone="+14155550100")
    Contact.objects.create(email="bob@example.com")
    assert person_contact_ids(Person(EMAIL, "ann@example.com")) == {ann.pk}
    assert person_contact_ids(Person(PHONE, "+14155550100")) == {ann.pk}
    assert person_contact_ids(Person(EMAIL, "nobody@example.com")) == set()


def test_a_contact_is_found_by_every_address_it_had():
    ann = Contact.objects.create(email="ann@example.com")
    email_change(ann, "ann.lee@example.com")
    email_change(ann, "anita@example.com")
    for address in ("ann@example.com", "ann.lee@example.com", "anita@example.com"):
        assert person_contact_ids(Person(EMAIL, address)) == {ann.pk}


def test_the_person_search_uses_the_email_indexes():
    with CaptureQueriesContext(connection) as queries:
        person_contact_ids(Person(EMAIL, "ann@example.com"))
    (search,) = [query["sql"] for query in queries if "audit_auditevent" in query["sql"] and "email" in query["sql"]]
    with connection.cursor() as cursor:
        explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(explain + search)
        plan = " ".join(str(row) for row in cursor.fetchall())
    if connection.vendor == "sqlite":
        assert "audit_email_before_idx" in plan and "audit_email_after_idx" in plan
    # PostgreSQL's planner scans an empty table whatever its indexes; the benchmark
    # measures the search on a million rows.


def test_an_address_a_system_only_proposed_does_not_bring_its_contact_in():
    bob = Contact.objects.create(email="bob@example.com")
    event("conflict.opened", contact=bob, changes={"email": ["bob@example.com", "ann@example.com"]})
    assert person_contact_ids(Person(EMAIL, "ann@example.com")) == set()


def test_contacts_merged_into_the_person_and_the_one_they_were_merged_into_are_theirs():
    survivor = Contact.objects.create(email="ann@example.com")
    # The duplicate was created from another address, then merged and deleted.
    duplicate = Contact.objects.create(email="ann.work@example.com")
    event("contact.created", contact=duplicate, changes={"email": [None, "ann.work@example.com"]})
    older = Contact.objects.create(email="a.lee@example.com")
    people = {survivor.pk, duplicate.pk, older.pk}
    event("contact.merged", contact=duplicate, changes={"merged_contact_id": [None, older.pk]})
    older.delete()
    event("contact.merged", contact=survivor, changes={"merged_contact_id": [None, duplicate.pk]})
    duplicate.delete()
    Contact.objects.create(email="bob@example.com")

    assert person_contact_ids(Person(EMAIL, "ann@example.com")) == people
    assert person_contact_ids(Person(EMAIL, "ann.work@example.com")) == people
