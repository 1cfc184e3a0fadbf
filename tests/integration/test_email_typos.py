"""An address with a domain typo in HubSpot, through the sandbox: a record error, or fixed by the sync's rule."""
import pytest
import requests

from audit.models import AuditEvent
from syncapp.models import Contact, RecordError, SyncRun
from tests.integration.workspace import hubspot_edit, run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TYPO = "ann@gmial.com"
FIXED = "ann@gmail.com"


def hubspot_create(sandbox, **properties) -> str:
    response = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts", json={"properties": properties},
                             headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=10)
    response.raise_for_status()
    return response.json()["id"]


@pytest.fixture
def ann(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    hubspot_create(sandbox, email="bob@example.com", firstname="Bob", lastname="Ng")
    return hubspot_create(sandbox, email=TYPO, firstname="Ann", lastname="Lee")


def members(sandbox) -> dict[str, dict]:
    return {member["email_address"]: member for member in sandbox.mailchimp_members()}


def test_a_typo_domain_is_a_record_error_with_the_suggestion(sandbox, ann):
    sync = sandbox_sync(sandbox)
    run = run_now(sync)

    assert run.status == SyncRun.Status.PARTIAL, run.error
    (error,) = RecordError.objects.filter(run=run)
    assert (error.external_id, error.error_class, error.severity) == (ann, "invalid_email", RecordError.Severity.ERROR)
    assert error.message == ("Not imported: ann@gmial.com: the domain gmial.com looks like a typo of gmail.com; "
                             "did you mean ann@gmail.com?")
    assert list(Contact.objects.values_list("email", flat=True)) == ["bob@example.com"]
    assert set(members(sandbox)) == {"bob@example.com"}
    assert not AuditEvent.objects.filter(action="contact.email_fixed").exists()


def test_with_the_rule_on_it_syncs_as_the_fixed_address_and_the_fix_is_audited(sandbox, ann):
    sync = sandbox_sync(sandbox, fix_email_typos=True)
    run = run_now(sync)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert not RecordError.objects.exists()
    contact = Contact.objects.get(email=FIXED)
    assert contact.links.get(connection__name="HubSpot").external_id == ann
    assert not Contact.objects.filter(email=TYPO).exists()
    held = members(sandbox)
    assert set(held) == {"bob@example.com", FIXED}
    assert held[FIXED]["merge_fields"]["FNAME"] == "Ann"

    (event,) = AuditEvent.objects.filter(action="contact.email_fixed")
    assert (event.system, event.contact_id, event.run_id) == ("HubSpot", contact.pk, run.pk)
    assert event.changes == {"email": [TYPO, FIXED], "external_id": [None, ann]}

    # Read again, nothing new is fixed: one audit row per fix, not per read.
    sandbox.reset_stats()
    hubspot_edit(sandbox, ann, firstname="Annie")
    run = run_now(sync)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert AuditEvent.objects.filter(action="contact.email_fixed").count() == 1
    assert members(sandbox)[FIXED]["merge_fields"]["FNAME"] == "Annie"



def test_a_fix_that_links_the_record_to_a_contact_with_the_right_address_is_audited(sandbox, ann):
    # Review of issue 9: the fix was audited only when it changed the hub's address, so
    # linking HubSpot's typo to a contact already known by the right one left no trace.
    known = Contact.objects.create(email=FIXED, first_name="Ann")
    sync = sandbox_sync(sandbox, fix_email_typos=True)
    run = run_now(sync)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert Contact.objects.filter(email=FIXED).count() == 1
    assert known.links.get(connection__name="HubSpot").external_id == ann
    (event,) = AuditEvent.objects.filter(action="contact.email_fixed")
    assert (event.contact_id, event.run_id) == (known.pk, run.pk)
    assert event.changes == {"email": [TYPO, FIXED], "external_id": [None, ann],
                             "linked_to_existing_contact": [None, known.pk]}
