"""Three systems in one sync: HubSpot, Mailchimp and ActiveCampaign through the real sandbox process.

The demo's sync: every system read and written; names both ways under manual review,
email both ways, phone and company from HubSpot to both email platforms, email consent
by the ledger's rule (the most restrictive state wins). Outside edits are made in each
system as people would make them; what each system holds is read back from the sandbox.
"""
import re
from itertools import combinations

import pytest
from django.urls import reverse

from syncapp.models import Conflict, ConsentEvent, Contact, SyncRun
from syncapp.roles import REVIEWER
from tests.integration.three_way import (
    SYSTEMS,
    activecampaign_by_email,
    activecampaign_contacts,
    activecampaign_status,
    consent_in,
    edit_in,
    system_names,
    three_way_workspace,
    unsubscribe_in,
    values_in,
)
from tests.integration.two_way import hubspot_create, mailchimp_live, run, write_calls
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PEOPLE = {
    "ann@example.com": ("Ann", "Lee"),
    "bob@example.com": ("Bob", "Ray"),
    "cy@example.com": ("Cy", "Fox"),
}
COMPANY = "Acme Corp"
PHONE = "+14155550100"


@pytest.fixture
def workspace(sandbox):
    return three_way_workspace(sandbox)


@pytest.fixture
def hubspot_ids(sandbox, workspace) -> dict[str, str]:
    """Put three people in HubSpot and sync them: all three systems hold them, linked, subscribed.

    The second run is the first read of the records the first one created; it must
    write nothing.
    """
    ids = {email: hubspot_create(sandbox, email=email, firstname=first, lastname=last, company=COMPANY, phone=PHONE)
           for email, (first, last) in PEOPLE.items()}
    run(workspace)
    assert set(mailchimp_live(sandbox)) == set(PEOPLE)
    assert {contact["email"] for contact in activecampaign_contacts(sandbox)} == set(PEOPLE)
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}
    return ids


def assert_next_run_writes_nothing(sandbox, workspace) -> SyncRun:
    sandbox.reset_stats()
    finished = run(workspace)
    assert write_calls(sandbox) == {}
    assert (finished.created_count, finished.updated_count, finished.pushed_count) == (0, 0, 0)
    return finished


def values(sandbox, hubspot_ids, email: str, hub_field: str) -> dict[str, str]:
    return values_in(sandbox, hubspot_id=hubspot_ids[email], email=email, hub_field=hub_field)


def everywhere(value: str) -> dict[str, str]:
    return dict.fromkeys(SYSTEMS, value)


def test_the_first_run_creates_each_person_in_both_email_platforms_with_every_mapped_field(
    sandbox, workspace, hubspot_ids
):
    for email, (first, last) in PEOPLE.items():
        assert values(sandbox, hubspot_ids, email, "first_name") == everywhere(first)
        assert values(sandbox, hubspot_ids, email, "last_name") == everywhere(last)
        assert values(sandbox, hubspot_ids, email, "company") == everywhere(COMPANY)
        assert values(sandbox, hubspot_ids, email, "phone") == everywhere(PHONE)
        # New to both platforms, of unknown consent: the status the demo chose for them.
        assert consent_in(sandbox, hubspot_id=hubspot_ids[email], email=email) == {
            "hubspot": "not opted out", "mailchimp": "subscribed", "activecampaign": "subscribed"}
    assert Contact.objects.count() == len(PEOPLE)
    for contact in Contact.objects.all():
        assert contact.links.exclude(external_id=None).count() == 3


# 1. An edit in one system reaches the other two in one run.


@pytest.mark.parametrize("system", SYSTEMS)
def test_an_edit_in_one_system_reaches_the_other_two_in_one_run(sandbox, workspace, hubspot_ids, system):
    edit_in(sandbox, system, hubspot_id=hubspot_ids["ann@example.com"], email="ann@example.com",
            hub_field="first_name", value="Annie")
    edit_in(sandbox, system, hubspot_id=hubspot_ids["bob@example.com"], email="bob@example.com",
            hub_field="last_name", value="Rae")

    finished = run(workspace)

    assert values(sandbox, hubspot_ids, "ann@example.com", "first_name") == everywhere("Annie")
    assert values(sandbox, hubspot_ids, "bob@example.com", "last_name") == everywhere("Rae")
    assert Contact.objects.get(email="ann@example.com").first_name == "Annie"
    assert Contact.objects.get(email="bob@example.com").last_name == "Rae"
    # The others are untouched.
    assert values(sandbox, hubspot_ids, "cy@example.com", "first_name") == everywhere("Cy")
    assert (finished.updated_count, finished.conflict_count) == (2, 0)
    assert Contact.objects.count() == len(PEOPLE)
    # What the run wrote is not read back as a change anywhere.
    assert_next_run_writes_nothing(sandbox, workspace)


def test_a_crm_only_field_changed_in_hubspot_reaches_both_email_platforms(sandbox, workspace, hubspot_ids):
    edit_in(sandbox, "hubspot", hubspot_id=hubspot_ids["cy@example.com"], email="cy@example.com",
            hub_field="company", value="Globex")

    run(workspace)

    assert values(sandbox, hubspot_ids, "cy@example.com", "company") == everywhere("Globex")
    assert_next_run_writes_nothing(sandbox, workspace)


# 2. An unsubscribe in one system holds in all three.


@pytest.mark.parametrize("system", SYSTEMS)
def test_an_unsubscribe_in_one_system_is_applied_in_all_three_and_never_lifted_by_an_edit(
    sandbox, workspace, hubspot_ids, system
):
    bob_id = hubspot_ids["bob@example.com"]
    unsubscribe_in(sandbox, system, "bob@example.com")
    run(workspace)

    everywhere_unsubscribed = {"hubspot": "unsubscribed", "mailchimp": "unsubscribed",
                               "activecampaign": "unsubscribed"}
    assert consent_in(sandbox, hubspot_id=bob_id, email="bob@example.com") == everywhere_unsubscribed
    bob = Contact.objects.get(email="bob@example.com")
    assert bob.email_consent == "unsubscribed"
    # The ledger: what that system said, then what Syncapp told the other two.
    names = system_names(workspace)
    opt_outs = ConsentEvent.objects.filter(contact=bob, state="unsubscribed").order_by("pk")
    assert (opt_outs[0].system, opt_outs[0].evidence) == (names[system], ConsentEvent.Evidence.API_READ)
    assert {(event.system, event.evidence) for event in opt_outs[1:]} == {
        (names[other], ConsentEvent.Evidence.SYNC_WRITE) for other in SYSTEMS if other != system}

    # An edit in each of the other systems says nothing of consent: nobody is re-subscribed.
    for other in SYSTEMS:
        if other != system:
            edit_in(sandbox, other, hubspot_id=bob_id, email="bob@example.com", hub_field="first_name",
                    value=f"Bob {other}")
            run(workspace)
    assert consent_in(sandbox, hubspot_id=bob_id, email="bob@example.com") == everywhere_unsubscribed
    assert Contact.objects.get(email="bob@example.com").email_consent == "unsubscribed"
    # Nobody else was touched.
    for email in ("ann@example.com", "cy@example.com"):
        assert consent_in(sandbox, hubspot_id=hubspot_ids[email], email=email) == {
            "hubspot": "not opted out", "mailchimp": "subscribed", "activecampaign": "subscribed"}
    assert_next_run_writes_nothing(sandbox, workspace)


# 3. A conflict between two systems shows all three.


def values_table(html: str) -> str:
    match = re.search(r'<table class="table values-table">.*?</table>', html, re.DOTALL)
    assert match, "the conflict page has no values table"
    return match.group(0)


@pytest.mark.parametrize("pair", list(combinations(SYSTEMS, 2)), ids="-".join)
def test_a_conflict_between_two_systems_shows_all_three_sides_for_review(
    client, sandbox, workspace, hubspot_ids, pair
):
    ann_id = hubspot_ids["ann@example.com"]
    first, second = pair
    (third,) = set(SYSTEMS) - set(pair)
    edit_in(sandbox, first, hubspot_id=ann_id, email="ann@example.com", hub_field="first_name", value="Annie")
    edit_in(sandbox, second, hubspot_id=ann_id, email="ann@example.com", hub_field="first_name", value="Anita")

    finished = run(workspace)

    assert finished.conflict_count == 1
    conflict = Conflict.objects.get(status=Conflict.Status.OPEN)
    names = system_names(workspace)
    assert (conflict.hub_field, conflict.base_value) == ("first_name", "Ann")
    # Both changed sides, and the third system's value: the one last agreed with it.
    assert {side["system"]: side["value"] for side in conflict.sides} == {
        names[first]: "Annie", names[second]: "Anita", names[third]: "Ann"}
    assert set(conflict.connections.all()) == {workspace.hubspot, workspace.mailchimp, workspace.activecampaign}
    # Held: no system is overwritten, the third keeps its value.
    assert values(sandbox, hubspot_ids, "ann@example.com", "first_name") == {
        first: "Annie", second: "Anita", third: "Ann"}

    client.force_login(user_with_role("rita", REVIEWER))
    response = client.get(reverse("conflict_detail", args=[conflict.pk]))
    assert response.status_code == 200
    table = values_table(response.content.decode())
    assert table.count("<tr data-side=") == 3
    for system in SYSTEMS:
        assert f"<bdi>{names[system]}</bdi>" in table
    for value in ("Annie", "Anita"):
        assert value in table
    # Nothing to write while the reviewer decides.
    assert_next_run_writes_nothing(sandbox, workspace)
    assert Conflict.objects.filter(status=Conflict.Status.OPEN).count() == 1


def test_a_reviewers_decision_reaches_all_three_systems(client, sandbox, workspace, hubspot_ids):
    ann_id = hubspot_ids["ann@example.com"]
    edit_in(sandbox, "mailchimp", hubspot_id=ann_id, email="ann@example.com", hub_field="first_name", value="Annie")
    edit_in(sandbox, "activecampaign", hubspot_id=ann_id, email="ann@example.com", hub_field="first_name",
            value="Anita")
    run(workspace)
    conflict = Conflict.objects.get(status=Conflict.Status.OPEN)

    client.force_login(user_with_role("rita", REVIEWER))
    response = client.post(reverse("conflict_resolve", args=[conflict.pk]), {
        "keep": f"side:{workspace.activecampaign.pk}", "reason": "She signed the form as Anita.",
    })
    assert response.status_code == 302, response.content.decode()[:2000]

    run(workspace)
    assert values(sandbox, hubspot_ids, "ann@example.com", "first_name") == everywhere("Anita")
    assert not Conflict.objects.filter(status=Conflict.Status.OPEN).exists()
    assert_next_run_writes_nothing(sandbox, workspace)


# 4. A quiet run writes nothing.


def test_a_quiet_run_writes_nothing_anywhere(sandbox, workspace, hubspot_ids):
    finished = assert_next_run_writes_nothing(sandbox, workspace)

    assert sandbox.stats()["writes"] == 0
    assert finished.conflict_count == 0
    # Every system was read.
    assert set(sandbox.stats()["requests"]) == set(SYSTEMS)


def test_a_contact_only_in_activecampaign_reaches_hubspot_and_mailchimp(sandbox, workspace, hubspot_ids):
    sandbox.control("activecampaign", "contacts", {"email": "dee@example.com", "firstName": "Dee",
                                                   "lastName": "Moss", "lists": {"1": 1}})

    run(workspace)

    dee = Contact.objects.get(email="dee@example.com")
    assert (dee.first_name, dee.last_name) == ("Dee", "Moss")
    hubspot_id = dee.links.get(connection=workspace.hubspot).external_id
    assert values_in(sandbox, hubspot_id=hubspot_id, email="dee@example.com", hub_field="last_name") == everywhere(
        "Moss")
    assert activecampaign_status(activecampaign_by_email(sandbox, "dee@example.com")) == "subscribed"
    run(workspace)
    assert_next_run_writes_nothing(sandbox, workspace)
