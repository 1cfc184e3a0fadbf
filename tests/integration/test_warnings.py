"""Warnings are not failures: records that sync without a field, through the real sandbox.

A HubSpot phone with an extension cannot become E.164 (the hub's phone form, and the
only form phone matching may use: the number without its extension is a switchboard
shared by many people). The contact syncs without the phone, everything else arrives in
Mailchimp, and the run says so with a warning on that record, not a failure.
"""
import pytest

from syncapp.models import Contact, PendingPush, RecordError, SyncRun
from tests.integration.workspace import hubspot_create, hubspot_edit, run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WARNING = RecordError.Severity.WARNING
ERROR = RecordError.Severity.ERROR


@pytest.fixture
def sync(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox)


def members_by_email(sandbox) -> dict[str, dict]:
    return {member["email_address"]: member for member in sandbox.mailchimp_members()}


def hubspot_id(sandbox, email: str) -> str:
    return next(contact["id"] for contact in sandbox.hubspot_contacts()
                if contact["properties"].get("email") == email)


def test_a_phone_with_an_extension_is_a_warning_and_the_run_succeeds(sandbox, sync):
    hubspot_create(sandbox, [
        {"email": "ext1@example.com", "firstname": "Ext", "lastname": "One", "phone": "+1 415 555 0100 ext. 12"},
        {"email": "ext2@example.com", "firstname": "Ext", "lastname": "Two", "phone": "(415) 555-0101 x12"},
        {"email": "plain@example.com", "firstname": "Plain", "lastname": "Phone", "phone": "(415) 555-0102"},
    ])
    run = run_now(sync)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.read_count, run.pushed_count, run.failed_count, run.warning_count) == (3, 3, 0, 2)
    assert run.phase == "Done, with warnings"
    members = members_by_email(sandbox)
    # Everything but the phone arrived in Mailchimp; the plain number arrived in E.164.
    assert members["ext1@example.com"]["merge_fields"]["FNAME"] == "Ext"
    assert members["ext1@example.com"]["merge_fields"]["LNAME"] == "One"
    assert members["ext2@example.com"]["merge_fields"]["LNAME"] == "Two"
    assert not members["ext1@example.com"]["merge_fields"].get("PHONE")
    assert not members["ext2@example.com"]["merge_fields"].get("PHONE")
    assert members["plain@example.com"]["merge_fields"]["PHONE"] == "+14155550102"
    assert Contact.objects.get(email="ext1@example.com").phone is None
    warnings = {warning.external_id: warning for warning in RecordError.objects.filter(run=run)}
    assert {warning.severity for warning in warnings.values()} == {WARNING}
    first = warnings[hubspot_id(sandbox, "ext1@example.com")]
    assert first.error_class == "not_imported:phone" and first.connection.name == "HubSpot"
    assert first.message == ("phone was not imported: '+1 415 555 0100 ext. 12' has an extension, which E.164 "
                             "cannot hold. The rest of the record synced.")
    assert "'(415) 555-0101 x12' has an extension" in warnings[hubspot_id(sandbox, "ext2@example.com")].message
    # Nothing waits to be sent again: a warning does not keep a record pending.
    assert not PendingPush.objects.exists()


def test_the_warning_is_neither_retried_nor_repeated_and_a_fixed_phone_resolves_it(sandbox, sync):
    hubspot_create(sandbox, [
        {"email": "ext1@example.com", "firstname": "Ext", "lastname": "One", "phone": "+1 415 555 0100 ext. 12"},
    ])
    run_now(sync)
    sandbox.reset_stats()

    quiet = run_now(sync)
    assert quiet.status == SyncRun.Status.SUCCEEDED
    assert (quiet.pushed_count, quiet.warning_count) == (0, 0)
    assert sandbox.stats()["writes"] == 0

    hubspot_edit(sandbox, hubspot_id(sandbox, "ext1@example.com"), phone="+1 415 555 0199")
    fixed = run_now(sync)
    assert fixed.status == SyncRun.Status.SUCCEEDED
    assert (fixed.pushed_count, fixed.warning_count) == (1, 0)
    assert members_by_email(sandbox)["ext1@example.com"]["merge_fields"]["PHONE"] == "+14155550199"
    warning = RecordError.objects.get(error_class="not_imported:phone")
    assert warning.resolved and warning.attempts == 1


def test_the_hostile_records_fail_or_warn_each_for_its_own_reason(sandbox, sync, hostile_contacts):
    sandbox.seed(hostile=True)
    run = run_now(sync)

    # Addresses no system accepts fail the run partly; the phones only warn.
    assert run.status == SyncRun.Status.PARTIAL, run.error
    errors = RecordError.objects.filter(run=run)
    warned = {error.external_id for error in errors.filter(severity=WARNING)}
    failed_reads = {error.external_id for error in errors.filter(severity=ERROR, connection__name="HubSpot")}
    failed_writes = {error.contact_id for error in errors.filter(severity=ERROR, connection__name="Mailchimp")}
    assert (run.warning_count, run.failed_count) == (len(warned), len(failed_reads) + len(failed_writes))
    phones = {row["email"]: row["phone"] for row in hostile_contacts if "phone" in row}
    by_email = {contact["properties"]["email"]: contact["id"] for contact in sandbox.hubspot_contacts()}
    unreadable = {"ph2@example.com": "letters", "ph3@example.com": "is not a phone number",
                  "ph5@example.com": "has an extension, which E.164 cannot hold"}
    assert warned == {by_email[email] for email in unreadable}
    for email, reason in unreadable.items():
        warning = errors.get(external_id=by_email[email])
        assert warning.error_class == "not_imported:phone" and reason in warning.message
        assert repr(phones[email]) in warning.message
    # The records with a warning reached Mailchimp with everything else they hold.
    members = members_by_email(sandbox)
    assert members["ph5@example.com"]["merge_fields"]["FNAME"] == "Ph"
    assert members["ph5@example.com"]["merge_fields"]["LNAME"] == "Five"
    assert not members["ph5@example.com"]["merge_fields"].get("PHONE")
    # A record Mailchimp refused did not sync: an error, never a warning.
    refused = errors.get(connection__name="Mailchimp", contact__email="long@example.com")
    assert refused.severity == ERROR and "long@example.com" not in members


def test_a_two_way_phone_the_hub_cannot_read_is_left_as_it_is_in_its_system(sandbox, sync):
    # HubSpot is written too, the phone goes both ways and an empty hub value may clear
    # it there: the hub has no phone for this contact only because it could not read
    # HubSpot's, so the empty value must not be sent back over it.
    sync.endpoints.filter(connection__name="HubSpot").update(write=True)
    sync.mappings.filter(connection__name="HubSpot", hub_field="phone").update(direction="both",
                                                                         never_overwrite_with_empty=False)
    hubspot_create(sandbox, [
        {"email": "ext1@example.com", "firstname": "Ext", "lastname": "One", "phone": "+1 415 555 0100 ext. 12"},
    ])
    run = run_now(sync)
    assert (run.status, run.warning_count) == (SyncRun.Status.SUCCEEDED, 1), run.error
    contact_id = hubspot_id(sandbox, "ext1@example.com")
    stored = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}[contact_id]
    assert stored["properties"]["phone"] == "+1 415 555 0100 ext. 12"
    assert not PendingPush.objects.exists()
