"""Subject access: one person's data, whole and nobody else's, on a page or as JSON; audited by a digest."""
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.people import EMAIL, PHONE, Person
from audit.subject_access import EXPORTED, subject_access_document
from syncapp.engine.text import clean_text
from syncapp.models import ConsentEvent, Contact, RecordLink
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.audit.trail_rows import email_change, event
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def hubspot():
    return connection_make("HubSpot", "hubspot", access_token="hs-token-0123456789")


@pytest.fixture
def ann(hubspot):
    """Ann: a link with its merge base, a consent statement, a conflict, an email change and a merge."""
    ann = Contact.objects.create(email="ann@example.com", phone="+14155550100", first_name="Ann",
                                 attributes={"plan": "pro"}, email_consent="subscribed")
    RecordLink.objects.create(contact=ann, connection=hubspot, external_id="hs-1", email_consent_base="subscribed",
                              merge_base={"email": "ann@example.com", "firstname": "Ann"})
    ConsentEvent.objects.create(contact=ann, channel="email", state="subscribed", hub_state="subscribed",
                                system="HubSpot", evidence="api_read", occurred_at=timezone.now())
    duplicate = Contact.objects.create(email="ann.work@example.com")
    event("contact.created", contact=duplicate, changes={"email": [None, "ann.work@example.com"]})
    event("contact.merged", contact=ann, changes={"merged_contact_id": [None, duplicate.pk]})
    duplicate.delete()
    event("conflict.opened", contact=ann, changes={"first_name": ["Ann", "Annie"]}, object_type="conflict")
    email_change(ann, "ann.lee@example.com")
    return ann


@pytest.fixture
def bob(hubspot):
    bob = Contact.objects.create(email="bob@example.com", first_name="Bob")
    RecordLink.objects.create(contact=bob, connection=hubspot, external_id="hs-2", merge_base={"firstname": "Bob"})
    event("contact.updated", contact=bob, changes={"first_name": ["Rob", "Bob"]})
    # A system proposed Ann's old address for Bob: that is Bob's event, not Ann's.
    event("conflict.opened", contact=bob, changes={"email": ["bob@example.com", "ann@example.com"]})
    return bob


@pytest.fixture
def compliance() -> Client:
    client = Client()
    client.force_login(user_with_role("carla", COMPLIANCE))
    return client


def test_the_document_holds_every_event_about_the_person_and_nobody_elses(ann, bob):
    document = subject_access_document(person=Person(EMAIL, "ann@example.com"))

    about_ann = AuditEvent.objects.exclude(contact_id=bob.pk).exclude(contact_id=None)
    assert [item["id"] for item in document["events"]] == sorted(about_ann.values_list("pk", flat=True))
    assert {item["action"] for item in document["events"]} == {
        "contact.created", "contact.merged", "conflict.opened", "contact.updated"}
    assert bob.pk not in {item["contact_id"] for item in document["events"]}
    assert "bob@example.com" not in json.dumps(document) and "Bob" not in json.dumps(document)


def test_the_document_holds_the_hub_values_each_system_and_the_ledger(ann, bob):
    document = subject_access_document(person=Person(PHONE, "+14155550100"))
    (contact,) = document["contacts"]
    assert contact["id"] == ann.pk
    assert contact["values"]["email"] == "ann.lee@example.com" and contact["values"]["first_name"] == "Ann"
    assert contact["attributes"] == {"plan": "pro"}
    (system,) = contact["systems"]
    assert system["connection"] == "HubSpot" and system["external_id"] == "hs-1"
    assert system["values_last_agreed"] == {"email": "ann@example.com", "firstname": "Ann"}
    assert system["email_consent_last_agreed"] == "subscribed"
    (statement,) = contact["consent_ledger"]
    assert (statement["channel"], statement["state"], statement["system"]) == ("email", "subscribed", "HubSpot")
    json.dumps(document)  # plain JSON data throughout


def test_someone_nobody_holds_gets_an_empty_document(ann):
    document = subject_access_document(person=Person(EMAIL, "nobody@example.com"))
    assert (document["contacts"], document["events"]) == ([], [])


def test_the_download_is_audited_with_a_digest_never_the_address(compliance, ann):
    response = compliance.get(reverse("audit:subject_access"), {"person": "Ann@Example.com", "format": "json"})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="subject-access-')
    assert "no-store" in response["Cache-Control"]
    document = json.loads(response.content)
    assert document["person"] == {"kind": "email", "value": "ann@example.com"}
    assert [contact["id"] for contact in document["contacts"]] == [ann.pk]

    audited = AuditEvent.objects.get(action=EXPORTED)
    assert audited.actor.username == "carla"
    assert audited.changes["person"] == [None, Person(EMAIL, "ann@example.com").audit_key()]
    assert audited.changes["format"] == [None, "json"]
    stored = json.dumps(audited.changes) + audited.object_repr + audited.object_id
    assert "ann@example.com" not in stored and "ann.lee@example.com" not in stored
    # An export is not an event about the person that the next export would list.
    assert audited.contact_id is None


def test_the_page_shows_it_and_is_audited_too(compliance, ann, bob):
    response = compliance.get(reverse("audit:subject_access"), {"person": "ann.lee@example.com"})
    html = response.content.decode()
    assert response.status_code == 200
    assert f"Contact #{ann.pk}" in html and "hs-1" in html and "conflict.opened" in html
    assert "bob@example.com" not in html
    assert "format=json" in html
    assert AuditEvent.objects.get(action=EXPORTED).changes["format"] == [None, "page"]


def test_hostile_values_are_shown_as_text(compliance, hostile_contacts, hubspot):
    person = Contact.objects.create(email="xss1@example.com")
    for record in hostile_contacts:
        event("contact.updated", contact=person, changes={"first_name": [None, record["firstname"]]})
        person.attributes[clean_text(record["why"])] = clean_text(record["firstname"])
    person.save()
    RecordLink.objects.create(contact=person, connection=hubspot, external_id="<b>x</b>",
                              merge_base={"items": "<script>alert(2)</script>", "firstname": "<i>y</i>"})
    html = compliance.get(reverse("audit:subject_access"), {"person": "xss1@example.com"}).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(2)</script>" not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html and "<i>y</i>" not in html


@pytest.mark.parametrize(("params", "status", "text"), [
    ({}, 200, "Email or phone"),
    ({"person": ""}, 400, "Enter an email address or a phone number."),
    ({"person": "a@b@example.com"}, 400, "This email address has more than one @."),
    ({"person": "nobody@example.com"}, 200, "Syncapp holds nothing about"),
    ({"person": "ann@example.com", "format": "xml"}, 400, "Choose the format"),
])
def test_what_the_page_answers(compliance, ann, params, status, text):
    response = compliance.get(reverse("audit:subject_access"), params)
    assert response.status_code == status
    assert text in response.content.decode()
    assert AuditEvent.objects.filter(action=EXPORTED).count() == (1 if params.get("person") == "nobody@example.com"
                                                                 else 0)


@pytest.mark.parametrize("role", [MARKETER, REVIEWER, None])
def test_only_compliance_may_see_it(ann, role):
    client = Client()
    client.force_login(user_with_role("someone", role))
    assert client.get(reverse("audit:subject_access"), {"person": "ann@example.com"}).status_code == 403
    assert not AuditEvent.objects.filter(action=EXPORTED).exists()
