"""The run after a two-way bulk push: its echoes cost little and change nothing (issue 12, item 3).

Through the real sandbox process and database. A two-way run pushes into each system
after reading it, so the next delta read lists every record it wrote: Syncapp's own
writes coming back. They are recognized before matching and merging (services.echoes,
engine.echo) and counted: no contact update, no link write, no ledger or audit row, no
conflict. A genuine change made in a system between the push and the next run (a field
edited on a record Syncapp wrote, an unsubscribe on a member Syncapp created), and a
hub change made since the push, are still taken and carried everywhere. The watermark
still moves past the echoes, by the provider's clock.
"""
import json
from datetime import datetime

import pytest

from audit.models import AuditEvent
from connections.providers.cursors import epoch_ms
from connections.providers.hubspot import parse_hubspot_time
from mappings.models import FieldMapping
from mappings.services import mapping_editor_save
from syncapp.models import Conflict, ConsentEvent, Contact, DuplicatePair, RecordLink, SyncConnection, SyncRun
from syncapp.services.consent_ledger import consent_statement_record
from syncapp.services.runs import run_execute, run_request
from tests.integration.two_way import (
    hubspot_by_id,
    hubspot_create,
    hubspot_edit,
    mailchimp_add,
    mailchimp_by_email,
    mailchimp_live,
    mailchimp_status,
    run,
    two_way_workspace,
    write_calls,
)
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Data on both sides before the first run: people only in HubSpot, people only in the
# audience (one unsubscribed there), and people in both (their company, which the sync
# writes from the CRM to the audience, only in HubSpot).
IN_HUBSPOT = {f"crm{i}@example.com": (f"Crm{i}", "Lee") for i in range(6)}
IN_MAILCHIMP = {f"list{i}@example.com": (f"List{i}", "Ray") for i in range(6)}
IN_BOTH = {f"both{i}@example.com": (f"Both{i}", "Fox") for i in range(3)}
UNSUBSCRIBED_IN_MAILCHIMP = "list5@example.com"


@pytest.fixture
def workspace(sandbox):
    return two_way_workspace(sandbox)


@pytest.fixture
def pushed(sandbox, workspace) -> dict[int, tuple[str, str]]:
    """Run the first sync over data on both sides; return the links it pushed: id -> (system, email)."""
    for email, (first, last) in IN_HUBSPOT.items():
        hubspot_create(sandbox, email=email, firstname=first, lastname=last)
    for email, (first, last) in IN_BOTH.items():
        hubspot_create(sandbox, email=email, firstname=first, lastname=last, company="Acme")
    for email, (first, last) in {**IN_MAILCHIMP, **IN_BOTH}.items():
        mailchimp_add(sandbox, email, FNAME=first, LNAME=last)
    mailchimp_status(sandbox, UNSUBSCRIBED_IN_MAILCHIMP, "unsubscribed")
    run(workspace)
    return {link.pk: (link.connection.provider, link.contact.email)
            for link in RecordLink.objects.filter(last_pushed_at__isnull=False).select_related("connection", "contact")}


def link_states() -> dict[int, tuple]:
    return {link.pk: (link.updated_at, link.merge_base, link.email_consent_base, link.external_id, link.archived)
            for link in RecordLink.objects.all()}


def hubspot_id(email: str) -> str:
    return RecordLink.objects.get(connection__provider="hubspot", contact__email=email).external_id


def cursor_since(workspace, provider: str) -> int:
    endpoint = SyncConnection.objects.get(sync=workspace.sync, connection__provider=provider)
    return json.loads(endpoint.cursor)["since"]


def test_the_echoes_of_a_bulk_push_change_nothing_while_changes_made_since_are_taken(sandbox, workspace, pushed):
    systems = {system for system, _ in pushed.values()}
    assert systems == {"hubspot", "mailchimp"}
    # Between the push and the next run: a name edited in HubSpot on a contact Syncapp
    # created there; an unsubscribe in Mailchimp on a member Syncapp created there; an
    # unsubscribe recorded in the hub for a person Syncapp created in HubSpot: her record
    # there is read back holding what was agreed, but the hub changed since.
    edited = "list1@example.com"
    unsubscribed = "crm1@example.com"
    hub_changed = "list2@example.com"
    assert {(system, email) for system, email in pushed.values()} >= {
        ("hubspot", edited), ("mailchimp", unsubscribed), ("hubspot", hub_changed), ("mailchimp", "both1@example.com")}
    hubspot_edit(sandbox, hubspot_id(edited), firstname="Edited")
    mailchimp_status(sandbox, unsubscribed, "unsubscribed")
    consent_statement_record(contact=Contact.objects.get(email=hub_changed), channel="email", state="unsubscribed",
                             user=user_with_role("marketer"), note="Asked by phone.")
    newest_hubspot_change = max(epoch_ms(parse_hubspot_time(contact["updatedAt"]))
                                for contact in sandbox.hubspot_contacts())
    newest_mailchimp_change = max(epoch_ms(datetime.fromisoformat(member["last_changed"]))
                                  for member in sandbox.mailchimp_members())
    links_before = link_states()
    contacts_before = {contact.pk: contact.updated_at for contact in Contact.objects.all()}
    changed = set(Contact.objects.filter(email__in=[edited, unsubscribed, hub_changed]).values_list("pk", flat=True))
    audits_before = AuditEvent.objects.count()
    ledger_before = set(ConsentEvent.objects.values_list("pk", flat=True))
    conflicts_before = Conflict.objects.count()

    second = run(workspace)

    # Every record the first run wrote is read back; all but those changed since are echoes.
    hub_changed_links = sum(1 for _, email in pushed.values() if email == hub_changed)
    assert second.read_count == len(pushed)
    assert second.echo_count == len(pushed) - 2 - hub_changed_links
    assert second.unchanged_count >= second.echo_count
    assert second.conflict_count == 0 and Conflict.objects.count() == conflicts_before
    # The echoes wrote nothing: no contact, no link, no ledger or audit row but the changed people's.
    links_after = link_states()
    rewritten = {pk for pk, state in links_after.items() if links_before.get(pk) != state}
    assert {RecordLink.objects.get(pk=pk).contact_id for pk in rewritten} <= changed
    assert {pk for pk, updated_at in Contact.objects.values_list("pk", "updated_at")
            if contacts_before.get(pk) != updated_at} <= changed
    assert set(ConsentEvent.objects.exclude(pk__in=ledger_before).values_list("contact_id", flat=True)) <= changed
    audited = set(AuditEvent.objects.filter(run_id=second.pk).values_list("contact_id", flat=True))
    assert audited and audited <= changed
    assert AuditEvent.objects.count() > audits_before

    # The changes made since the push were taken and carried to the other system.
    assert Contact.objects.get(email=edited).first_name == "Edited"
    assert mailchimp_by_email(sandbox, edited)["merge_fields"]["FNAME"] == "Edited"
    assert Contact.objects.get(email=unsubscribed).email_consent == "unsubscribed"
    assert hubspot_by_id(sandbox, hubspot_id(unsubscribed))["properties"]["hs_email_optout"] == "true"
    assert mailchimp_by_email(sandbox, hub_changed)["status"] == "unsubscribed"
    assert hubspot_by_id(sandbox, hubspot_id(hub_changed))["properties"]["hs_email_optout"] == "true"
    # Nobody who had opted out is subscribed again.
    assert mailchimp_live(sandbox)[UNSUBSCRIBED_IN_MAILCHIMP]["status"] == "unsubscribed"
    assert Contact.objects.get(email=UNSUBSCRIBED_IN_MAILCHIMP).email_consent == "unsubscribed"

    # The watermarks moved past the echoes, by each provider's clock: the next reads start after them.
    assert cursor_since(workspace, "hubspot") >= newest_hubspot_change
    # Mailchimp stamps whole seconds, and a member changed twice within one second a
    # second ahead (its last_changed never repeats): the unsubscribe made just after
    # Syncapp created that member can read as up to a second ahead of the clock.
    assert cursor_since(workspace, "mailchimp") >= newest_mailchimp_change - 1000

    # What the second run wrote comes back as echoes in turn; nothing is written again.
    sandbox.reset_stats()
    third = run(workspace)
    assert write_calls(sandbox) == {}
    assert (third.created_count, third.updated_count, third.pushed_count) == (0, 0, 0)
    assert third.echo_count == third.read_count - third.failed_count - third.warning_count


def test_a_full_resync_sets_no_echo_aside(sandbox, workspace, pushed):
    # A full read is how a contact catches up with a system added or a mapping changed:
    # every record gets the full treatment.
    run_request(sync=workspace.sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False, full_read=True)
    full = run(workspace)
    assert full.echo_count == 0
    assert full.read_count >= len(IN_HUBSPOT) + len(IN_MAILCHIMP) + 2 * len(IN_BOTH)


def test_a_backfill_sets_no_echo_aside(sandbox, workspace, pushed):
    # The company's outbound format to Mailchimp changed: HubSpot, which reads the
    # company, is read again in full; Mailchimp's changes since (the first run's echoes)
    # are read too, and while the run compares a field afresh they get the full treatment.
    mapping = FieldMapping.objects.get(sync=workspace.sync, connection=workspace.mailchimp, hub_field="company")
    mapping.transforms = [{"name": "uppercase", "direction": "out"}]
    saved = mapping_editor_save(mapping=mapping, user=None)
    backfill = run_execute(run_id=saved.backfill.pk)
    assert backfill.status == SyncRun.Status.SUCCEEDED, backfill.error
    mailchimp_echoes = sum(1 for system, _ in pushed.values() if system == "mailchimp")
    assert backfill.read_count == len(IN_HUBSPOT) + len(IN_BOTH) + len(IN_MAILCHIMP) + mailchimp_echoes
    assert backfill.echo_count == 0
    assert {email: member["merge_fields"]["COMPANY"] for email, member in mailchimp_live(sandbox).items()
            if email in IN_BOTH} == dict.fromkeys(IN_BOTH, "ACME")


def test_echoes_among_the_hostile_records_leave_nobody_duplicated_resubscribed_or_unsynced(sandbox, workspace):
    sandbox.seed(hubspot_contacts=40, mailchimp_members=40, hostile=True, random_seed=21)
    run(workspace)
    contacts = Contact.objects.count()
    opted_out = set(Contact.objects.exclude(email_consent__in=["subscribed", "unknown"])
                    .exclude(email__isnull=True).values_list("email", flat=True))
    states = {link.pk: (link.merge_base, link.email_consent_base, link.external_id)
              for link in RecordLink.objects.all()}

    second = run(workspace)

    assert second.echo_count > 0 and second.pushed_count == 0
    # Every record not set aside carried news there (a value its link's base lacked, a
    # consent state other than the one agreed): its link took it. Every echo's link is as it was.
    relinked = sum(1 for pk, state in states.items()
                   if RecordLink.objects.filter(pk=pk).values_list("merge_base", "email_consent_base", "external_id")
                   .first() != state)
    assert relinked == second.read_count - second.echo_count
    assert Contact.objects.count() == contacts
    assert not DuplicatePair.objects.filter(created_at__gte=second.started_at).exists()
    restricted = set(Contact.objects.exclude(email_consent__in=["subscribed", "unknown"])
                     .exclude(email__isnull=True).values_list("email", flat=True))
    assert opted_out <= restricted
    members = mailchimp_live(sandbox)
    assert not {email for email in restricted & set(members) if members[email]["status"] == "subscribed"}
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}
