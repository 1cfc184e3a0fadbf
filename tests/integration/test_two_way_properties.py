"""Property: after any outside edits and two runs, both systems and the hub agree, and stay put.

Through the real sandbox process and the real database. Each example seeds a few people
in HubSpot, syncs them, lets hypothesis edit them in HubSpot and in Mailchimp through
their APIs (names changed or cleared, the same field changed on both sides, emails
changed, unsubscribes, with runs in between), runs the sync twice, and checks:
- every mapped field without an open conflict holds one value in HubSpot, Mailchimp and
  the hub;
- nobody is duplicated, in the hub or in either system;
- nobody who unsubscribed anywhere is subscribed anywhere;
- one more run makes no write call.
"""
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncapp.models import Conflict, Contact, RecordError, RecordLink, SyncConnection
from tests.integration.two_way import (
    NAMES,
    hubspot_create,
    hubspot_edit,
    hubspot_live,
    hubspot_unsubscribe,
    mailchimp_change_email,
    mailchimp_edit,
    mailchimp_status,
    run,
    two_way_workspace,
    write_calls,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST_NAMES = ["Ann", "Bob", "Cy", "Dee", "Eve"]
# "" clears the field.
NAME_VALUES = st.sampled_from(["Ann", "Bea", "Zoë", "O'Neil", ""])
OPTED_OUT = {"unsubscribed", "cleaned"}
UNSUBSCRIBES = ("hubspot-unsubscribe", "mailchimp-unsubscribe")


@dataclass(frozen=True)
class Edit:
    """One outside edit of person `who` ("run" runs the sync): in `system`, `field` (a hub field) := `value`."""

    system: str
    who: int = 0
    field: str = ""
    value: str = ""


def edits(people: int):
    who = st.integers(0, people - 1)
    fields = st.sampled_from(sorted(NAMES))
    in_one = st.builds(Edit, st.sampled_from(["hubspot", "mailchimp"]), who, fields, NAME_VALUES)
    # The same field changed on both sides (to values that may or may not agree).
    on_both = st.tuples(who, fields, NAME_VALUES, NAME_VALUES).map(
        lambda drawn: [Edit("hubspot", drawn[0], drawn[1], drawn[2]), Edit("mailchimp", drawn[0], drawn[1], drawn[3])]
    )
    one_off = st.builds(Edit, st.sampled_from([*UNSUBSCRIBES, "hubspot-email", "mailchimp-email"]), who)
    # A run between edits: later edits then meet conflicts already open, bases already moved.
    sync = st.just([Edit("run")])
    steps = st.one_of(in_one.map(lambda edit: [edit]), on_both, one_off.map(lambda edit: [edit]), sync)
    return st.lists(steps, min_size=1, max_size=6).map(lambda groups: [edit for group in groups for edit in group])


scenarios = st.integers(3, 5).flatmap(lambda people: st.tuples(st.just(people), edits(people)))


class People:
    """The people of one example, found in each system by the id that survives an email change."""

    def __init__(self, sandbox, hubspot_ids: list[str]):
        self.sandbox = sandbox
        self.hubspot_ids = hubspot_ids
        by_email = {member["email_address"]: member["contact_id"] for member in sandbox.mailchimp_members()}
        self.member_ids = [by_email[self.hubspot(who)["email"]] for who in range(len(hubspot_ids))]

    def hubspot(self, who: int) -> dict[str, Any]:
        return hubspot_live(self.sandbox)[self.hubspot_ids[who]]

    def member(self, who: int) -> dict[str, Any]:
        return next(member for member in self.sandbox.mailchimp_members()
                    if member["contact_id"] == self.member_ids[who])

    def apply(self, workspace, step: int, edit: Edit) -> None:
        hubspot_field, mailchimp_field = NAMES.get(edit.field, ("", ""))
        new_email = f"person{edit.who}.step{step}@example.com"
        if edit.system == "run":
            run(workspace)
        elif edit.system == "hubspot":
            hubspot_edit(self.sandbox, self.hubspot_ids[edit.who], **{hubspot_field: edit.value})
        elif edit.system == "mailchimp":
            mailchimp_edit(self.sandbox, self.member(edit.who)["email_address"], **{mailchimp_field: edit.value})
        elif edit.system == "hubspot-email":
            hubspot_edit(self.sandbox, self.hubspot_ids[edit.who], email=new_email)
        elif edit.system == "mailchimp-email":
            mailchimp_change_email(self.sandbox, self.member(edit.who)["email_address"], new_email)
        elif edit.system == "hubspot-unsubscribe":
            hubspot_unsubscribe(self.sandbox, self.hubspot(edit.who)["email"])
        else:
            mailchimp_status(self.sandbox, self.member(edit.who)["email_address"], "unsubscribed")


def start_over(sandbox, workspace) -> None:
    """Empty both systems and the hub, and make the sync read from the start again."""
    sandbox.reset()
    sandbox.reset_stats()
    sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0)
    Contact.objects.all().delete()
    RecordError.objects.all().delete()
    SyncConnection.objects.filter(sync=workspace.sync).update(cursor="", cursor_updated_at=None)


def assert_converged(sandbox, workspace, people: People, unsubscribed: set[int]) -> None:
    count = len(people.hubspot_ids)
    # No one duplicated or lost, anywhere.
    assert len(hubspot_live(sandbox)) == count
    members = sandbox.mailchimp_members()
    assert len(members) == count and not [member for member in members if member["status"] == "archived"]
    assert Contact.objects.count() == count
    for connection in (workspace.hubspot, workspace.mailchimp):
        external_ids = RecordLink.objects.filter(connection=connection).values_list("external_id", flat=True)
        assert len(external_ids) == count == len(set(external_ids) - {None})

    held = set(Conflict.objects.filter(status=Conflict.Status.OPEN).values_list("contact_id", "hub_field"))
    for who in range(count):
        in_hubspot, member = people.hubspot(who), people.member(who)
        contact = RecordLink.objects.get(connection=workspace.hubspot, external_id=people.hubspot_ids[who]).contact
        assert contact.links.get(connection=workspace.mailchimp).external_id == member["id"]
        fields = {"email": ("email", "email_address"), **NAMES}
        for hub_field, (hubspot_field, mailchimp_field) in fields.items():
            if (contact.pk, hub_field) in held:
                continue
            values = {
                "hub": contact.hub_value(hub_field) or "",
                "HubSpot": in_hubspot.get(hubspot_field) or "",
                "Mailchimp": member["merge_fields"].get(mailchimp_field, member.get(mailchimp_field)) or "",
            }
            assert len(set(values.values())) == 1, f"person {who}, {hub_field}: {values}"
        if who in unsubscribed:
            states = {
                "hub": contact.email_consent,
                "HubSpot": "unsubscribed" if in_hubspot.get("hs_email_optout") == "true" else "not opted out",
                "Mailchimp": member["status"],
            }
            assert set(states.values()) <= OPTED_OUT, f"person {who} is subscribed somewhere: {states}"


@pytest.fixture
def workspace(sandbox):
    return two_way_workspace(sandbox)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios)
def test_after_any_outside_edits_two_runs_converge_and_a_third_writes_nothing(sandbox, workspace, scenario):
    # Function-scoped fixtures serve every example: each one starts over by itself.
    count, steps = scenario
    start_over(sandbox, workspace)
    hubspot_ids = [
        hubspot_create(sandbox, email=f"person{who}@example.com", firstname=FIRST_NAMES[who], lastname=f"Family{who}")
        for who in range(count)
    ]
    run(workspace)
    people = People(sandbox, hubspot_ids)

    for step, edit in enumerate(steps):
        people.apply(workspace, step, edit)
    run(workspace)
    run(workspace)

    unsubscribed = {edit.who for edit in steps if edit.system in UNSUBSCRIBES}
    assert_converged(sandbox, workspace, people, unsubscribed)
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}
    # What the examples covered (pytest --hypothesis-show-statistics).
    event(f"conflicts opened: {Conflict.objects.count()}")
    event(f"conflicts still open: {Conflict.objects.filter(status=Conflict.Status.OPEN).count()}")
    event(f"people unsubscribed: {len(unsubscribed)}")
    event(f"emails changed: {sum(edit.system.endswith('-email') for edit in steps)}")
