"""Two syncs writing one Mailchimp audience, each with its own mappings, through the real sandbox.

The demo's sync ("HubSpot to Mailchimp") sends names to FNAME and LNAME; a second sync
("Companies") reads the same HubSpot and sends only the company to COMPANY. What one
sync read waits for that sync's push: the other sync never sends it with its own
mappings, and never settles it in its place, even when the first sync's write failed
and the change waits for its next run.
"""
import pytest

from connections.registry import provider_for as registry_provider_for
from mappings.models import FieldMapping
from syncapp.models import PendingPush, Sync, SyncConnection, SyncRun
from syncapp.services.runs import run_execute, run_request
from tests.integration.two_way import hubspot_create, hubspot_edit, mailchimp_by_email, write_calls
from tests.integration.workspace import DEMO_LEGAL_BASIS, run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def companies_sync(names: Sync) -> Sync:
    """Create a second sync of the same two connections, with its own mappings: company only."""
    hubspot = names.connections.get(name="HubSpot")
    mailchimp = names.connections.get(name="Mailchimp")
    sync = Sync.objects.create(name="Companies", schedule_minutes=0)
    SyncConnection.objects.create(sync=sync, connection=hubspot, read=True, write=False)
    SyncConnection.objects.create(sync=sync, connection=mailchimp, read=False, write=True,
                                  new_member_status="subscribed", new_member_legal_basis=DEMO_LEGAL_BASIS)
    for connection, hub_field, external_field, direction in (
        (hubspot, "email", "email", "in"),
        (hubspot, "company", "company", "in"),
        (mailchimp, "email", "email_address", "out"),
        (mailchimp, "company", "COMPANY", "out"),
    ):
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, is_owner=connection == hubspot)
    return sync


@pytest.fixture
def syncs(sandbox):
    """Both syncs, with Ann and Bob in HubSpot and in the audience (each sync run once)."""
    sandbox.limits(hubspot_rate_limit=0)
    names = sandbox_sync(sandbox)
    companies = companies_sync(names)
    ids = {}
    for email, first, company in (("ann@example.com", "Ann", "Acme"), ("bob@example.com", "Bob", "Initech")):
        ids[email] = hubspot_create(sandbox, email=email, firstname=first, lastname="Lee", company=company)
    for sync in (names, companies):
        assert run_now(sync).status == SyncRun.Status.SUCCEEDED
    assert merge_fields(sandbox, "ann@example.com") == ("Ann", "Acme")
    assert not PendingPush.objects.exists()
    return {"names": names, "companies": companies, "ids": ids}


def merge_fields(sandbox, email: str) -> tuple[str, str]:
    fields = mailchimp_by_email(sandbox, email)["merge_fields"]
    return fields.get("FNAME"), fields.get("COMPANY")


def run_losing_mailchimp_after_the_read(sandbox, sync: Sync) -> SyncRun:
    """Run `sync` with Mailchimp refusing every request from the end of HubSpot's read on:
    what the run read waits, marked pending, for its next run."""

    def provider_for(connection, **options):
        provider = registry_provider_for(connection, **options)
        if connection.provider == "hubspot":
            read_changed = provider.read_changed

            def read_then_fail_mailchimp(cursor):
                yield from read_changed(cursor)
                sandbox.faults(provider="mailchimp", rate=1.0, statuses=[503], retry_after=0)

            provider.read_changed = read_then_fail_mailchimp
        return provider

    queued, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    try:
        finished = run_execute(run_id=queued.pk, provider_for=provider_for)
    finally:
        sandbox.clear_faults()
    assert finished.status == SyncRun.Status.FAILED and "Mailchimp" in finished.error
    return finished


@pytest.mark.parametrize(("reader", "other", "edit", "expected"), [
    ("names", "companies", {"firstname": "Annie"}, ("Annie", "Acme")),
    ("companies", "names", {"company": "Globex"}, ("Ann", "Globex")),
])
def test_a_change_one_sync_read_waits_for_that_sync_and_not_the_other(sandbox, syncs, reader, other, edit, expected):
    hubspot_edit(sandbox, syncs["ids"]["ann@example.com"], **edit)
    run_losing_mailchimp_after_the_read(sandbox, syncs[reader])
    waiting = PendingPush.objects.get()
    assert (waiting.sync, waiting.link.contact.email) == (syncs[reader], "ann@example.com")

    # The other sync reads the same edit: its own mappings see nothing to send, and it
    # neither sends Ann with them nor settles the change the first sync owes.
    sandbox.reset_stats()
    assert run_now(syncs[other]).status == SyncRun.Status.SUCCEEDED
    assert write_calls(sandbox) == {}
    assert merge_fields(sandbox, "ann@example.com") == ("Ann", "Acme")
    assert PendingPush.objects.get() == waiting

    finished = run_now(syncs[reader])
    assert finished.status == SyncRun.Status.SUCCEEDED and finished.pushed_count == 1
    assert merge_fields(sandbox, "ann@example.com") == expected
    assert merge_fields(sandbox, "bob@example.com") == ("Bob", "Initech")
    assert not PendingPush.objects.exists()


def test_each_sync_sends_a_change_it_read_with_its_own_mappings(sandbox, syncs):
    hubspot_edit(sandbox, syncs["ids"]["ann@example.com"], firstname="Annie", company="Globex")

    sandbox.reset_stats()
    assert run_now(syncs["companies"]).pushed_count == 1
    # The company only: the names are not this sync's to send.
    assert merge_fields(sandbox, "ann@example.com") == ("Ann", "Globex")
    assert not PendingPush.objects.exists()

    assert run_now(syncs["names"]).pushed_count == 1
    assert merge_fields(sandbox, "ann@example.com") == ("Annie", "Globex")
    assert not PendingPush.objects.exists()
