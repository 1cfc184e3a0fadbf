"""The duplicates list and pair page: who may see and decide, what they show, the forms' errors."""
import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from audit.suppression import suppress
from connections.models import Connection
from connections.providers.base import TransientError
from syncapp.engine.text import clean_text
from syncapp.models import Contact, DuplicatePair, RecordLink
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def pair(sync):
    first = Contact.objects.create(email="ada@example.com", phone="+14155550100", first_name="Ada")
    second = Contact.objects.create(email="ada.lovelace@example.com", phone="+14155550100", last_name="Lovelace")
    RecordLink.objects.create(contact=first, connection=Connection.objects.get(name="HubSpot"), external_id="101")
    RecordLink.objects.create(contact=second, connection=Connection.objects.get(name="Mailchimp"),
                              external_id="md5-second")
    return DuplicatePair.objects.create(contact_a=first, contact_b=second, reason=DuplicatePair.Reason.SAME_PHONE,
                                        detail="Phone +14155550100 on ada@example.com and ada.lovelace@example.com")


def client_as(role: str | None, username: str = "someone") -> Client:
    client = Client()
    client.force_login(user_with_role(username, role))
    return client


def merge(client: Client, pair: DuplicatePair, **data):
    return client.post(reverse("duplicate_merge", args=[pair.pk]), data)


def dismiss(client: Client, pair: DuplicatePair, **data):
    return client.post(reverse("duplicate_dismiss", args=[pair.pk]), data)


# Access


def test_visitors_are_sent_to_log_in(client, pair):
    for response in (
        client.get(reverse("duplicate_list")),
        client.get(reverse("duplicate_detail", args=[pair.pk])),
        merge(client, pair, survivor=pair.contact_a_id),
        dismiss(client, pair),
    ):
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN


@pytest.mark.parametrize("role", [None, MARKETER, COMPLIANCE])
def test_only_reviewers_see_and_decide_pairs(pair, role):
    client = client_as(role)
    assert client.get(reverse("duplicate_list")).status_code == 403
    assert client.get(reverse("duplicate_detail", args=[pair.pk])).status_code == 403
    assert merge(client, pair, survivor=pair.contact_a_id).status_code == 403
    assert dismiss(client, pair).status_code == 403
    assert Contact.objects.count() == 2
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN
    assert reverse("duplicate_list") not in client.get(reverse("dashboard")).content.decode()


def test_deciding_needs_a_post_with_the_csrf_token(pair):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with_role("rita", REVIEWER))
    assert client.get(reverse("duplicate_merge", args=[pair.pk])).status_code == 405
    assert merge(client, pair, survivor=pair.contact_a_id).status_code == 403
    assert dismiss(client, pair).status_code == 403
    assert Contact.objects.count() == 2


def test_a_viewer_without_the_change_permission_sees_no_forms(pair):
    from django.contrib.auth.models import Permission

    viewer = user_with_role("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_duplicatepair"))
    client = Client()
    client.force_login(viewer)
    for url in (reverse("duplicate_list"), reverse("duplicate_detail", args=[pair.pk])):
        html = client.get(url).content.decode()
        assert "ada.lovelace@example.com" in html
        assert 'data-testid="merge-form"' not in html
    assert merge(client, pair, survivor=pair.contact_a_id).status_code == 403


# The list


def test_the_list_shows_both_contacts_side_by_side_with_their_systems(pair):
    client = client_as(REVIEWER)
    html = client.get(reverse("duplicate_list")).content.decode()
    for text in ("ada@example.com", "ada.lovelace@example.com", "Ada", "Lovelace", "+14155550100", "HubSpot", "101",
                 "Mailchimp", "md5-second", "Same phone, different emails", "Phone +14155550100 on ada@example.com"):
        assert text in html
    assert 'data-testid="merge-form"' in html and "Not the same person" in html
    assert f'href="{reverse("duplicate_list")}" aria-current="page"' in html  # the menu entry


def test_the_list_holds_only_open_pairs(pair):
    client = client_as(REVIEWER, "rita")
    dismiss(client, pair)
    html = client.get(reverse("duplicate_list")).content.decode()
    assert "ada.lovelace@example.com" not in html and "No likely duplicates" in html


# Merging


def test_a_reviewer_merges_keeping_the_contact_of_their_choice(pair):
    response = merge(client_as(REVIEWER, "rita"), pair, survivor=pair.contact_b_id, reason="Same person, new job")
    assert response.status_code == 302 and response.url == reverse("contact_detail", args=[pair.contact_b_id])
    survivor = Contact.objects.get()
    assert (survivor.pk, survivor.email, survivor.first_name) == (pair.contact_b_id, "ada.lovelace@example.com", "Ada")
    assert set(survivor.links.values_list("connection__name", flat=True)) == {"HubSpot", "Mailchimp"}
    event = AuditEvent.objects.get(action="contact.merged")
    assert event.actor.username == "rita" and event.changes["reason"] == [None, "Same person, new job"]


@pytest.mark.parametrize(("data", "error"), [
    ({}, "Choose which contact to keep."),
    ({"survivor": "999"}, "Choose one of the pair&#x27;s two contacts to keep."),
    ({"survivor": "not a number"}, "Choose one of the pair&#x27;s two contacts to keep."),
    ({"survivor": "{a}", "reason": "r" * 2001}, "at most 2000 characters"),
])
def test_a_merge_the_form_refuses_is_shown_with_its_error_and_nothing_changes(pair, data, error):
    data = {name: value.format(a=pair.contact_a_id) for name, value in data.items()}
    response = merge(client_as(REVIEWER), pair, **data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert Contact.objects.count() == 2
    assert not AuditEvent.objects.filter(action="contact.merged").exists()


def test_a_system_refusing_to_merge_its_records_is_reported_and_nothing_changes(pair, monkeypatch):
    RecordLink.objects.create(contact=pair.contact_b, connection=Connection.objects.get(name="HubSpot"),
                              external_id="202")

    class Refusing:
        def merge_records(self, primary_id, other_id):
            raise TransientError("HubSpot answered 503 <b>three</b> times.", status=503)

    monkeypatch.setattr("syncapp.services.duplicates.provider_for", lambda connection, fields=(): Refusing())
    response = merge(client_as(REVIEWER), pair, survivor=pair.contact_a_id)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Nothing was merged. HubSpot refused to merge its records: HubSpot answered 503" in html
    assert "<b>three</b>" not in html
    assert Contact.objects.count() == 2
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN


def test_a_merge_touching_a_person_erased_on_request_is_refused_with_a_message(pair):
    suppress(email="ada.lovelace@example.com", phone=None)
    response = merge(client_as(REVIEWER), pair, survivor=pair.contact_a_id)
    assert response.status_code == 409
    assert "Nothing was merged" in response.content.decode() and "erased on request" in response.content.decode()
    assert Contact.objects.count() == 2
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN


def test_the_list_leaves_out_pairs_holding_a_person_erased_on_request(pair):
    suppress(email=None, phone="+14155550100")
    html = client_as(REVIEWER).get(reverse("duplicate_list")).content.decode()
    assert "ada.lovelace@example.com" not in html and "No likely duplicates" in html


def test_a_pair_someone_else_decided_meanwhile_is_not_merged(pair):
    client = client_as(REVIEWER)
    dismiss(client, pair)
    response = merge(client, pair, survivor=pair.contact_a_id)
    assert response.status_code == 302 and response.url == reverse("duplicate_list")
    assert "already decided by someone else" in client.get(response.url).content.decode()
    assert Contact.objects.count() == 2


def test_a_merged_pair_still_opens_and_a_second_merge_of_it_is_refused(pair):
    client = client_as(REVIEWER)
    merge(client, pair, survivor=pair.contact_a_id, reason="Same person")
    page = client.get(reverse("duplicate_detail", args=[pair.pk]))
    assert page.status_code == 200 and "Merged into the other contact" in page.content.decode()
    # A stale page posting the other choice.
    response = merge(client, pair, survivor=pair.contact_b_id or 0, reason="Same person")
    assert response.status_code == 302 and response.url == reverse("duplicate_list")
    assert Contact.objects.count() == 1


# Dismissing


def test_not_the_same_person_closes_the_pair_with_the_reason(pair):
    client = client_as(REVIEWER, "rita")
    response = dismiss(client, pair, reason="Twins")
    assert response.status_code == 302 and response.url == reverse("duplicate_list")
    pair.refresh_from_db()
    assert (pair.status, pair.decided_by.username) == (DuplicatePair.Status.DISMISSED, "rita")
    # One event in the trail of each of the two contacts.
    assert [event.changes["reason"] for event in AuditEvent.objects.filter(action="duplicate.dismissed")] == [
        [None, "Twins"], [None, "Twins"]]
    assert Contact.objects.count() == 2
    detail = client.get(reverse("duplicate_detail", args=[pair.pk])).content.decode()
    assert "Not the same person by rita" in detail and 'data-testid="merge-form"' not in detail


def test_a_dismissal_the_form_refuses_is_shown_with_its_error(pair):
    response = dismiss(client_as(REVIEWER), pair, reason="r" * 2001)
    assert response.status_code == 400
    assert "at most 2000 characters" in response.content.decode()
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN


# Escaping


def test_hostile_values_are_escaped_on_the_list_and_the_pair_page(sync, hostile_contacts):
    hubspot = Connection.objects.get(name="HubSpot")
    contacts = []
    for index, record in enumerate(hostile_contacts):
        first, last = clean_text(record["firstname"]), clean_text(record["lastname"])
        contact = Contact.objects.create(email=f"hostile{index}@example.com", first_name=first, last_name=last,
                                         company=first, phone="+14155550100")
        RecordLink.objects.create(contact=contact, connection=hubspot, external_id=f"{index}-{first}"[:200])
        contacts.append(contact)
    pairs = [
        DuplicatePair.objects.create(contact_a=first, contact_b=second, reason=DuplicatePair.Reason.SAME_PHONE,
                                     detail=clean_text(f"Phone on {first.first_name} and {second.first_name}")[:300])
        for first, second in zip(contacts[::2], contacts[1::2], strict=False)
    ]
    client = client_as(REVIEWER)
    for url in [reverse("duplicate_list"), *(reverse("duplicate_detail", args=[pair.pk]) for pair in pairs)]:
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert '" onmouseover="alert(1)' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(reverse("duplicate_list")).content.decode()
