"""Try it on a record, through the sandbox: each system's values read live, each transform step, the planned writes."""
import pytest
from django.urls import reverse

from connections.models import Connection
from mappings.models import FieldMapping
from mappings.preview import record_preview
from syncapp.models import Contact, RecordLink, SyncConnection
from syncapp.roles import MARKETER
from tests.integration.workspace import run_now, sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def synced(sandbox):
    """A HubSpot -> Mailchimp sync that ran once over a few seeded contacts."""
    sandbox.seed(hubspot_contacts=5, random_seed=7)
    sync = sandbox_sync(sandbox)
    run = run_now(sync)
    assert run.pushed_count >= 1, run.error
    contact = Contact.objects.filter(links__connection__name="Mailchimp", links__external_id__isnull=False) \
        .exclude(first_name="").order_by("id").first()
    return sync, contact


def system(preview, name):
    return next(item for item in preview.systems if item.name == name)


def row(system_preview, external_field):
    return next(item for item in system_preview.fields if item.external_field == external_field)


def test_a_synced_contact_shows_the_same_value_everywhere_and_no_change(synced):
    sync, contact = synced
    preview = record_preview(sync=sync, contact=contact)
    hubspot, mailchimp = system(preview, "HubSpot"), system(preview, "Mailchimp")
    assert hubspot.problem == mailchimp.problem == ""

    first = row(hubspot, "firstname")
    assert first.hub_value == contact.first_name
    assert first.system_value.strip() == contact.first_name
    assert [step.name for step in first.steps_in] == ["trim"]
    assert first.steps_in[-1].value == contact.first_name
    assert "keeps its value" in first.read_outcome or "agree" in first.read_outcome

    fname = row(mailchimp, "FNAME")
    assert fname.system_value == contact.first_name
    assert fname.write_outcome == "No change."
    assert mailchimp.summary == "No change: this system already holds what the hub would send."


def test_a_hub_change_shows_what_a_run_would_write_and_where(synced):
    sync, contact = synced
    contact.first_name = "Zoë"
    contact.save()
    preview = record_preview(sync=sync, contact=contact)
    mailchimp = system(preview, "Mailchimp")
    assert row(mailchimp, "FNAME").write_outcome == "Would write 'Zoë'."
    assert row(mailchimp, "LNAME").write_outcome == "No change."
    assert mailchimp.summary == "A run would update this record here."
    # HubSpot is only read: what it holds would not replace the hub's newer value.
    first = row(system(preview, "HubSpot"), "firstname")
    assert "keeps its value" in first.read_outcome


def test_transform_steps_show_each_value_out_of_the_hub(synced):
    sync, contact = synced
    mapping = FieldMapping.objects.get(sync=sync, external_field="FNAME")
    mapping.transforms = ["uppercase", {"name": "truncate", "length": 3, "direction": "out"}]
    mapping.save()
    contact.first_name = "Annabel"
    contact.save()
    fname = row(system(record_preview(sync=sync, contact=contact), "Mailchimp"), "FNAME")
    # Out of the hub the chain runs in reverse: truncate, then upper case.
    assert [(step.name, step.value) for step in fname.steps_out] == [("truncate", "Ann"), ("uppercase", "ANN")]
    assert fname.write_outcome == "Would write 'ANN'."


def test_a_contact_not_yet_in_a_system_would_be_created(synced):
    sync, contact = synced
    RecordLink.objects.filter(contact=contact, connection__name="Mailchimp").delete()
    mailchimp = system(record_preview(sync=sync, contact=contact), "Mailchimp")
    assert mailchimp.problem == "Not linked here yet."
    assert mailchimp.summary == "A run would create this record here."
    assert row(mailchimp, "FNAME").write_outcome == f"Would write {contact.first_name!r}."


def not_in_mailchimp(sync, contact, *, hub_consent: str, new_member_status: str) -> Contact:
    """Unlink `contact` from Mailchimp, give it `hub_consent`, and set what the sync gives new members there."""
    RecordLink.objects.filter(contact=contact, connection__name="Mailchimp").delete()
    Contact.objects.filter(pk=contact.pk).update(email_consent=hub_consent)
    SyncConnection.objects.filter(sync=sync, connection__name="Mailchimp").update(
        new_member_status=new_member_status,
        new_member_legal_basis="Consent collected on the signup form" if new_member_status == "subscribed" else "")
    contact.refresh_from_db()
    return contact


def test_a_new_member_of_unknown_consent_with_no_status_chosen_is_not_created_and_the_page_says_where_to_choose(
        synced, client):
    sync, contact = synced
    contact = not_in_mailchimp(sync, contact, hub_consent="unknown", new_member_status="")
    mailchimp = system(record_preview(sync=sync, contact=contact), "Mailchimp")
    assert mailchimp.summary == "Not created in Mailchimp until you choose a status for new members."
    assert mailchimp.waits_for_new_member_status and mailchimp.new_member_consent is None

    client.force_login(user_with_role("maria", MARKETER))
    page = client.get(reverse("mapping_preview", args=[sync.pk]), {"contact": contact.pk}).content.decode()
    assert "<strong>Not created in Mailchimp until you choose a status for new members.</strong>" in page
    assert f'<a href="{reverse("sync_edit", args=[sync.pk])}">Choose the status new members get' in page
    assert "A run would create this record here" not in page


@pytest.mark.parametrize(
    ("hub_consent", "new_member_status", "created_with", "source"),
    [
        ("unknown", "pending", "pending", "chosen"),
        ("unknown", "subscribed", "subscribed", "chosen"),
        # The hub's consent, where it knows one, whatever was chosen for the unknown.
        ("unsubscribed", "subscribed", "unsubscribed", "hub"),
        ("subscribed", "", "subscribed", "hub"),
        ("transactional", "pending", "transactional", "hub"),
    ],
)
def test_a_new_member_shows_the_consent_status_it_would_be_created_with(synced, client, hub_consent,
                                                                       new_member_status, created_with, source):
    sync, contact = synced
    contact = not_in_mailchimp(sync, contact, hub_consent=hub_consent, new_member_status=new_member_status)
    preview = record_preview(sync=sync, contact=contact)
    mailchimp = system(preview, "Mailchimp")
    assert mailchimp.summary == "A run would create this record here."
    assert (mailchimp.new_member_consent, mailchimp.new_member_consent_source) == (created_with, source)
    assert not mailchimp.waits_for_new_member_status
    # HubSpot is only read: no record is created there.
    assert system(preview, "HubSpot").new_member_consent is None

    client.force_login(user_with_role("maria", MARKETER))
    page = client.get(reverse("mapping_preview", args=[sync.pk]), {"contact": contact.pk}).content.decode()
    assert f"A new member here gets the email consent status <strong>{created_with}</strong>" in page
    shown = "the status chosen for new members" if source == "chosen" else "from the hub's email consent"
    assert shown in page


def test_a_contact_already_in_mailchimp_shows_no_new_member_status(synced):
    sync, contact = synced
    SyncConnection.objects.filter(sync=sync, connection__name="Mailchimp").update(new_member_status="")
    mailchimp = system(record_preview(sync=sync, contact=contact), "Mailchimp")
    assert mailchimp.external_id
    assert (mailchimp.new_member_consent, mailchimp.waits_for_new_member_status) == (None, False)


def test_a_failing_system_is_a_message_on_that_system_not_an_error_page(synced, client):
    sync, contact = synced
    # The key was revoked in Mailchimp: every call is refused.
    mailchimp = Connection.objects.get(name="Mailchimp")
    mailchimp.api_key = "revoked0123456789-us1"
    mailchimp.save()
    client.force_login(user_with_role("maria", MARKETER))
    response = client.get(reverse("mapping_preview", args=[sync.pk]), {"contact": contact.pk})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Could not read the record from Mailchimp" in page
    # HubSpot still answers.
    assert 'data-field="firstname"' in page and "Could not read the record from HubSpot" not in page


def test_the_page_finds_a_contact_by_email_or_name(synced, client):
    sync, contact = synced
    client.force_login(user_with_role("maria", MARKETER))
    url = reverse("mapping_preview", args=[sync.pk])
    page = client.get(url, {"q": contact.email.upper()}).content.decode()
    assert f"Contact #{contact.pk}" in page and 'data-field="FNAME"' in page
    assert "No contact of this sync matches" in client.get(url, {"q": "nobody-at-all"}).content.decode()
    assert "No contact #999999 is linked" in client.get(url, {"q": "999999"}).content.decode()
    stranger = Contact.objects.create(email="stranger@example.com")
    assert f"No contact #{stranger.pk} is linked" in client.get(url, {"contact": stranger.pk}).content.decode()
