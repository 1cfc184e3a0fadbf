"""Try it on a record, through the sandbox: each system's values read live, each transform step, the planned writes."""
import pytest
from django.urls import reverse

from connections.models import Connection
from mappings.models import FieldMapping
from mappings.preview import record_preview
from syncapp.models import Contact, RecordLink
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
