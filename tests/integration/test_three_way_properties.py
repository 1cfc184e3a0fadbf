"""Property: after any outside edits in three systems and two runs, all three and the hub agree, and stay put.

The three-system form of test_two_way_properties, through the real sandbox process and
the real database. Each example seeds a few people in HubSpot, syncs them to Mailchimp
and ActiveCampaign, lets hypothesis edit them in all three (names changed or cleared,
the same field changed in two systems, the company changed in the CRM, emails changed,
unsubscribes, with runs in between), runs the sync twice, and checks:
- every mapped field without an open conflict holds one value in HubSpot, Mailchimp,
  ActiveCampaign and the hub;
- nobody is duplicated, in the hub or in any system;
- nobody who unsubscribed anywhere is subscribed anywhere;
- one more run makes no write call.
"""
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connections.models import Connection
from syncapp.models import Conflict, Contact, RecordError, RecordLink, SyncConnection
from tests.integration.three_way import (
    BOTH_WAYS,
    FROM_HUBSPOT,
    OPTED_OUT,
    SYSTEMS,
    UNPACED_REQUESTS_PER_SECOND,
    activecampaign_by_id,
    activecampaign_change_email,
    activecampaign_contacts,
    activecampaign_status,
    activecampaign_value,
    edit_in,
    three_way_workspace,
    unsubscribe_in,
)
from tests.integration.two_way import (
    hubspot_create,
    hubspot_edit,
    hubspot_live,
    mailchimp_change_email,
    run,
    write_calls,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST_NAMES = ["Ann", "Bob", "Cy", "Dee"]
# "" clears the field.
NAME_VALUES = st.sampled_from(["Ann", "Bea", "Zoë", "O'Neil", ""])
# Never "": the company is read from HubSpot alone, and an empty value never overwrites the
# hub's (the mapping's never_overwrite_with_empty), so a company cleared in the CRM stays in
# the hub and the email platforms by design.
COMPANY_VALUES = st.sampled_from(["Acme Corp", "Globex", "Société Lumière"])
NAME_FIELDS = sorted(set(BOTH_WAYS) - {"email"})
UNSUBSCRIBE, NEW_EMAIL = "unsubscribe", "email"


@dataclass(frozen=True)
class Edit:
    """One outside edit of person `who` in `system` ("run" runs the sync): `field` (a hub field) := `value`,
    or `field` UNSUBSCRIBE (the person unsubscribes there) or NEW_EMAIL (the address changes there)."""

    system: str
    who: int = 0
    field: str = ""
    value: str = ""


def edits(people: int):
    who = st.integers(0, people - 1)
    systems = st.sampled_from(SYSTEMS)
    in_one = st.builds(Edit, systems, who, st.sampled_from(NAME_FIELDS), NAME_VALUES)
    # The same field changed in two systems (to values that may or may not agree).
    in_two = st.tuples(st.sampled_from(list(combinations(SYSTEMS, 2))), who, st.sampled_from(NAME_FIELDS),
                       NAME_VALUES, NAME_VALUES).map(
        lambda drawn: [Edit(drawn[0][0], drawn[1], drawn[2], drawn[3]), Edit(drawn[0][1], drawn[1], drawn[2], drawn[4])]
    )
    # The CRM's own field, read from HubSpot alone.
    company = st.builds(Edit, st.just("hubspot"), who, st.just("company"), COMPANY_VALUES)
    one_off = st.builds(Edit, systems, who, st.sampled_from([UNSUBSCRIBE, NEW_EMAIL]))
    # A run between edits: later edits then meet conflicts already open, bases already moved.
    sync = st.just([Edit("run")])
    steps = st.one_of(in_one.map(lambda edit: [edit]), in_two, company.map(lambda edit: [edit]),
                      one_off.map(lambda edit: [edit]), sync)
    return st.lists(steps, min_size=1, max_size=6).map(lambda groups: [edit for group in groups for edit in group])


scenarios = st.integers(3, 4).flatmap(lambda people: st.tuples(st.just(people), edits(people)))


class People:
    """The people of one example, found in each system by the id that survives an email change."""

    def __init__(self, sandbox, hubspot_ids: list[str]):
        self.sandbox = sandbox
        self.hubspot_ids = hubspot_ids
        members = {member["email_address"]: member["contact_id"] for member in sandbox.mailchimp_members()}
        contacts = {contact["email"]: contact["id"] for contact in activecampaign_contacts(sandbox)}
        emails = [self.hubspot(who)["email"] for who in range(len(hubspot_ids))]
        self.member_ids = [members[email] for email in emails]
        self.activecampaign_ids = [contacts[email] for email in emails]

    def hubspot(self, who: int) -> dict[str, Any]:
        return hubspot_live(self.sandbox)[self.hubspot_ids[who]]

    def member(self, who: int) -> dict[str, Any]:
        return next(member for member in self.sandbox.mailchimp_members()
                    if member["contact_id"] == self.member_ids[who])

    def activecampaign(self, who: int) -> dict[str, Any]:
        return activecampaign_by_id(self.sandbox, self.activecampaign_ids[who])

    def email_in(self, system: str, who: int) -> str:
        """The person's address as `system` holds it now."""
        if system == "hubspot":
            return self.hubspot(who)["email"]
        if system == "mailchimp":
            return self.member(who)["email_address"]
        return self.activecampaign(who)["email"]

    def apply(self, workspace, step: int, edit: Edit) -> None:
        if edit.system == "run":
            run(workspace)
            return
        email = self.email_in(edit.system, edit.who)
        if edit.field == UNSUBSCRIBE:
            unsubscribe_in(self.sandbox, edit.system, email)
        elif edit.field == NEW_EMAIL:
            new_email = f"person{edit.who}.step{step}@example.com"
            if edit.system == "hubspot":
                hubspot_edit(self.sandbox, self.hubspot_ids[edit.who], email=new_email)
            elif edit.system == "mailchimp":
                mailchimp_change_email(self.sandbox, email, new_email)
            else:
                activecampaign_change_email(self.sandbox, self.activecampaign_ids[edit.who], new_email)
        else:
            edit_in(self.sandbox, edit.system, hubspot_id=self.hubspot_ids[edit.who], email=email,
                    hub_field=edit.field, value=edit.value)


def start_over(sandbox, workspace) -> None:
    """Empty the three systems and the hub, and make the sync read from the start again."""
    sandbox.reset()
    sandbox.reset_stats()
    sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0, activecampaign_rate_limit=0)
    Contact.objects.all().delete()
    RecordError.objects.all().delete()
    SyncConnection.objects.filter(sync=workspace.sync).update(cursor="", cursor_updated_at=None)
    assert Connection.objects.get(pk=workspace.activecampaign.pk).rate_limit_requests == UNPACED_REQUESTS_PER_SECOND


def assert_converged(sandbox, workspace, people: People, unsubscribed: set[int]) -> None:
    count = len(people.hubspot_ids)
    # No one duplicated or lost, anywhere.
    assert len(hubspot_live(sandbox)) == count
    members = sandbox.mailchimp_members()
    assert len(members) == count and not [member for member in members if member["status"] == "archived"]
    assert len(activecampaign_contacts(sandbox)) == count
    assert Contact.objects.count() == count
    for connection in (workspace.hubspot, workspace.mailchimp, workspace.activecampaign):
        external_ids = RecordLink.objects.filter(connection=connection).values_list("external_id", flat=True)
        assert len(external_ids) == count == len(set(external_ids) - {None})

    held = set(Conflict.objects.filter(status=Conflict.Status.OPEN).values_list("contact_id", "hub_field"))
    for who in range(count):
        in_hubspot, member, in_activecampaign = people.hubspot(who), people.member(who), people.activecampaign(who)
        contact = RecordLink.objects.get(connection=workspace.hubspot, external_id=people.hubspot_ids[who]).contact
        assert contact.links.get(connection=workspace.mailchimp).external_id == member["id"]
        assert contact.links.get(connection=workspace.activecampaign).external_id == in_activecampaign["id"]
        for hub_field, names in {**BOTH_WAYS, **FROM_HUBSPOT}.items():
            if (contact.pk, hub_field) in held:
                continue
            values = {
                "hub": contact.hub_value(hub_field) or "",
                "HubSpot": in_hubspot.get(names["hubspot"]) or "",
                "Mailchimp": member["merge_fields"].get(names["mailchimp"], member.get(names["mailchimp"])) or "",
                "ActiveCampaign": activecampaign_value(in_activecampaign, names["activecampaign"]),
            }
            assert len(set(values.values())) == 1, f"person {who}, {hub_field}: {values}"
        if who in unsubscribed:
            states = {
                "hub": contact.email_consent,
                "HubSpot": "unsubscribed" if in_hubspot.get("hs_email_optout") == "true" else "not opted out",
                "Mailchimp": member["status"],
                "ActiveCampaign": activecampaign_status(in_activecampaign),
            }
            assert set(states.values()) <= OPTED_OUT, f"person {who} is subscribed somewhere: {states}"


@pytest.fixture
def workspace(sandbox):
    return three_way_workspace(sandbox)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios)
def test_after_any_outside_edits_in_three_systems_two_runs_converge_and_a_third_writes_nothing(
    sandbox, workspace, scenario
):
    # Function-scoped fixtures serve every example: each one starts over by itself.
    count, steps = scenario
    start_over(sandbox, workspace)
    hubspot_ids = [
        hubspot_create(sandbox, email=f"person{who}@example.com", firstname=FIRST_NAMES[who], lastname=f"Family{who}",
                       company="Acme Corp", phone=f"+1415555010{who}")
        for who in range(count)
    ]
    run(workspace)
    people = People(sandbox, hubspot_ids)

    for step, edit in enumerate(steps):
        people.apply(workspace, step, edit)
    run(workspace)
    run(workspace)

    unsubscribed = {edit.who for edit in steps if edit.field == UNSUBSCRIBE}
    assert_converged(sandbox, workspace, people, unsubscribed)
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}
    # What the examples covered (pytest --hypothesis-show-statistics).
    event(f"conflicts opened: {Conflict.objects.count()}")
    event(f"conflicts still open: {Conflict.objects.filter(status=Conflict.Status.OPEN).count()}")
    event(f"people unsubscribed: {len(unsubscribed)}")
    event(f"emails changed: {sum(edit.field == NEW_EMAIL for edit in steps)}")
