"""The contact list and page: who may see them, what they show, and recording consent."""
import re
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from connections.models import Connection
from syncapp.engine.text import clean_text
from syncapp.models import Conflict, ConsentEvent, Contact, DuplicatePair, PendingPush, RecordLink
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from syncapp.selectors import CONTACTS_PER_PAGE
from syncapp.views.contacts import HISTORY_PER_PAGE, contact_ids_merged_into
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def contact():
    return Contact.objects.create(email="ada@example.com", phone="+14155550100", first_name="Ada",
                                  last_name="Lovelace", company="Analytical Engines", lifecycle_stage="customer",
                                  email_consent="subscribed", attributes={"plan": "pro"})


def client_as(role: str | None, username: str = "someone") -> Client:
    client = Client()
    client.force_login(user_with_role(username, role))
    return client


def page(client: Client, contact: Contact, **params) -> str:
    response = client.get(reverse("contact_detail", args=[contact.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


# Access


def test_visitors_are_sent_to_log_in(client, contact):
    for response in (
        client.get(reverse("contact_list")),
        client.get(reverse("contact_detail", args=[contact.pk])),
        client.post(reverse("contact_consent_record", args=[contact.pk]), {"channel": "email", "state": "cleaned"}),
    ):
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not ConsentEvent.objects.exists()


def test_users_without_a_role_may_not_see_contacts(contact):
    client = client_as(None)
    assert client.get(reverse("contact_list")).status_code == 403
    assert client.get(reverse("contact_detail", args=[contact.pk])).status_code == 403
    assert "Contacts</a>" not in client.get(reverse("dashboard")).content.decode()


@pytest.mark.parametrize("role", [MARKETER, REVIEWER, COMPLIANCE])
def test_every_role_sees_the_list_and_the_page(contact, role):
    client = client_as(role)
    assert client.get(reverse("contact_list")).status_code == 200
    assert "ada@example.com" in page(client, contact)
    assert reverse("contact_list") in client.get(reverse("dashboard")).content.decode()


def test_compliance_sees_the_ledger_but_may_not_record_a_statement(contact):
    client = client_as(COMPLIANCE)
    assert 'data-testid="consent-form"' not in page(client, contact)
    response = client.post(reverse("contact_consent_record", args=[contact.pk]),
                           {"channel": "email", "state": "unsubscribed"})
    assert response.status_code == 403
    assert not ConsentEvent.objects.exists()


def test_recording_needs_a_post_with_the_csrf_token(contact):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("rita", REVIEWER))
    url = reverse("contact_consent_record", args=[contact.pk])
    assert client.get(url).status_code == 405
    assert client.post(url, {"channel": "email", "state": "unsubscribed"}).status_code == 403
    assert not ConsentEvent.objects.exists()


def test_an_unknown_contact_is_not_found():
    assert client_as(REVIEWER).get(reverse("contact_detail", args=[999])).status_code == 404


# The list


@pytest.mark.parametrize(("query", "found"), [
    ("ADA@example", True),
    ("ada lovelace", True),
    ("Lovelace Ada", True),
    ("(415) 555-0100", True),
    ("+1 415 555 0100", True),
    ("ada babbage", False),
    ("555-0199", False),
])
def test_the_list_searches_email_phone_and_name(contact, query, found):
    Contact.objects.create(email="charles@example.com", first_name="Charles", last_name="Babbage")
    html = client_as(MARKETER).get(reverse("contact_list"), {"q": query}).content.decode()
    assert ("ada@example.com" in html) is found
    assert "charles@example.com" not in html


def test_the_search_matches_the_start_of_a_word_not_its_middle(contact):
    client = client_as(MARKETER)
    assert "ada@example.com" in client.get(reverse("contact_list"), {"q": "LOVE"}).content.decode()
    assert "ada@example.com" not in client.get(reverse("contact_list"), {"q": "lace"}).content.decode()
    assert "ada@example.com" in client.get(reverse("contact_list"), {"q": "14155550"}).content.decode()


def list_page(client: Client, **params) -> tuple[list[str], dict]:
    """Return the emails a page of the list shows, and its Previous and Next links' queries."""
    response = client.get(reverse("contact_list"), params)
    assert response.status_code == 200
    html = response.content.decode()
    links = {rel: dict(parse_qsl(query.replace("&amp;", "&")))
             for rel, query in re.findall(r'rel="(prev|next)" href="\?([^"]*)"', html)}
    return re.findall(r"<bdi>(c\d+@example\.com)</bdi>", html), links


def test_the_list_pages_through_every_contact_once_most_recently_changed_first():
    now = timezone.now()
    contacts = Contact.objects.bulk_create(Contact(email=f"c{n}@example.com") for n in range(CONTACTS_PER_PAGE * 2 + 7))
    for number, contact in enumerate(contacts):
        # Ties on the change time: the id breaks them, across page boundaries too.
        Contact.objects.filter(pk=contact.pk).update(updated_at=now - timedelta(seconds=number // 3))
    expected = [contact.email for contact in Contact.objects.order_by("-updated_at", "-id")]
    client = client_as(MARKETER)
    seen, params, pages = [], {}, []
    while True:
        emails, links = list_page(client, **params)
        seen += emails
        pages.append((params, emails))
        if "next" not in links:
            break
        params = links["next"]
    assert seen == expected and len(pages) == 3
    assert "prev" not in list_page(client)[1]
    # Back from the last page, Previous shows each page again.
    _, links = list_page(client, **pages[-1][0])
    assert list_page(client, **links["prev"])[0] == pages[1][1]


def test_a_search_pages_on_with_its_query():
    Contact.objects.bulk_create(Contact(email=f"c{n}@example.com", first_name="Ada" if n % 2 else "Bob")
                                for n in range(CONTACTS_PER_PAGE * 3))
    client = client_as(MARKETER)
    first, links = list_page(client, q="ada")
    second, _ = list_page(client, **links["next"])
    assert links["next"]["q"] == "ada"
    assert (len(first), len(second)) == (CONTACTS_PER_PAGE, CONTACTS_PER_PAGE // 2)
    assert not set(first) & set(second)


def test_a_search_matching_more_than_the_count_cap_shows_the_same_contacts(monkeypatch):
    Contact.objects.bulk_create(Contact(email=f"c{n}@example.com", first_name="Ada" if n % 3 else "Bob",
                                        last_name="Lovelace") for n in range(CONTACTS_PER_PAGE * 2))
    client = client_as(MARKETER)
    counted = list_page(client, q="ada love")
    monkeypatch.setattr("syncapp.pagination.COUNT_CAP", 10)
    walked = list_page(client, q="ada love")
    assert walked == counted and len(walked[0]) == CONTACTS_PER_PAGE
    monkeypatch.undo()
    second = list_page(client, **walked[1]["next"])[0]
    monkeypatch.setattr("syncapp.pagination.COUNT_CAP", 10)
    assert list_page(client, **walked[1]["next"])[0] == second and len(second) == 66 - CONTACTS_PER_PAGE


def test_a_place_in_the_list_that_is_no_place_is_refused():
    response = client_as(MARKETER).get(reverse("contact_list"), {"after": "yesterday"})
    assert response.status_code == 400 and "does not exist" in response.content.decode()


def test_the_list_counts_up_to_a_cap_then_says_more(monkeypatch, contact):
    client = client_as(MARKETER)
    assert "1 in all" in client.get(reverse("contact_list")).content.decode()
    Contact.objects.bulk_create(Contact(email=f"c{n}@example.com") for n in range(4))
    monkeypatch.setattr("syncapp.pagination.COUNT_CAP", 3)
    monkeypatch.setattr("syncapp.pagination.estimated_rows", lambda model: None)
    html = client.get(reverse("contact_list")).content.decode()
    assert "More than 3 in all" in html
    monkeypatch.setattr("syncapp.pagination.estimated_rows", lambda model: 1_000_000)
    assert "About 1,000,000 in all" in client.get(reverse("contact_list")).content.decode()
    # A search is never estimated from the whole table's statistics.
    assert "More than 3 in all" in client.get(reverse("contact_list"), {"q": "c"}).content.decode()


def test_the_list_shows_each_contacts_systems_and_consent(contact, sync):
    RecordLink.objects.create(contact=contact, connection=Connection.objects.get(name="HubSpot"), external_id="101")
    html = client_as(MARKETER).get(reverse("contact_list")).content.decode()
    assert reverse("contact_detail", args=[contact.pk]) in html
    assert "HubSpot" in html and "Subscribed" in html and "+14155550100" in html


# The page


def test_the_page_shows_every_hub_value_and_attribute(contact):
    html = page(client_as(REVIEWER), contact)
    for text in ("Lovelace", "Analytical Engines", "customer", "Phone (E.164)", "SMS consent", "plan", "pro"):
        assert text in html


def test_the_page_shows_each_systems_record_and_what_was_last_agreed_with_it(contact, sync):
    hubspot = Connection.objects.get(name="HubSpot")
    mailchimp = Connection.objects.get(name="Mailchimp")
    pushed = timezone.now() - timedelta(hours=3)
    RecordLink.objects.create(contact=contact, connection=hubspot, external_id="hs-101",
                              merge_base={"firstname": "Ada (agreed)"}, last_pushed_at=pushed,
                              remote_modified_at=pushed)
    member = RecordLink.objects.create(contact=contact, connection=mailchimp, external_id="mc-hash",
                                       stable_id="mc-contact-9", archived=True)
    PendingPush.objects.create(sync=sync, connection=mailchimp, link=member)
    html = page(client_as(REVIEWER), contact)
    for text in ("hs-101", "Ada (agreed)", "firstname", "mc-hash", "mc-contact-9", "Archived",
                 f"{pushed:%Y-%m-%d %H:%M}"):
        assert text in html
    # Which sync owes the push: another sharing the system pushes its own marks.
    assert html.count("Push pending") == 1 and "by <bdi>HubSpot to Mailchimp</bdi>" in html


def test_a_system_keyed_by_a_key_the_contact_lacks_is_shown_as_not_applicable(sync):
    phone_only = Contact.objects.create(email=None, phone="+14155550199", first_name="Pat")
    html = page(client_as(MARKETER), phone_only)
    assert ("Not applicable" in html
            and "Mailchimp keys its records by an email address, which this contact does not have." in html)
    # The CRM is only read by this sync: it is not listed, however it keys its records.
    assert "HubSpot keys" not in html


def test_a_contact_with_the_keys_every_written_system_needs_has_nothing_not_applicable(contact, sync):
    assert "Not applicable" not in page(client_as(MARKETER), contact)


def test_the_ledger_lists_both_channels_newest_first_with_who_and_why(contact):
    rita = user_with_role("rita", REVIEWER)
    now = timezone.now()
    ConsentEvent.objects.create(contact=contact, channel="email", state="unsubscribed", previous_state="subscribed",
                                hub_state="unsubscribed", system="Mailchimp", evidence="webhook",
                                occurred_at=now - timedelta(days=3))
    ConsentEvent.objects.create(contact=contact, channel="sms", state="subscribed", hub_state="subscribed",
                                system="Syncapp", evidence="user", occurred_at=now - timedelta(days=1),
                                explicit_opt_in=True, note="Signed form at the fair", actor=rita)
    html = page(client_as(COMPLIANCE), contact)
    ledger = html[html.index('data-testid="ledger"'):]
    assert ledger.index("Signed form at the fair") < ledger.index("Mailchimp")
    for text in ("Webhook", "SMS", "Unsubscribed", "rita", "Yes"):
        assert text in ledger


def test_open_and_closed_conflicts_link_to_their_pages(contact, sync):
    open_one = Conflict.objects.create(sync=sync, contact=contact, hub_field="first_name", hub_value="Ada")
    closed = Conflict.objects.create(sync=sync, contact=contact, hub_field="company", status="resolved",
                                     chosen_value="Engines Ltd", resolved_at=timezone.now())
    html = page(client_as(MARKETER), contact)
    assert reverse("conflict_detail", args=[open_one.pk]) in html
    assert reverse("conflict_detail", args=[closed.pk]) in html
    assert "Engines Ltd" in html and "1 open, 1 closed" in html


def test_an_open_duplicate_pair_is_announced_with_a_link_for_reviewers(contact):
    twin = Contact.objects.create(email="ada.l@example.com", phone=contact.phone)
    pair = DuplicatePair.objects.create(contact_a=contact, contact_b=twin, reason="same_phone")
    html = page(client_as(REVIEWER), contact)
    assert f"same person as contact #{twin.pk}" in html
    assert reverse("duplicate_detail", args=[pair.pk]) in html


def test_history_is_newest_first_and_pages_on(contact):
    for number in range(HISTORY_PER_PAGE + 5):
        audit_record(action="contact.updated", obj=contact, contact_id=contact.pk, system="HubSpot",
                     changes={"first_name": [f"Old {number}", f"New {number}"]})
    audit_record(action="contact.updated", obj=contact, contact_id=contact.pk + 1, changes={"x": [1, 2]})
    client = client_as(COMPLIANCE)
    first = page(client, contact)
    assert first.index(f"New {HISTORY_PER_PAGE + 4}") < first.index(f"New {HISTORY_PER_PAGE + 3}")
    assert "New 4<" not in first and "?history_page=2" in first
    assert f"{HISTORY_PER_PAGE + 5} events" in first
    assert "New 4<" in page(client, contact, history_page=2)


def test_the_history_of_contacts_merged_into_this_one_is_part_of_it(contact):
    merged_earlier, merged_before_that = 501, 502
    audit_record(action="contact.created", object_type="contact", object_id=str(merged_before_that),
                 contact_id=merged_before_that, system="HubSpot", changes={"email": [None, "old@example.com"]})
    audit_record(action="contact.merged", object_type="contact", object_id=str(merged_earlier),
                 contact_id=merged_earlier, changes={"merged_contact_id": [None, merged_before_that]})
    audit_record(action="contact.merged", obj=contact, contact_id=contact.pk,
                 changes={"merged_contact_id": [None, merged_earlier]})
    assert contact_ids_merged_into(contact.pk) == {contact.pk, merged_earlier, merged_before_that}
    html = page(client_as(COMPLIANCE), contact)
    assert "old@example.com" in html and f"contact #{merged_before_that}, merged into this one" in html


# Recording a consent statement


def record(client: Client, contact: Contact, **data):
    return client.post(reverse("contact_consent_record", args=[contact.pk]), data)


def test_a_reviewer_records_an_opt_out_and_sees_it_in_the_ledger(contact):
    client = client_as(REVIEWER, "rita")
    response = record(client, contact, channel="email", state="unsubscribed", note="Asked by phone")
    assert response.status_code == 302 and response.url == reverse("contact_detail", args=[contact.pk])
    contact.refresh_from_db()
    assert contact.email_consent == "unsubscribed"
    event = ConsentEvent.objects.get(contact=contact)
    assert (event.evidence, event.actor.username, event.note) == ("user", "rita", "Asked by phone")
    html = client.get(response.url).content.decode()
    assert "Email consent is now unsubscribed" in html and "Asked by phone" in html
    assert AuditEvent.objects.filter(action="consent.recorded", contact_id=contact.pk).exists()


def test_a_subscription_without_explicit_opt_in_is_recorded_but_does_not_lift_an_opt_out(contact):
    Contact.objects.filter(pk=contact.pk).update(email_consent="unsubscribed")
    client = client_as(REVIEWER)
    response = record(client, contact, channel="email", state="subscribed", note="Said so on a call")
    html = client.get(response.url).content.decode()
    assert "stays unsubscribed" in html
    contact.refresh_from_db()
    assert contact.email_consent == "unsubscribed"


def test_marketers_cannot_record_consent(contact):
    response = record(client_as(MARKETER), contact, channel="email", state="subscribed", explicit_opt_in="on",
                      note="Signed form")
    assert response.status_code == 403
    assert not ConsentEvent.objects.exists()


def test_an_explicit_opt_in_re_subscribes(contact):
    Contact.objects.filter(pk=contact.pk).update(email_consent="unsubscribed")
    record(client_as(REVIEWER), contact, channel="email", state="subscribed", explicit_opt_in="on",
           note="Signed form 2026-03-01")
    contact.refresh_from_db()
    assert contact.email_consent == "subscribed" and contact.email_opt_in_at is not None
    assert ConsentEvent.objects.get(contact=contact).explicit_opt_in


@pytest.mark.parametrize(("data", "error"), [
    ({"channel": "email"}, "This field is required."),
    ({"channel": "fax", "state": "subscribed"}, "Select a valid choice."),
    ({"channel": "email", "state": "unknown"}, "Select a valid choice."),
    ({"channel": "email", "state": "unsubscribed", "explicit_opt_in": "on", "note": "x"},
     "An explicit opt-in is a subscription"),
    ({"channel": "email", "state": "subscribed", "explicit_opt_in": "on", "note": "  "},
     "Say where the opt-in was given"),
    ({"channel": "sms", "state": "unsubscribed", "note": "n" * 301}, "at most 300 characters"),
])
def test_a_statement_the_form_refuses_is_shown_with_its_error_and_not_recorded(contact, data, error):
    response = record(client_as(REVIEWER), contact, **data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not ConsentEvent.objects.exists()
    contact.refresh_from_db()
    assert contact.email_consent == "subscribed"


# Escaping


def test_hostile_values_from_systems_and_users_are_escaped(client, sync, hostile_contacts):
    hubspot = Connection.objects.get(name="HubSpot")
    rita = user_with_role("rita", REVIEWER)
    client.force_login(rita)
    contacts = []
    for index, record_ in enumerate(hostile_contacts):
        # As the engine stores them: cleaned of NUL bytes (PostgreSQL refuses them).
        first, last = clean_text(record_["firstname"]), clean_text(record_["lastname"])
        contact = Contact.objects.create(email=f"hostile{index}@example.com", first_name=first, last_name=last,
                                         company=first, attributes={first: last})
        RecordLink.objects.create(contact=contact, connection=hubspot, external_id=f"{index}-{first}"[:200],
                                  merge_base={"firstname": first, last: first})
        ConsentEvent.objects.create(contact=contact, channel="email", state="unsubscribed", hub_state="unsubscribed",
                                    system=first[:100], evidence="webhook", occurred_at=timezone.now(),
                                    note=first[:300])
        Conflict.objects.create(sync=sync, contact=contact, hub_field="first_name", hub_value=first)
        audit_record(action="contact.updated", obj=contact, contact_id=contact.pk, system="HubSpot",
                     changes={"first_name": [last, first]})
        contacts.append(contact)
    pages = [reverse("contact_list"), reverse("contact_list") + "?q=%3Cscript%3E"]
    pages += [reverse("contact_detail", args=[contact.pk]) for contact in contacts]
    for url in pages:
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert '" onmouseover="alert(1)' not in html
    detail = client.get(reverse("contact_detail", args=[contacts[0].pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
