"""Likely duplicates found by a run of the demo's two-way sync, merged through the duplicates page.

The shared hostile records, seeded into HubSpot as an old portal holds them, carry one
phone under two addresses ("(415) 555-0100" read in the US region, and "+14155550100").
They also hold one address twice ("DUP@example.com" and "dup@example.com"), which
HubSpot refuses to hold twice: the seed keeps the first, and the sync sees one person.
(Systems that do hold an address twice, and the merge of such pairs, are covered over
the fake providers in tests/syncapp.)
"""
import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from syncapp.models import ConsentEvent, Contact, DuplicatePair, RecordLink
from syncapp.roles import REVIEWER
from tests.integration.two_way import (
    hubspot_live,
    mailchimp_live,
    mailchimp_status,
    run,
    two_way_workspace,
    write_calls,
)
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHARED_PHONE = "+14155550100"


@pytest.fixture
def workspace(sandbox):
    sandbox.seed(hostile=True)
    workspace = two_way_workspace(sandbox)
    run(workspace)
    return workspace


@pytest.fixture
def reviewer_client() -> Client:
    client = Client()
    client.force_login(user_with_role("rita", REVIEWER))
    return client


def merge_through_the_page(client: Client, pair: DuplicatePair, survivor: Contact, reason: str) -> None:
    listed = client.get(reverse("duplicate_list")).content.decode()
    assert reverse("duplicate_merge", args=[pair.pk]) in listed
    response = client.post(reverse("duplicate_merge", args=[pair.pk]), {"survivor": survivor.pk, "reason": reason})
    assert response.status_code == 302, response.content.decode()
    assert response.url == reverse("contact_detail", args=[survivor.pk])


def assert_a_further_run_writes_nothing(sandbox, workspace) -> None:
    run(workspace)
    sandbox.reset_stats()
    run(workspace)
    assert write_calls(sandbox) == {}


def test_an_address_hubspot_holds_once_is_one_contact_whose_opt_out_reaches_both_systems(sandbox, workspace):
    assert not DuplicatePair.objects.filter(reason=DuplicatePair.Reason.SAME_EMAIL).exists()
    (dup,) = Contact.objects.filter(email="dup@example.com")
    hubspot_id = RecordLink.objects.get(contact=dup, connection=workspace.hubspot).external_id
    assert hubspot_live(sandbox)[hubspot_id]["email"] == "DUP@example.com"
    assert mailchimp_live(sandbox)["dup@example.com"]["merge_fields"]["LNAME"] == "One"

    mailchimp_status(sandbox, "dup@example.com", "unsubscribed")
    run(workspace)

    dup.refresh_from_db()
    assert dup.email_consent == "unsubscribed"
    assert hubspot_live(sandbox)[hubspot_id]["hs_email_optout"] == "true"
    assert ConsentEvent.objects.filter(contact=dup, state="unsubscribed").exists()
    assert_a_further_run_writes_nothing(sandbox, workspace)


def test_one_phone_under_two_emails_is_merged_with_its_records_and_ledgers(sandbox, workspace, reviewer_client):
    sharing = list(Contact.objects.filter(phone=SHARED_PHONE).order_by("pk"))
    assert [contact.email for contact in sharing] == ["ph1@example.com", "samephone@example.com"]
    survivor, other = sharing
    pair = DuplicatePair.objects.get(reason=DuplicatePair.Reason.SAME_PHONE, status=DuplicatePair.Status.OPEN)
    assert (pair.contact_a, pair.contact_b) == (survivor, other)
    other_email = other.email
    mailchimp_status(sandbox, other_email, "unsubscribed")
    run(workspace)
    other_ledger = set(ConsentEvent.objects.filter(contact=other).values_list("pk", flat=True))
    assert other_ledger, "the unsubscribe should be in the other contact's ledger"
    hubspot_ids = dict(RecordLink.objects.filter(connection=workspace.hubspot, contact__in=[survivor, other])
                       .values_list("contact_id", "external_id"))

    merge_through_the_page(reviewer_client, pair, survivor, "Same person, work and home addresses")

    survivor.refresh_from_db()
    assert survivor.email_consent == "unsubscribed"  # the most restrictive of the two
    assert other_ledger <= set(ConsentEvent.objects.filter(contact=survivor).values_list("pk", flat=True))
    assert set(RecordLink.objects.filter(contact=survivor).values_list("connection_id", flat=True)) == {
        workspace.hubspot.pk, workspace.mailchimp.pk}
    assert list(Contact.objects.filter(phone=SHARED_PHONE)) == [survivor]
    assert not DuplicatePair.objects.filter(status=DuplicatePair.Status.OPEN).exclude(reason="same_email").exists()
    live = hubspot_live(sandbox)
    assert hubspot_ids[other.pk] not in live and hubspot_ids[survivor.pk] in live
    # Mailchimp cannot merge members: the other address is archived there.
    assert other_email not in mailchimp_live(sandbox)
    assert AuditEvent.objects.filter(action="contact.merged", contact_id=survivor.pk).exists()

    assert_a_further_run_writes_nothing(sandbox, workspace)
    assert mailchimp_live(sandbox)[survivor.email]["status"] == "unsubscribed"


def test_a_merge_mailchimp_refuses_halfway_leaves_the_hub_alone_and_succeeds_when_tried_again(
    sandbox, workspace, reviewer_client
):
    pair = DuplicatePair.objects.get(reason=DuplicatePair.Reason.SAME_PHONE, status=DuplicatePair.Status.OPEN)
    survivor, other = pair.contact_a, pair.contact_b
    other_email = other.email
    hubspot_ids = dict(RecordLink.objects.filter(connection=workspace.hubspot, contact__in=[survivor, other])
                       .values_list("contact_id", "external_id"))
    # HubSpot merges its two records; then Mailchimp refuses to archive the other member.
    sandbox.faults(provider="mailchimp", rate=0, expire_tokens=True)
    response = reviewer_client.post(reverse("duplicate_merge", args=[pair.pk]), {"survivor": survivor.pk})
    sandbox.clear_faults()

    assert response.status_code == 409
    assert "Nothing was merged. Mailchimp (sandbox) refused to merge its records" in response.content.decode()
    assert Contact.objects.filter(pk__in=[survivor.pk, other.pk]).count() == 2
    assert other_email in mailchimp_live(sandbox)
    assert hubspot_ids[other.pk] not in hubspot_live(sandbox)  # merged there already

    merge_through_the_page(reviewer_client, pair, survivor, "Tried again")

    assert not Contact.objects.filter(pk=other.pk).exists()
    assert other_email not in mailchimp_live(sandbox)
    kept = RecordLink.objects.get(contact=survivor, connection=workspace.hubspot)
    assert kept.external_id == hubspot_ids[survivor.pk]
    assert hubspot_ids[survivor.pk] in hubspot_live(sandbox)
    assert_a_further_run_writes_nothing(sandbox, workspace)
