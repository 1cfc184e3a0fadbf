"""A two-way sync writes a system only what it does not hold already (issue 12, item 2).

Through the real sandbox process and database, with data on both sides before the first
run: the same people in HubSpot and in Mailchimp. Fields the demo maps from the CRM to
the audience only (company, phone) are never read into the hub from Mailchimp, but what
Mailchimp holds in them is recorded when its members are read, so a member who already
holds the CRM's values is not written at all.
"""
import pytest
import requests

from syncapp.models import RecordLink
from tests.integration.two_way import (
    hubspot_create,
    hubspot_live,
    mailchimp_add,
    mailchimp_by_email,
    mailchimp_status,
    run,
    two_way_workspace,
    write_calls,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The same people, with the same values, in both systems.
PEOPLE = {
    "ann@example.com": ("Ann", "Lee", "Acme", "+14155550101"),
    "bob@example.com": ("Bob", "Ray", "Initech", "+14155550102"),
    "cy@example.com": ("Cy", "Fox", "Globex", "+14155550103"),
}


@pytest.fixture
def workspace(sandbox):
    return two_way_workspace(sandbox)


def seed_both_sides(sandbox, people) -> None:
    for email, (first, last, company, phone) in people.items():
        hubspot_create(sandbox, email=email, firstname=first, lastname=last, company=company, phone=phone)
        mailchimp_add(sandbox, email, FNAME=first, LNAME=last, COMPANY=company, PHONE=phone)


def mailchimp_writes(sandbox) -> dict[str, int]:
    return {route: count for route, count in write_calls(sandbox).items() if route.startswith("mailchimp ")}


def test_members_already_holding_the_crms_values_are_not_written(sandbox, workspace):
    seed_both_sides(sandbox, PEOPLE)
    sandbox.reset_stats()

    run(workspace)

    assert mailchimp_writes(sandbox) == {}
    base = RecordLink.objects.get(connection=workspace.mailchimp, contact__email="ann@example.com").merge_base
    # What Mailchimp holds in the fields the sync only writes there is the link's base.
    assert (base["COMPANY"], base["PHONE"]) == ("Acme", "+14155550101")


def test_a_member_holding_another_value_of_a_crm_field_gets_the_crms(sandbox, workspace):
    seed_both_sides(sandbox, PEOPLE)
    mailchimp_add(sandbox, "dee@example.com", FNAME="Dee", LNAME="Kim", COMPANY="Old Name")
    hubspot_create(sandbox, email="dee@example.com", firstname="Dee", lastname="Kim", company="New Name")
    sandbox.reset_stats()

    run(workspace)

    assert mailchimp_by_email(sandbox, "dee@example.com")["merge_fields"]["COMPANY"] == "New Name"
    assert mailchimp_by_email(sandbox, "ann@example.com")["merge_fields"]["COMPANY"] == "Acme"
    # The batch subscribe that finds her a member already, then her PATCH: one member written.
    assert mailchimp_writes(sandbox) == {"mailchimp POST /lists/{list_id}": 1,
                                         "mailchimp PATCH /lists/{list_id}/members/{subscriber_hash}": 1}
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}


def all_calls(sandbox) -> dict[str, int]:
    return {f"{provider} {route}": count for provider, routes in sandbox.stats()["requests"].items()
            for route, count in routes.items()}


def test_a_delta_of_200_changes_costs_at_most_10_calls(sandbox, workspace):
    sandbox.seed(hubspot_contacts=1000, random_seed=5)
    run(workspace)
    run(workspace)
    changed = [contact["id"] for contact in sandbox.hubspot_contacts()
               if not contact["archived"] and RecordLink.objects.filter(
                   connection=workspace.hubspot, external_id=contact["id"],
                   contact__links__connection=workspace.mailchimp,
               ).exists()][:200]
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/bulk-edit", timeout=60,
                             json={"ids": changed, "properties": {"company": "Delta Co"}})
    response.raise_for_status()
    sandbox.reset_stats()

    finished = run(workspace)

    calls = all_calls(sandbox)
    assert finished.pushed_count == 200
    assert sum(calls.values()) <= 10, sorted(calls.items())
    companies = [member["merge_fields"].get("COMPANY") for member in sandbox.mailchimp_members()]
    assert companies.count("Delta Co") == 200


def test_opt_outs_carried_to_hubspot_share_one_batch_unsubscribe_across_its_write_calls(sandbox, workspace):
    # 300 people in both systems; HubSpot lacks their last names, and one in ten has
    # unsubscribed in Mailchimp. HubSpot takes 100 contacts a write call, so the names
    # cost three calls; the 30 opt-outs fit one batch unsubscribe, not one per call.
    people = [f"p{number:03}@example.com" for number in range(300)]
    for number, email in enumerate(people):
        hubspot_create(sandbox, email=email, firstname=f"F{number}")
        mailchimp_add(sandbox, email, FNAME=f"F{number}", LNAME=f"L{number}")
        if number % 10 == 0:
            mailchimp_status(sandbox, email, "unsubscribed")
    sandbox.reset_stats()

    run(workspace)

    hubspot_writes = {route: count for route, count in write_calls(sandbox).items() if route.startswith("hubspot ")}
    assert hubspot_writes == {
        "hubspot POST /crm/v3/objects/contacts/batch/update": 3,
        "hubspot POST /communication-preferences/v4/statuses/batch/unsubscribe-all": 1,
    }
    live = hubspot_live(sandbox)
    assert sum(properties.get("hs_email_optout") == "true" for properties in live.values()) == 30
    assert {properties["lastname"] for properties in live.values()} == {f"L{n}" for n in range(300)}
