"""The review queue and conflict pages: filters, who may do what, resolving, escaping."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from audit.services import audit_record
from syncapp.engine.text import clean_text
from syncapp.models import Conflict, Contact
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from syncapp.views.conflicts import sides_digest
from tests.syncapp.conflict_rows import conflict_make, contact_make, side, two_way_make
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db

QUEUE = reverse("conflict_queue")
BULK = reverse("conflicts_resolve_bulk")


@pytest.fixture
def workspace():
    return two_way_make()


@pytest.fixture
def conflict(workspace):
    contact = contact_make(workspace, "ann@example.com", first_name="Ann")
    return conflict_make(workspace, contact, hubspot="Anna", mailchimp="Annie")


@pytest.fixture
def reviewer_client(client):
    client.force_login(user_with_role("rita", REVIEWER))
    return client


def listed(response) -> list[int]:
    return [conflict.pk for conflict in response.context["page"].object_list]


def detail_url(conflict) -> str:
    return reverse("conflict_detail", args=[conflict.pk])


def resolve_url(conflict) -> str:
    return reverse("conflict_resolve", args=[conflict.pk])


def shown_messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# Access


def test_visitors_are_sent_to_log_in(client, conflict):
    for url in (QUEUE, detail_url(conflict)):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_users_without_a_role_may_not_see_conflicts(client, conflict):
    client.force_login(user_with_role("nobody"))
    assert client.get(QUEUE).status_code == 403
    assert client.get(detail_url(conflict)).status_code == 403
    assert client.post(resolve_url(conflict), {"keep": "hub", "reason": "r"}).status_code == 403


@pytest.mark.parametrize("role", [MARKETER, COMPLIANCE])
def test_marketers_and_compliance_see_the_queue_but_cannot_resolve(client, workspace, conflict, role):
    client.force_login(user_with_role("someone", role))
    queue = client.get(QUEUE)
    assert listed(queue) == [conflict.pk]
    assert b'name="conflicts"' not in queue.content
    page = client.get(detail_url(conflict))
    assert page.status_code == 200
    assert b'name="keep"' not in page.content
    assert b"resolving it is for reviewers" in page.content

    response = client.post(resolve_url(conflict), {"keep": f"side:{workspace.hubspot.pk}", "reason": "r"})
    assert response.status_code == 403
    response = client.post(BULK, {"conflicts": [conflict.pk], "keep": "hub", "reason": "r"})
    assert response.status_code == 403
    assert Conflict.objects.get(pk=conflict.pk).is_open


def test_the_menu_shows_reviewers_how_many_conflicts_wait(reviewer_client, workspace, conflict):
    conflict_make(workspace, contact_make(workspace, "bo@example.com", first_name="Bo"))
    html = reviewer_client.get(reverse("dashboard")).content.decode()
    assert f'href="{QUEUE}"' in html
    assert 'data-testid="open-conflicts">2<' in html


def test_the_menu_has_no_review_entry_for_users_who_may_not_see_it(client, conflict):
    client.force_login(user_with_role("nobody"))
    assert f'href="{QUEUE}"'.encode() not in client.get(reverse("dashboard")).content


# The queue and its filters


def test_the_queue_lists_open_conflicts_oldest_first(reviewer_client, workspace, conflict):
    older = conflict_make(workspace, contact_make(workspace, "old@example.com", first_name="O"),
                          age=timedelta(days=3))
    conflict_make(workspace, contact_make(workspace, "done@example.com", first_name="D"),
                  status=Conflict.Status.RESOLVED)
    response = reviewer_client.get(QUEUE)
    assert listed(response) == [older.pk, conflict.pk]
    html = response.content.decode()
    assert "Anna" in html and "Annie" in html


def test_any_status_shows_closed_conflicts_too(reviewer_client, workspace, conflict):
    closed = conflict_make(workspace, contact_make(workspace, "done@example.com", first_name="D"),
                           status=Conflict.Status.RESOLVED)
    assert listed(reviewer_client.get(QUEUE, {"status": ""})) == [conflict.pk, closed.pk]
    assert listed(reviewer_client.get(QUEUE, {"status": "resolved"})) == [closed.pk]


def test_filters_by_sync_field_and_system(reviewer_client, workspace, conflict):
    other = two_way_make("Other sync", prefix="Other ")
    phone = conflict_make(workspace, contact_make(workspace, "ph@example.com", phone="+442079460958"),
                          hub_field="phone", hubspot="+442079460000", mailchimp="+442079461111")
    elsewhere = conflict_make(other, contact_make(other, "else@example.com", first_name="E"))
    mailchimp_only = conflict_make(
        workspace, contact_make(workspace, "mc@example.com", first_name="M"),
        sides=[side(workspace.mailchimp, "FNAME", "Mia"), side(other.mailchimp, "FNAME", "Mya")],
    )

    assert listed(reviewer_client.get(QUEUE, {"sync": other.sync.pk})) == [elsewhere.pk]
    assert listed(reviewer_client.get(QUEUE, {"hub_field": "phone"})) == [phone.pk]
    assert listed(reviewer_client.get(QUEUE, {"connection": workspace.hubspot.pk})) == [conflict.pk, phone.pk]
    assert listed(reviewer_client.get(QUEUE, {"connection": other.mailchimp.pk})) == [elsewhere.pk,
                                                                                     mailchimp_only.pk]
    both = reviewer_client.get(QUEUE, {"sync": workspace.sync.pk, "hub_field": "first_name",
                                       "connection": workspace.mailchimp.pk})
    assert listed(both) == [conflict.pk, mailchimp_only.pk]


def test_filters_by_age(reviewer_client, workspace, conflict):
    day_old = conflict_make(workspace, contact_make(workspace, "d@example.com", first_name="D"),
                            age=timedelta(days=2))
    month_old = conflict_make(workspace, contact_make(workspace, "m@example.com", first_name="M"),
                              age=timedelta(days=40))
    assert listed(reviewer_client.get(QUEUE, {"age": "1d"})) == [month_old.pk, day_old.pk]
    assert listed(reviewer_client.get(QUEUE, {"age": "7d"})) == [month_old.pk]
    assert listed(reviewer_client.get(QUEUE, {"age": "30d"})) == [month_old.pk]
    week_ago = (timezone.localdate() - timedelta(days=7)).isoformat()
    assert listed(reviewer_client.get(QUEUE, {"created_before": week_ago})) == [month_old.pk]
    assert listed(reviewer_client.get(QUEUE, {"created_after": week_ago})) == [day_old.pk, conflict.pk]


def test_an_unknown_filter_value_is_a_form_error_not_a_crash(reviewer_client, conflict):
    response = reviewer_client.get(QUEUE, {"age": "forever", "sync": "x"})
    assert response.status_code == 200
    assert response.context["filter"].form.errors


def test_the_queue_pages_and_keeps_its_filters(reviewer_client, workspace):
    for number in range(55):
        conflict_make(workspace, contact_make(workspace, f"p{number}@example.com", first_name="P"))
    first = reviewer_client.get(QUEUE, {"hub_field": "first_name"})
    assert len(listed(first)) == 50
    assert "?hub_field=first_name&amp;page=2" in first.content.decode()
    assert len(listed(reviewer_client.get(QUEUE, {"hub_field": "first_name", "page": 2}))) == 5


# The conflict page


def test_the_page_shows_the_base_each_side_with_its_system_and_time_and_the_history(reviewer_client, workspace,
                                                                                  conflict):
    audit_record(action="contact.updated", obj=conflict.contact, system="HubSpot", contact_id=conflict.contact_id,
                 changes={"first_name": ["An", "Ann"]})
    response = reviewer_client.get(detail_url(conflict))
    html = response.content.decode()
    assert response.context["conflict"] == conflict
    assert 'data-testid="base-value"><bdi class="field-value">Ann</bdi>' in html
    assert 'data-testid="hub-value"><bdi class="field-value">Ann</bdi>' in html
    for entry in conflict.sides:
        assert f'value="side:{entry["connection_id"]}"' in html
    assert "HubSpot" in html and "Mailchimp" in html and "Anna" in html and "Annie" in html
    changed = timezone.localtime(timezone.now() - timedelta(hours=2))
    assert changed.strftime("%Y-%m-%d") in html
    assert [event.action for event in response.context["history"]] == ["contact.updated"]
    assert "contact.updated" in html


def test_the_page_links_to_the_contact(reviewer_client, conflict):
    response = reviewer_client.get(detail_url(conflict))
    assert response.context["contact_url"] == f"/contacts/{conflict.contact_id}/"
    assert f'href="/contacts/{conflict.contact_id}/"' in response.content.decode()


def test_resolving_keeps_the_chosen_side_and_the_item_leaves_the_queue(reviewer_client, workspace, conflict):
    response = reviewer_client.post(resolve_url(conflict), {
        "keep": f"side:{workspace.mailchimp.pk}", "reason": "She asked", "seen": sides_digest(conflict),
    })
    assert response.status_code == 302 and response.url == QUEUE
    assert Contact.objects.get(pk=conflict.contact_id).first_name == "Annie"
    stored = Conflict.objects.get(pk=conflict.pk)
    assert (stored.status, stored.resolved_by.username, stored.reason) == ("resolved", "rita", "She asked")

    queue = reviewer_client.get(QUEUE)
    assert listed(queue) == []
    page = queue.content.decode()
    assert "Resolved First name of ann@example.com. Kept Mailchimp&#x27;s value." in page
    assert "A run of “HubSpot and Mailchimp” was requested" in page


def test_resolving_with_a_typed_value(reviewer_client, conflict):
    response = reviewer_client.post(resolve_url(conflict), {"keep": "typed", "typed_value": "Anne-Marie",
                                                            "reason": "Checked her passport"})
    assert response.status_code == 302
    assert Contact.objects.get(pk=conflict.contact_id).first_name == "Anne-Marie"


def test_a_closed_conflict_is_shown_read_only_with_who_resolved_it_and_why(reviewer_client, workspace, conflict):
    reviewer_client.post(resolve_url(conflict), {"keep": "hub", "reason": "Both were typos <b>really</b>"})
    html = reviewer_client.get(detail_url(conflict)).content.decode()
    assert 'data-testid="decision"' in html
    assert "Kept the hub&#x27;s value" in html
    assert "rita" in html
    assert "Both were typos &lt;b&gt;really&lt;/b&gt;" in html
    assert 'name="keep"' not in html
    # Posting again changes nothing and says so.
    response = reviewer_client.post(resolve_url(conflict), {"keep": f"side:{workspace.hubspot.pk}", "reason": "r"})
    assert response.status_code == 302
    assert "closed meanwhile" in shown_messages(response)[-1]
    assert Contact.objects.get(pk=conflict.contact_id).first_name == "Ann"


def test_an_invalid_typed_value_is_refused_on_the_page(reviewer_client, workspace):
    conflict = conflict_make(workspace, contact_make(workspace, "di@example.com"), hub_field="email",
                             hubspot="di@example.org", mailchimp="di@example.net")
    response = reviewer_client.post(resolve_url(conflict), {"keep": "typed", "typed_value": "di at example",
                                                            "reason": "r"})
    assert response.status_code == 400
    assert "The typed value does not fit Email" in response.content.decode()
    assert Conflict.objects.get(pk=conflict.pk).is_open


@pytest.mark.parametrize(
    "data, error",
    [
        ({"keep": "hub"}, "Say why, for the audit trail."),
        ({"reason": "r"}, "Choose which value to keep."),
        ({"keep": "typed", "reason": "r"}, "Type the value to keep."),
        ({"keep": "side:abc", "reason": "r"}, "Choose which value to keep."),
    ],
)
def test_an_incomplete_decision_is_refused_with_a_message(reviewer_client, conflict, data, error):
    response = reviewer_client.post(resolve_url(conflict), data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert Conflict.objects.get(pk=conflict.pk).is_open


def test_values_read_after_the_page_was_shown_are_shown_again_before_deciding(reviewer_client, workspace, conflict):
    seen = sides_digest(conflict)
    sides = [dict(entry) for entry in conflict.sides]
    sides[0].update(raw="Anne", value="Anne")
    Conflict.objects.filter(pk=conflict.pk).update(sides=sides)

    response = reviewer_client.post(resolve_url(conflict), {"keep": f"side:{workspace.hubspot.pk}", "reason": "r",
                                                            "seen": seen})
    assert response.status_code == 409
    assert "decide again" in response.content.decode()
    assert ">Anne<" in response.content.decode()
    assert Conflict.objects.get(pk=conflict.pk).is_open


# Bulk


def test_bulk_resolve_applies_the_choice_and_lists_the_refused(reviewer_client, workspace, conflict):
    other = two_way_make("Other", prefix="Other ")
    second = conflict_make(workspace, contact_make(workspace, "bo@example.com", first_name="Bo"), hubspot="Bob")
    without_hubspot = conflict_make(
        workspace, contact_make(workspace, "cy@example.com", first_name="Cy"),
        sides=[side(workspace.mailchimp, "FNAME", "Cyd"), side(other.mailchimp, "FNAME", "Cyril")],
    )
    back = f"{QUEUE}?hub_field=first_name"
    response = reviewer_client.post(BULK, {
        "conflicts": [conflict.pk, second.pk, without_hubspot.pk], "keep": f"side:{workspace.hubspot.pk}",
        "reason": "CRM of record", "next": back,
    })

    assert response.status_code == 302 and response.url == back
    assert Contact.objects.get(pk=conflict.contact_id).first_name == "Anna"
    assert Contact.objects.get(pk=second.contact_id).first_name == "Bob"
    assert Conflict.objects.get(pk=without_hubspot.pk).is_open
    notes = shown_messages(response)
    assert notes[0].startswith("Resolved 2 conflicts. A run of “HubSpot and Mailchimp” was requested")
    assert notes[1] == "Not resolved: First name of cy@example.com. No value from that system in this conflict."
    assert listed(reviewer_client.get(back)) == [without_hubspot.pk]


def test_the_queue_offers_each_system_on_the_page_the_hub_and_a_typed_value(reviewer_client, workspace, conflict):
    choices = reviewer_client.get(QUEUE).context["keep_choices"]
    assert choices == [
        (f"side:{workspace.hubspot.pk}", "Keep HubSpot's value"),
        (f"side:{workspace.mailchimp.pk}", "Keep Mailchimp's value"),
        ("hub", "Keep the hub's value"),
        ("typed", "Type a value"),
    ]


@pytest.mark.parametrize(
    "data, error",
    [
        ({"keep": "hub", "reason": "r"}, "Select the conflicts to resolve."),
        ({"conflicts": ["999999"], "keep": "hub", "reason": "r"}, "Select a valid choice."),
        ({"conflicts": "the conflict", "keep": "hub"}, "Say why, for the audit trail."),
        ({"conflicts": "the conflict", "keep": "side:", "reason": "r"}, "Choose which value to keep."),
    ],
)
def test_an_incomplete_bulk_form_changes_nothing_and_says_why(reviewer_client, conflict, data, error):
    if data.get("conflicts") == "the conflict":
        data = {**data, "conflicts": [conflict.pk]}
    response = reviewer_client.post(BULK, data)
    assert response.status_code == 302 and response.url == QUEUE
    assert any(error in note for note in shown_messages(response))
    assert Conflict.objects.get(pk=conflict.pk).is_open


def test_the_bulk_form_only_returns_to_the_queue(reviewer_client, conflict):
    response = reviewer_client.post(BULK, {"conflicts": [conflict.pk], "keep": "hub", "reason": "r",
                                           "next": "https://evil.example/conflicts/"})
    assert response.url == QUEUE


# Hostile values


def test_hostile_values_from_the_systems_are_escaped(reviewer_client, workspace, hostile_contacts):
    conflicts = []
    for number, record in enumerate(hostile_contacts[:10]):
        contact = contact_make(workspace, f"h{number}@example.com", first_name="Plain")
        first, last = clean_text(record.get("firstname") or ""), clean_text(record.get("lastname") or "")
        conflict = conflict_make(workspace, contact, hubspot=first, mailchimp=last)
        audit_record(action="contact.updated", obj=contact, system="Mailchimp", contact_id=contact.pk,
                     changes={"first_name": ["Plain", first], "last_name": [last, None]})
        conflicts.append(conflict)
    pages = [QUEUE, *(detail_url(conflict) for conflict in conflicts)]
    for url in pages:
        html = reviewer_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html, url
        assert '" onmouseover="alert(1)' not in html, url
    queue = reviewer_client.get(QUEUE).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in queue
    assert "&quot; onmouseover=&quot;alert(1)" in queue
