"""A contact known only by its phone, in a sync that writes an email-keyed and a phone-keyed system.

The demo's HubSpot-to-Mailchimp sync also writes Textline, an SMS platform that keys
its subscribers by phone (tests/plugins). Pat is in HubSpot with a phone and no email:
Textline gets Pat by phone; Mailchimp, which keys members by email, cannot hold Pat, so
Pat waits there as "not applicable": unmarked, no call, no error, until HubSpot gives
Pat an email. Everything goes through the sandbox process over loopback.
"""
import pytest

from mappings.models import FieldMapping
from syncapp.models import Contact, PendingPush, RecordError, SyncConnection, SyncRun
from syncapp.services.pending import systems_not_applicable
from tests.integration.two_way import hubspot_create, hubspot_edit, write_calls
from tests.integration.workspace import run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAT_PHONE = "+14155550123"
ANN_PHONE = "+14155550124"


@pytest.fixture
def sync(textline_sandbox, textline_connection):
    textline_sandbox.limits(hubspot_rate_limit=0)
    sync = sandbox_sync(textline_sandbox)
    SyncConnection.objects.create(sync=sync, connection=textline_connection, read=False, write=True)
    for hub_field, external_field in (("phone", "phone_number"), ("first_name", "first_name"),
                                      ("last_name", "last_name"), ("sms_consent", "sms_status")):
        FieldMapping.objects.create(sync=sync, connection=textline_connection, hub_field=hub_field,
                                    external_field=external_field, direction="out")
    return sync


@pytest.fixture
def people(textline_sandbox):
    """Pat (a phone, no email) and Ann (both) in HubSpot; both opted in to texts, as the hub knows.

    The hub learned their SMS opt-ins first (a signed form, typed in): Textline creates
    no subscriber without a status, and an unknown one is never sent as subscribed.
    """
    Contact.objects.create(phone=PAT_PHONE, sms_consent="subscribed")
    Contact.objects.create(email="ann@example.com", phone=ANN_PHONE, sms_consent="subscribed")
    return {
        "pat": hubspot_create(textline_sandbox, firstname="Pat", lastname="Ng", phone="(415) 555-0123"),
        "ann": hubspot_create(textline_sandbox, email="ann@example.com", firstname="Ann", lastname="Lee",
                              phone="+1 415 555 0124"),
    }


def subscribers(sandbox) -> dict[str, dict]:
    return {item["phone_number"]: item for item in sandbox.control("textline", "subscribers")["subscribers"]}


def members(sandbox) -> dict[str, dict]:
    return {member["email_address"].lower(): member for member in sandbox.mailchimp_members()}


def test_a_phone_only_contact_reaches_the_phone_keyed_system_and_waits_as_not_applicable_for_mailchimp(
    textline_sandbox, sync, people
):
    run = run_now(sync)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    held = subscribers(textline_sandbox)
    assert set(held) == {PAT_PHONE, ANN_PHONE}
    assert (held[PAT_PHONE]["first_name"], held[PAT_PHONE]["sms_status"]) == ("Pat", "subscribed")
    # Mailchimp holds Ann only; Pat is no error there, and no push waits for Pat.
    assert set(members(textline_sandbox)) == {"ann@example.com"}
    assert not RecordError.objects.exists()
    pat = Contact.objects.get(phone=PAT_PHONE)
    assert pat.email is None and pat.first_name == "Pat"
    assert not PendingPush.objects.exists()
    assert not pat.links.filter(connection__provider="mailchimp").exists()
    [(connection, reason)] = systems_not_applicable(pat)
    assert connection.provider == "mailchimp" and "email address" in reason
    # Nothing changed: the next run writes nothing anywhere.
    textline_sandbox.reset_stats()
    assert run_now(sync).status == SyncRun.Status.SUCCEEDED
    assert write_calls(textline_sandbox) == {}


def test_once_the_contact_has_an_email_it_reaches_mailchimp_and_stays_one_subscriber_by_phone(
    textline_sandbox, sync, people
):
    assert run_now(sync).status == SyncRun.Status.SUCCEEDED
    hubspot_edit(textline_sandbox, people["pat"], email="pat@example.com", firstname="Patricia")
    assert run_now(sync).status == SyncRun.Status.SUCCEEDED
    member = members(textline_sandbox)["pat@example.com"]
    assert member["merge_fields"]["FNAME"] == "Patricia"
    held = subscribers(textline_sandbox)
    assert len(held) == 2 and held[PAT_PHONE]["first_name"] == "Patricia"
    assert systems_not_applicable(Contact.objects.get(phone=PAT_PHONE)) == []
    assert not RecordError.objects.exists()
