"""The audit trail's pages: who reads what, each row's before and after, bad filters, hostile values."""
import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from audit.selectors import PAGE_SIZE
from audit.views.trail import LIST_VALUE_CHARS
from syncapp.engine.text import clean_text
from syncapp.models import Contact
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.audit.trail_rows import email_change, event
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db


def client_as(role: str | None, username: str = "someone") -> Client:
    client = Client()
    client.force_login(user_with_role(username, role))
    return client


@pytest.fixture
def compliance() -> Client:
    return client_as(COMPLIANCE, "carla")


def trail(client: Client, status: int = 200, **params) -> str:
    response = client.get(reverse("audit:trail"), params)
    assert response.status_code == status, response.content.decode()[:3000]
    return response.content.decode()


def shown_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-event-id="(\d+)"', html)]


@pytest.fixture
def history():
    """A contact's conflict, its resolution and an email change; and compliance's own events."""
    ann = Contact.objects.create(email="ann@example.com", first_name="Ann")
    opened = event("conflict.opened", contact=ann, system="HubSpot", run_id=7,
                   changes={"first_name": ["Ann", "Annie"]}, object_type="conflict", object_id="3")
    resolved = event("conflict.resolved", contact=ann, changes={"first_name": ["Ann", "Anita"],
                                                                "reason": [None, "Signed as Anita"]},
                     object_type="conflict", object_id="3")
    changed = email_change(ann, "ann.lee@example.com")
    deletion = event("deletion.requested", object_type="deletionrequest", object_id="1",
                     changes={"regulation": [None, "gdpr"]})
    login = event("login.failed", object_type="username", object_id="abc", object_repr="mallory",
                  changes={"ip": [None, "192.0.2.1"]})
    return {"ann": ann, "opened": opened, "resolved": resolved, "changed": changed, "deletion": deletion,
            "login": login}


# Who reads what


def test_visitors_are_sent_to_log_in(client, history):
    for url in (reverse("audit:trail"), reverse("audit:event", args=[history["opened"].pk]),
                reverse("audit:export"), reverse("audit:subject_access")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_users_without_a_role_may_not_read_the_trail(history):
    client = client_as(None)
    assert client.get(reverse("audit:trail")).status_code == 403
    assert client.get(reverse("audit:event", args=[history["opened"].pk])).status_code == 403
    assert "Audit</a>" not in client.get(reverse("dashboard")).content.decode()


def test_compliance_reads_every_event_newest_first(compliance, history):
    html = trail(compliance)
    events = [history[name] for name in ("login", "deletion", "changed", "resolved", "opened")]
    assert shown_ids(html) == [item.pk for item in events]
    assert 'aria-current="page">Audit</a>' in html
    assert "Export CSV" in html and "Subject access" in html


@pytest.mark.parametrize("role", [MARKETER, REVIEWER])
def test_marketers_and_reviewers_read_the_syncs_events_only(role, history):
    client = client_as(role)
    html = trail(client)
    assert shown_ids(html) == [history["changed"].pk, history["resolved"].pk, history["opened"].pk]
    assert "mallory" not in html and "192.0.2.1" not in html
    # Compliance's work is not even a choice of the action filter.
    assert "deletion.requested" not in html
    for hidden in ("deletion", "login"):
        assert client.get(reverse("audit:event", args=[history[hidden].pk])).status_code == 404
    assert client.get(reverse("audit:event", args=[history["opened"].pk])).status_code == 200
    assert "Export CSV" not in html and "Subject access" not in html


@pytest.mark.parametrize("role", [MARKETER, REVIEWER])
def test_exports_and_subject_access_are_compliances_alone(role, history):
    client = client_as(role)
    assert client.get(reverse("audit:export"), {"format": "csv"}).status_code == 403
    assert client.get(reverse("audit:subject_access"), {"person": "ann.lee@example.com"}).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()


# Filters


def test_a_person_is_found_by_the_address_they_had_before(compliance, history):
    html = trail(compliance, person="  ANN@example.com ")
    assert shown_ids(html) == [history["changed"].pk, history["resolved"].pk, history["opened"].pk]


def test_filters_combine(compliance, history):
    assert shown_ids(trail(compliance, person="ann.lee@example.com", action="conflict.opened")) == [
        history["opened"].pk]
    assert shown_ids(trail(compliance, run=7)) == [history["opened"].pk]
    assert shown_ids(trail(compliance, system="HubSpot", action="contact.updated")) == [history["changed"].pk]


@pytest.mark.parametrize(("params", "error"), [
    ({"since": "last tuesday"}, "Since: Enter a valid date/time."),
    ({"until": "2026-02-30"}, "Until: Enter a valid date/time."),
    # The end of the last day a date can hold: once a 500 (OverflowError).
    ({"until": "9999-12-31"}, "Until: Enter a date before 9999-12-31."),
    ({"person": "nobody@example.com"}, "No contact has or had this email address."),
    ({"person": "a@b@example.com"}, "This email address has more than one @."),
    ({"person": "call me maybe"}, "Write the phone number with its country code"),
    ({"person": "+1 415 555 0100 ext. 12"}, "This phone number has an extension"),
    ({"actor": "nobody"}, "User: No user has this username."),
    ({"action": "<b>forged</b>"}, "Action: Select a valid choice."),
    ({"run": "99999999999999999999999"}, "Run: Ensure this value is less than or equal to"),
    ({"run": "-1"}, "Run: Ensure this value is greater than or equal to 1."),
    ({"sync": "99999999999999999999999"}, "Sync: Select a valid choice."),
    ({"after": "abc"}, "Page: Enter a whole number."),
    ({"after": "5", "before": "9"}, "Page: A page starts after an id or before one, not both."),
])
def test_bad_filters_are_form_errors_on_the_page(compliance, history, params, error):
    html = trail(compliance, status=400, **params)
    errors = re.search(r'data-testid="filter-errors">(.*?)</div>', html, re.S).group(1)
    assert error in errors.replace("&#x27;", "'")
    assert shown_ids(html) == []
    assert "&lt;b&gt;forged&lt;/b&gt;" in html or "<b>forged</b>" not in html


def test_a_phone_is_a_person_too(compliance):
    bob = Contact.objects.create(email="bob@example.com", phone="+442079460958")
    pushed = event("contact.pushed", contact=bob, changes={"phone": [None, "+442079460958"]})
    assert shown_ids(trail(compliance, person="+44 20 7946 0958")) == [pushed.pk]


# Pages


def test_pages_go_by_id_without_counting_the_table(compliance, django_assert_max_num_queries):
    ann = Contact.objects.create(email="ann@example.com")
    ids = [event("contact.pushed", contact=ann, changes={"first_name": [None, str(n)]}).pk
           for n in range(PAGE_SIZE * 2 + 3)][::-1]
    first = trail(compliance)
    assert shown_ids(first) == ids[:PAGE_SIZE]
    assert "Newer</a>" not in first and f"after={ids[PAGE_SIZE - 1]}" in first

    second = trail(compliance, after=ids[PAGE_SIZE - 1])
    assert shown_ids(second) == ids[PAGE_SIZE:PAGE_SIZE * 2]
    assert f"before={ids[PAGE_SIZE]}" in second and f"after={ids[PAGE_SIZE * 2 - 1]}" in second

    last = trail(compliance, after=ids[PAGE_SIZE * 2 - 1])
    assert shown_ids(last) == ids[PAGE_SIZE * 2:]
    assert "Older</a>" not in last

    back = trail(compliance, before=ids[PAGE_SIZE * 2])
    assert shown_ids(back) == ids[PAGE_SIZE:PAGE_SIZE * 2]
    newest = trail(compliance, before=ids[PAGE_SIZE])
    assert shown_ids(newest) == ids[:PAGE_SIZE]


def test_the_filters_are_kept_in_the_pager_and_export_links(compliance, history):
    ann = history["ann"]
    for n in range(PAGE_SIZE + 1):
        event("contact.pushed", contact=ann, changes={"first_name": [None, str(n)]})
    html = trail(compliance, person="ann@example.com", action="contact.pushed")
    assert "?person=ann%40example.com&amp;action=contact.pushed&amp;after=" in html
    assert "/audit/export/?person=ann%40example.com&amp;action=contact.pushed&amp;format=csv" in html


# What a row shows


def test_each_row_opens_to_its_before_and_after(compliance, history):
    html = trail(compliance, action="conflict.resolved")
    row = re.search(r'data-testid="event-row".*?</tr>\s*</tbody>', html, re.S).group(0)
    assert "<details>" in row and "2 fields" in row
    cells = re.findall(r'<th scope="row" class="mono"><bdi>(.*?)</bdi></th>\s*<td>(.*?)</td>\s*<td>(.*?)</td>', row,
                       re.S)
    assert [(name, re.sub(r"<[^>]+>", "", before).strip(), re.sub(r"<[^>]+>", "", after).strip())
            for name, before, after in cells] == [("first_name", "Ann", "Anita"),
                                                  ("reason", "No value", "Signed as Anita")]


def test_the_event_page_shows_all_of_it(compliance, history):
    response = compliance.get(reverse("audit:event", args=[history["changed"].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "contact.updated" in html and "ann@example.com" in html and "ann.lee@example.com" in html
    assert f'href="{reverse("contact_detail", args=[history["ann"].pk])}"' in html
    assert compliance.get(reverse("audit:event", args=[999999])).status_code == 404


def test_hostile_values_are_shown_as_text(compliance, hostile_contacts):
    contact = Contact.objects.create(email="hostile@example.com")
    for record in hostile_contacts:
        event("contact.updated", contact=contact, object_repr=record["email"],
              changes={"first_name": [record.get("lastname", ""), record["firstname"]]})
    pages = [trail(compliance)] + [
        compliance.get(reverse("audit:event", args=[pk])).content.decode()
        for pk in AuditEvent.objects.values_list("pk", flat=True)
    ]
    text = "\n".join(pages)
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '" onmouseover="alert(1)' not in text
    assert "&quot; onmouseover=&quot;alert(1)" in text
    assert clean_text("Nu\x00ll") in text


def test_a_long_value_is_cut_in_the_list_and_whole_on_its_page(compliance):
    contact = Contact.objects.create(email="long@example.com")
    long = event("contact.updated", contact=contact, object_repr="L" * 200,
                 changes={"company": ["", "x" * 10_000]})
    html = trail(compliance)
    assert "x" * LIST_VALUE_CHARS in html and "x" * (LIST_VALUE_CHARS + 1) not in html
    assert f"{10_000 - LIST_VALUE_CHARS} more characters" in html
    assert '<bdi class="change-value">' in html
    page = compliance.get(reverse("audit:event", args=[long.pk])).content.decode()
    assert "x" * 10_000 in page and "more characters" not in page
