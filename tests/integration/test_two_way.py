"""Two-way HubSpot <-> Mailchimp through the real sandbox process and the real database.

The demo's sync: names both ways under manual review, email from HubSpot, email consent
by the ledger's rule. Outside edits go through each system's API, as people would make
them; what each system holds afterwards is read back from the sandbox.
"""
import pytest
from django.urls import reverse

from audit.models import AuditEvent
from connections.registry import provider_for as registry_provider_for
from syncapp.models import Conflict, ConsentEvent, Contact, DuplicatePair, PendingPush, RecordLink, Sync, SyncRun
from syncapp.roles import REVIEWER
from syncapp.services.consent_ledger import last_opt_out_at
from syncapp.services.runs import run_execute, run_request
from syncapp.views.conflicts import sides_digest
from tests.integration.two_way import (
    hubspot_archive,
    hubspot_by_id,
    hubspot_create,
    hubspot_edit,
    hubspot_live,
    hubspot_unsubscribe,
    mailchimp_add,
    mailchimp_archive,
    mailchimp_by_email,
    mailchimp_change_email,
    mailchimp_edit,
    mailchimp_live,
    mailchimp_status,
    run,
    subscriber_hash,
    two_way_workspace,
    write_calls,
)
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PEOPLE = {
    "ann@example.com": ("Ann", "Lee"),
    "bob@example.com": ("Bob", "Ray"),
    "cy@example.com": ("Cy", "Fox"),
}


@pytest.fixture
def workspace(sandbox):
    return two_way_workspace(sandbox)


@pytest.fixture
def hubspot_ids(sandbox, workspace) -> dict[str, str]:
    """Put three people in HubSpot and sync them: both systems hold them, linked.

    The second run is the first read of the members the first one created (it learns
    their status); it must write nothing.
    """
    ids = {email: hubspot_create(sandbox, email=email, firstname=first, lastname=last)
           for email, (first, last) in PEOPLE.items()}
    run(workspace)
    assert set(mailchimp_live(sandbox)) == set(PEOPLE)
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


def run_requested(sync: Sync) -> SyncRun:
    """Execute the run a page requested (queued for a worker), here in this process."""
    queued = SyncRun.objects.get(sync=sync, status=SyncRun.Status.QUEUED)
    finished = run_execute(run_id=queued.pk)
    assert finished.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), finished.error
    return finished


def names_in_hubspot(sandbox, hubspot_id: str) -> tuple:
    properties = hubspot_by_id(sandbox, hubspot_id)["properties"]
    return properties.get("firstname"), properties.get("lastname")


def names_in_mailchimp(sandbox, email: str) -> tuple:
    merge_fields = mailchimp_by_email(sandbox, email)["merge_fields"]
    return merge_fields.get("FNAME"), merge_fields.get("LNAME")


def names_in_hub(email: str) -> tuple:
    contact = Contact.objects.get(email=email)
    return contact.first_name, contact.last_name


# Edits cross in one run, and are not read back.


def test_an_edit_in_each_system_reaches_the_other_in_the_same_run(sandbox, workspace, hubspot_ids):
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], firstname="Annie")
    mailchimp_edit(sandbox, "bob@example.com", LNAME="Rae")

    finished = run(workspace)

    assert names_in_mailchimp(sandbox, "ann@example.com") == ("Annie", "Lee")
    assert names_in_hubspot(sandbox, hubspot_ids["bob@example.com"]) == ("Bob", "Rae")
    assert names_in_hub("ann@example.com") == ("Annie", "Lee")
    assert names_in_hub("bob@example.com") == ("Bob", "Rae")
    assert (finished.updated_count, finished.conflict_count) == (2, 0)
    assert Contact.objects.count() == len(PEOPLE)


def test_with_nothing_changed_outside_a_run_writes_nothing(sandbox, workspace, hubspot_ids):
    assert_next_run_writes_nothing(sandbox, workspace)


def test_syncapps_own_writes_are_not_read_back_as_changes(sandbox, workspace, hubspot_ids):
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], firstname="Annie", lastname="Lee-Smith")
    mailchimp_edit(sandbox, "bob@example.com", FNAME="Robert")
    run(workspace)

    # The next run reads back what this one wrote in each system: no echo, no loop.
    assert_next_run_writes_nothing(sandbox, workspace)
    assert_next_run_writes_nothing(sandbox, workspace)
    assert names_in_hub("ann@example.com") == ("Annie", "Lee-Smith")
    assert names_in_hub("bob@example.com") == ("Robert", "Ray")


# Conflicts.


@pytest.fixture
def conflict(sandbox, workspace, hubspot_ids) -> Conflict:
    """Ann's first name changed differently in both systems (and her last name in HubSpot)."""
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], firstname="Annie", lastname="Lee-Smith")
    mailchimp_edit(sandbox, "ann@example.com", FNAME="Anita")
    finished = run(workspace)
    assert finished.conflict_count == 1
    return Conflict.objects.get(status=Conflict.Status.OPEN)


def sides_by_system(conflict: Conflict) -> dict[str, str]:
    return {side["system"]: side["value"] for side in conflict.sides}


def test_the_same_field_edited_on_both_sides_is_held_for_review(sandbox, workspace, hubspot_ids, conflict):
    ann = Contact.objects.get(email="ann@example.com")
    assert (conflict.contact_id, conflict.hub_field, conflict.base_value) == (ann.pk, "first_name", "Ann")
    assert sides_by_system(conflict) == {workspace.hubspot.name: "Annie", workspace.mailchimp.name: "Anita"}
    assert set(conflict.connections.all()) == {workspace.hubspot, workspace.mailchimp}
    # Held back: the hub keeps the value it held when the conflict opened (here HubSpot's,
    # read first in the run) and neither system is overwritten...
    assert ann.first_name == conflict.hub_value != "Anita"
    assert names_in_hubspot(sandbox, hubspot_ids["ann@example.com"]) == ("Annie", "Lee-Smith")
    # ...while the contact's other fields keep syncing.
    assert names_in_mailchimp(sandbox, "ann@example.com") == ("Anita", "Lee-Smith")
    assert ann.last_name == "Lee-Smith"
    # Held fields are left out of payloads: nothing to write while the reviewer decides.
    assert_next_run_writes_nothing(sandbox, workspace)
    assert Conflict.objects.filter(status=Conflict.Status.OPEN).count() == 1


def test_a_new_edit_while_the_conflict_is_open_updates_that_systems_side(sandbox, workspace, hubspot_ids, conflict):
    mailchimp_edit(sandbox, "ann@example.com", FNAME="Anja")
    sandbox.reset_stats()

    run(workspace)

    conflict.refresh_from_db()
    assert conflict.status == Conflict.Status.OPEN
    assert sides_by_system(conflict) == {workspace.hubspot.name: "Annie", workspace.mailchimp.name: "Anja"}
    assert write_calls(sandbox) == {}
    assert names_in_hubspot(sandbox, hubspot_ids["ann@example.com"])[0] == "Annie"


def test_a_reviewer_resolves_it_on_its_page_and_both_systems_take_the_value(
    client, sandbox, workspace, hubspot_ids, conflict
):
    reviewer = user_with_role("rita", REVIEWER)
    client.force_login(reviewer)
    response = client.post(reverse("conflict_resolve", args=[conflict.pk]), {
        "keep": f"side:{workspace.mailchimp.pk}",
        "reason": "She signed the newsletter form as Anita.",
        "seen": sides_digest(conflict),
    })
    assert response.status_code == 302, response.content.decode()[:2000]

    conflict.refresh_from_db()
    assert (conflict.status, conflict.chosen_value, conflict.resolved_by) == (
        Conflict.Status.RESOLVED, "Anita", reviewer)
    assert Contact.objects.get(email="ann@example.com").first_name == "Anita"
    audit = AuditEvent.objects.get(action="conflict.resolved")
    assert (audit.actor, audit.changes["first_name"]) == (reviewer, [conflict.hub_value, "Anita"])

    # The page asked for a run; it carries the decision to both systems.
    run_requested(workspace.sync)
    assert names_in_hubspot(sandbox, hubspot_ids["ann@example.com"]) == ("Anita", "Lee-Smith")
    assert names_in_mailchimp(sandbox, "ann@example.com") == ("Anita", "Lee-Smith")
    assert not Conflict.objects.filter(status=Conflict.Status.OPEN).exists()
    assert_next_run_writes_nothing(sandbox, workspace)


def test_a_reviewer_typing_a_value_sends_it_to_both_systems(client, sandbox, workspace, hubspot_ids, conflict):
    client.force_login(user_with_role("rita", REVIEWER))
    response = client.post(reverse("conflict_resolve", args=[conflict.pk]), {
        "keep": "typed", "typed_value": "Annabel", "reason": "Her passport says Annabel.",
    })
    assert response.status_code == 302

    run_requested(workspace.sync)
    assert names_in_hubspot(sandbox, hubspot_ids["ann@example.com"])[0] == "Annabel"
    assert names_in_mailchimp(sandbox, "ann@example.com")[0] == "Annabel"
    assert_next_run_writes_nothing(sandbox, workspace)


def test_a_conflict_settled_outside_closes_itself(sandbox, workspace, hubspot_ids, conflict):
    # A colleague fixes HubSpot to match Mailchimp: the systems agree again.
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], firstname="Anita")

    run(workspace)

    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolution, conflict.chosen_value) == (
        Conflict.Status.SETTLED, Conflict.Resolution.SETTLED, "Anita")
    assert Contact.objects.get(email="ann@example.com").first_name == "Anita"
    assert names_in_mailchimp(sandbox, "ann@example.com")[0] == "Anita"
    assert AuditEvent.objects.filter(action="conflict.settled", contact_id=conflict.contact_id).exists()
    # The field syncs again.
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], firstname="Ana")
    run(workspace)
    assert names_in_mailchimp(sandbox, "ann@example.com")[0] == "Ana"
    assert_next_run_writes_nothing(sandbox, workspace)


# Consent.


def test_an_unsubscribe_in_mailchimp_then_a_crm_edit_leaves_the_person_unsubscribed_everywhere(
    sandbox, workspace, hubspot_ids
):
    bob_id = hubspot_ids["bob@example.com"]
    mailchimp_status(sandbox, "bob@example.com", "unsubscribed")
    run(workspace)
    hubspot_edit(sandbox, bob_id, lastname="Raymond")
    run(workspace)

    bob = Contact.objects.get(email="bob@example.com")
    assert bob.email_consent == "unsubscribed"
    assert mailchimp_by_email(sandbox, "bob@example.com")["status"] == "unsubscribed"
    assert hubspot_by_id(sandbox, bob_id)["properties"].get("hs_email_optout") == "true"
    # The CRM edit itself went through.
    assert names_in_mailchimp(sandbox, "bob@example.com") == ("Bob", "Raymond")
    # The ledger: what Mailchimp said, and what Syncapp then told HubSpot. Reading back
    # Syncapp's own write to HubSpot is no statement of HubSpot's.
    opt_outs = ConsentEvent.objects.filter(contact=bob, state="unsubscribed").order_by("pk")
    assert [(event.system, event.evidence, event.previous_state, event.hub_state) for event in opt_outs] == [
        (workspace.mailchimp.name, ConsentEvent.Evidence.API_READ, "subscribed", "unsubscribed"),
        (workspace.hubspot.name, ConsentEvent.Evidence.SYNC_WRITE, "", "unsubscribed"),
    ]
    assert_next_run_writes_nothing(sandbox, workspace)


def test_an_unsubscribe_in_hubspot_then_an_audience_edit_leaves_the_person_unsubscribed_everywhere(
    sandbox, workspace, hubspot_ids
):
    cy_id = hubspot_ids["cy@example.com"]
    hubspot_unsubscribe(sandbox, "cy@example.com")
    run(workspace)
    mailchimp_edit(sandbox, "cy@example.com", FNAME="Cyrus")
    run(workspace)

    assert Contact.objects.get(email="cy@example.com").email_consent == "unsubscribed"
    assert mailchimp_by_email(sandbox, "cy@example.com")["status"] == "unsubscribed"
    assert hubspot_by_id(sandbox, cy_id)["properties"].get("hs_email_optout") == "true"
    assert names_in_hubspot(sandbox, cy_id) == ("Cyrus", "Fox")
    opt_outs = ConsentEvent.objects.filter(contact__email="cy@example.com", state="unsubscribed").order_by("pk")
    assert [(event.system, event.evidence) for event in opt_outs] == [
        (workspace.hubspot.name, ConsentEvent.Evidence.API_READ),
        (workspace.mailchimp.name, ConsentEvent.Evidence.SYNC_WRITE),
    ]
    assert_next_run_writes_nothing(sandbox, workspace)


# Identity.


def test_an_email_changed_in_mailchimp_keeps_one_contact(sandbox, workspace, hubspot_ids):
    cy = Contact.objects.get(email="cy@example.com")
    member_before = mailchimp_by_email(sandbox, "cy@example.com")
    mailchimp_change_email(sandbox, "cy@example.com", "cy.fox@example.com")

    run(workspace)

    cy.refresh_from_db()
    assert cy.email == "cy.fox@example.com"
    assert Contact.objects.count() == len(PEOPLE)
    links = {link.connection_id: link for link in cy.links.all()}
    assert links[workspace.mailchimp.pk].external_id == subscriber_hash("cy.fox@example.com")
    assert links[workspace.mailchimp.pk].stable_id == member_before["contact_id"]
    assert links[workspace.hubspot.pk].external_id == hubspot_ids["cy@example.com"]
    assert hubspot_by_id(sandbox, hubspot_ids["cy@example.com"])["properties"]["email"] == "cy.fox@example.com"
    assert len(hubspot_live(sandbox)) == len(PEOPLE)
    assert set(mailchimp_live(sandbox)) == {"ann@example.com", "bob@example.com", "cy.fox@example.com"}
    assert not DuplicatePair.objects.exists()
    assert_next_run_writes_nothing(sandbox, workspace)


def test_an_email_changed_in_mailchimp_before_syncapp_read_the_member_back_keeps_one_contact(sandbox, workspace):
    # The member was created by Syncapp's push, and its address changed before any run
    # read it: the push's reply is all Syncapp knows of its stable id.
    hubspot_id = hubspot_create(sandbox, email="dee@example.com", firstname="Dee", lastname="Moss")
    run(workspace)
    dee = Contact.objects.get(email="dee@example.com")
    mailchimp_change_email(sandbox, "dee@example.com", "dee.moss@example.com")

    run(workspace)

    assert list(Contact.objects.values_list("pk", "email")) == [(dee.pk, "dee.moss@example.com")]
    assert list(hubspot_live(sandbox)) == [hubspot_id]
    assert hubspot_by_id(sandbox, hubspot_id)["properties"]["email"] == "dee.moss@example.com"
    assert list(mailchimp_live(sandbox)) == ["dee.moss@example.com"]


def test_an_email_changed_in_hubspot_moves_the_member_without_a_duplicate(sandbox, workspace, hubspot_ids):
    ann = Contact.objects.get(email="ann@example.com")
    contact_id = mailchimp_by_email(sandbox, "ann@example.com")["contact_id"]
    hubspot_edit(sandbox, hubspot_ids["ann@example.com"], email="ann.lee@example.com")

    run(workspace)

    ann.refresh_from_db()
    assert ann.email == "ann.lee@example.com"
    assert Contact.objects.count() == len(PEOPLE)
    members = mailchimp_live(sandbox)
    assert set(members) == {"ann.lee@example.com", "bob@example.com", "cy@example.com"}
    assert members["ann.lee@example.com"]["contact_id"] == contact_id
    assert len(sandbox.mailchimp_members()) == len(PEOPLE)
    link = ann.links.get(connection=workspace.mailchimp)
    assert link.external_id == subscriber_hash("ann.lee@example.com")
    assert not DuplicatePair.objects.exists()
    assert_next_run_writes_nothing(sandbox, workspace)


# Archived records and delete handling.


def test_archived_records_are_not_taken_for_new_ones(sandbox, workspace, hubspot_ids):
    gone = hubspot_create(sandbox, email="gone@example.com", firstname="Gone")
    hubspot_archive(sandbox, gone)
    mailchimp_add(sandbox, "left@example.com", FNAME="Left")
    mailchimp_archive(sandbox, "left@example.com")
    mailchimp_archive(sandbox, "bob@example.com")

    run(workspace)

    assert not Contact.objects.filter(email__in=["gone@example.com", "left@example.com"]).exists()
    assert Contact.objects.count() == len(PEOPLE)
    bob = Contact.objects.get(email="bob@example.com")
    assert bob.links.get(connection=workspace.mailchimp).archived
    # Delete handling "ignore" (the default): HubSpot keeps Bob, and the audience does
    # not get him back.
    assert hubspot_by_id(sandbox, hubspot_ids["bob@example.com"])["archived"] is False
    assert mailchimp_by_email(sandbox, "bob@example.com")["status"] == "archived"
    assert "gone@example.com" not in mailchimp_live(sandbox)
    assert "left@example.com" not in {properties["email"] for properties in hubspot_live(sandbox).values()}
    assert_next_run_writes_nothing(sandbox, workspace)


@pytest.mark.parametrize("handling", [Sync.DeleteHandling.ARCHIVE, Sync.DeleteHandling.MIRROR])
def test_a_member_archived_in_mailchimp_is_archived_in_hubspot(sandbox, workspace, hubspot_ids, handling):
    Sync.objects.filter(pk=workspace.sync.pk).update(delete_handling=handling)
    mailchimp_archive(sandbox, "bob@example.com")

    run(workspace)

    assert hubspot_by_id(sandbox, hubspot_ids["bob@example.com"])["archived"] is True
    bob = Contact.objects.get(email="bob@example.com")
    assert all(link.archived for link in bob.links.all())
    assert Contact.objects.count() == len(PEOPLE)
    assert_next_run_writes_nothing(sandbox, workspace)


@pytest.mark.parametrize("handling", [Sync.DeleteHandling.ARCHIVE, Sync.DeleteHandling.MIRROR])
def test_a_contact_archived_in_hubspot_is_archived_in_mailchimp(sandbox, workspace, hubspot_ids, handling):
    Sync.objects.filter(pk=workspace.sync.pk).update(delete_handling=handling)
    hubspot_archive(sandbox, hubspot_ids["ann@example.com"])

    run(workspace)

    assert mailchimp_by_email(sandbox, "ann@example.com")["status"] == "archived"
    ann = Contact.objects.get(email="ann@example.com")
    assert all(link.archived for link in ann.links.all())
    assert not PendingPush.objects.filter(link__contact=ann).exists()
    assert Contact.objects.count() == len(PEOPLE)
    assert_next_run_writes_nothing(sandbox, workspace)


@pytest.mark.parametrize(("handling", "restored_in_hubspot"), [
    (Sync.DeleteHandling.MIRROR, True),
    (Sync.DeleteHandling.ARCHIVE, False),
])
def test_a_restored_member_comes_back_in_hubspot_only_when_deletes_are_mirrored(
    sandbox, workspace, hubspot_ids, handling, restored_in_hubspot
):
    Sync.objects.filter(pk=workspace.sync.pk).update(delete_handling=handling)
    mailchimp_archive(sandbox, "bob@example.com")
    run(workspace)
    assert hubspot_by_id(sandbox, hubspot_ids["bob@example.com"])["archived"] is True

    mailchimp_add(sandbox, "bob@example.com", FNAME="Bob")
    run(workspace)

    bob = Contact.objects.get(email="bob@example.com")
    assert not bob.links.get(connection=workspace.mailchimp).archived
    live = {properties["email"] for properties in hubspot_live(sandbox).values()}
    assert ("bob@example.com" in live) is restored_in_hubspot
    assert bob.links.get(connection=workspace.hubspot).archived is not restored_in_hubspot
    assert Contact.objects.count() == len(PEOPLE)
    assert_next_run_writes_nothing(sandbox, workspace)


def test_an_explicit_opt_in_asks_mailchimp_to_confirm_and_never_loops(sandbox, workspace, hubspot_ids):
    from syncapp.services.consent_ledger import consent_statement_record

    bob_id = hubspot_ids["bob@example.com"]
    mailchimp_status(sandbox, "bob@example.com", "unsubscribed")
    run(workspace)
    assert hubspot_by_id(sandbox, bob_id)["properties"].get("hs_email_optout") == "true"

    # Bob asks again, on a signed form: a user records the explicit opt-in.
    bob = Contact.objects.get(email="bob@example.com")
    reviewer = user_with_role("rita", REVIEWER)
    consent_statement_record(contact=bob, channel="email", state="subscribed", user=reviewer,
                             note="Signed form at the fair", explicit_opt_in=True)
    run(workspace)

    bob.refresh_from_db()
    assert bob.email_consent == "subscribed" and bob.email_opt_in_at is not None
    # Mailchimp will not re-subscribe an opted-out member directly: it is asked to
    # confirm (pending). HubSpot's opt-out cannot be lifted through its API and stays.
    assert mailchimp_by_email(sandbox, "bob@example.com")["status"] == "pending"
    assert hubspot_by_id(sandbox, bob_id)["properties"].get("hs_email_optout") == "true"
    assert_next_run_writes_nothing(sandbox, workspace)

    # Bob clicks the confirmation link.
    sandbox.mailchimp_confirm("bob@example.com")
    run(workspace)
    bob.refresh_from_db()
    assert bob.email_consent == "subscribed"
    assert mailchimp_by_email(sandbox, "bob@example.com")["status"] == "subscribed"
    states = list(ConsentEvent.objects.filter(contact=bob).order_by("pk").values_list("system", "state", "evidence"))
    assert ("Syncapp", "subscribed", ConsentEvent.Evidence.USER) in states
    assert states[-1] == (workspace.mailchimp.name, "subscribed", ConsentEvent.Evidence.API_READ)
    assert_next_run_writes_nothing(sandbox, workspace)

    # He unsubscribes later, alone in his page of reads: the hub's opt-in time goes, in
    # the database too (it was once cleared only in memory unless another contact of the
    # same page had an explicit opt-in), so an old opt-in can never outrank the opt-out.
    mailchimp_status(sandbox, "bob@example.com", "unsubscribed")
    run(workspace)
    bob.refresh_from_db()
    assert bob.email_consent == "unsubscribed" and bob.email_opt_in_at is None
    assert_next_run_writes_nothing(sandbox, workspace)


def test_a_crm_edit_never_resubscribes_and_a_plain_subscribed_does_not_lift_an_opt_out(
    sandbox, workspace, hubspot_ids
):
    mailchimp_status(sandbox, "cy@example.com", "unsubscribed")
    run(workspace)
    # Someone sets the member back to subscribed without any opt-in from Cy: Mailchimp
    # refuses it (compliance state), so the status stays; and a CRM edit says nothing.
    hubspot_edit(sandbox, hubspot_ids["cy@example.com"], firstname="Cyrus")
    run(workspace)
    cy = Contact.objects.get(email="cy@example.com")
    assert cy.email_consent == "unsubscribed" and cy.first_name == "Cyrus"
    assert mailchimp_by_email(sandbox, "cy@example.com")["status"] == "unsubscribed"
    assert_next_run_writes_nothing(sandbox, workspace)


# A state learned from a write's reply counts as one read.


def unsubscribing_after_the_read(sandbox, workspace, email: str):
    """Return a provider_for whose Mailchimp client has the person unsubscribe right after
    the run read Mailchimp and before it writes there: the read does not return it."""

    def provider_for(connection, **options):
        provider = registry_provider_for(connection, **options)
        if connection.pk == workspace.mailchimp.pk:
            read_changed = provider.read_changed

            def read_then_unsubscribe(cursor):
                yield from read_changed(cursor)
                mailchimp_status(sandbox, email, "unsubscribed")

            provider.read_changed = read_then_unsubscribe
        return provider

    return provider_for


def test_an_unsubscribe_only_a_write_reply_tells_reaches_the_hub_and_then_hubspot(sandbox, workspace, hubspot_ids):
    bob_id = hubspot_ids["bob@example.com"]
    hubspot_edit(sandbox, bob_id, lastname="Raymond")
    queued, _ = run_request(sync=workspace.sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    first = run_execute(run_id=queued.pk,
                        provider_for=unsubscribing_after_the_read(sandbox, workspace, "bob@example.com"))
    assert first.status == SyncRun.Status.SUCCEEDED, first.error

    # Mailchimp's reply to the name change said "unsubscribed": the hub takes it in the same run.
    bob = Contact.objects.get(email="bob@example.com")
    assert bob.email_consent == "unsubscribed"
    assert names_in_mailchimp(sandbox, "bob@example.com") == ("Bob", "Raymond")
    event = ConsentEvent.objects.get(contact=bob, state="unsubscribed")
    assert (event.system, event.evidence, event.previous_state, event.hub_state, event.run_id) == (
        workspace.mailchimp.name, ConsentEvent.Evidence.API_READ, "subscribed", "unsubscribed", first.pk)
    # HubSpot was written before Mailchimp answered: its link waits for the next run.
    assert RecordLink.objects.get(contact=bob, connection=workspace.hubspot).pending_pushes.filter(
        sync=workspace.sync).exists()
    assert hubspot_by_id(sandbox, bob_id)["properties"].get("hs_email_optout") != "true"

    run(workspace)
    assert hubspot_by_id(sandbox, bob_id)["properties"].get("hs_email_optout") == "true"
    assert mailchimp_by_email(sandbox, "bob@example.com")["status"] == "unsubscribed"
    assert_next_run_writes_nothing(sandbox, workspace)
    assert Contact.objects.get(email="bob@example.com").email_consent == "unsubscribed"


def test_an_opt_out_met_on_a_member_syncapp_meant_to_create_reaches_hubspot(sandbox, workspace):
    # The member was on Mailchimp, unsubscribed, before Syncapp ever read it: the run
    # that brings the HubSpot contact over learns the opt-out from Mailchimp's reply.
    mailchimp_add(sandbox, "dee@example.com", FNAME="Dee")
    mailchimp_status(sandbox, "dee@example.com", "unsubscribed")
    workspace.sync.endpoints.filter(connection=workspace.mailchimp).update(read=False)
    hubspot_id = hubspot_create(sandbox, email="dee@example.com", firstname="Dee", lastname="Moss")

    run(workspace)
    dee = Contact.objects.get(email="dee@example.com")
    assert dee.email_consent == "unsubscribed"
    assert mailchimp_by_email(sandbox, "dee@example.com")["status"] == "unsubscribed"
    run(workspace)
    assert hubspot_by_id(sandbox, hubspot_id)["properties"].get("hs_email_optout") == "true"
    assert_next_run_writes_nothing(sandbox, workspace)


def test_no_address_opted_out_anywhere_is_subscribed_after_a_run_over_a_seeded_portal(sandbox, workspace):
    sandbox.seed(hubspot_contacts=2000, mailchimp_members=1000, random_seed=8)
    run(workspace)

    opted_out = {(contact["properties"].get("email") or "").strip().lower()
                 for contact in sandbox.hubspot_contacts() if contact["properties"].get("hs_email_optout") == "true"}
    members = mailchimp_live(sandbox)
    opted_out |= {email for email, member in members.items() if member["status"] in ("unsubscribed", "cleaned")}
    opted_out.discard("")
    assert len(opted_out) > 100
    subscribed = {email for email in opted_out & set(members) if members[email]["status"] == "subscribed"}
    restricted = {email for email, state in Contact.objects.filter(email__in=opted_out)
                  .values_list("email", "email_consent") if state not in ("unknown", "subscribed")}
    # Only Mailchimp's own opt-in time, newer than the opt-out, lifts it (the seed's
    # members signed up at random times); HubSpot keeps its opt-out.
    lifted = set()
    for contact in Contact.objects.filter(email__in=opted_out, email_opt_in_at__isnull=False):
        opted_out_at = last_opt_out_at(contact.pk)
        if opted_out_at is not None and contact.email_opt_in_at > opted_out_at:
            lifted.add(contact.email)
    assert subscribed <= lifted
    assert opted_out & set(Contact.objects.values_list("email", flat=True)) == restricted | lifted
