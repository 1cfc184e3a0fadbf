"""HubSpot to Mailchimp through the real sandbox process over loopback and the real database."""
import pytest

from syncapp.models import Contact, RecordError, SyncRun
from tests.integration.workspace import (
    assert_consistent,
    hubspot_edit,
    importable,
    refused_by_mailchimp,
    run_now,
    sandbox_sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONTACTS = 300
MERGE_FIELDS = "GET /lists/{list_id}/merge-fields"


@pytest.fixture
def sync(sandbox):
    # The rate limit is under test elsewhere; here it would only slow the suite down.
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox)


def test_full_sync_puts_every_importable_contact_in_mailchimp(sandbox, sync):
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=1)
    run = run_now(sync)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    wanted = importable(sandbox.hubspot_contacts())
    assert run.read_count == CONTACTS
    assert run.created_count == Contact.objects.count()
    assert Contact.objects.exclude(email=None).count() == len(wanted) == run.pushed_count
    assert_consistent(sandbox)
    unsubscribed = [m for m in sandbox.mailchimp_members() if m["status"] == "unsubscribed"]
    assert unsubscribed, "the seed has opt-outs; they must arrive unsubscribed"
    requests = sandbox.stats()["requests"]
    assert run.api_calls["HubSpot"] == sum(requests["hubspot"].values())
    # One batch call, and the merge fields listed once by the schema check.
    assert run.api_calls["Mailchimp"] == sum(requests["mailchimp"].values()) == 2
    assert requests["mailchimp"]["POST /lists/{list_id}"] == requests["mailchimp"][MERGE_FIELDS] == 1


def test_delta_sync_pushes_only_the_changed_contacts(sandbox, sync):
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=2)
    run_now(sync)
    before = {m["email_address"]: m for m in sandbox.mailchimp_members()}
    edited = [same[0] for same in importable(sandbox.hubspot_contacts()).values() if len(same) == 1][:5]
    for number, contact in enumerate(edited):
        hubspot_edit(sandbox, contact["id"], firstname=f"Edited{number}")
    sandbox.reset_stats()

    run = run_now(sync)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    assert (run.updated_count, run.pushed_count) == (5, 5)
    # At most one batch call plus one call per changed member, whatever way the
    # provider writes, besides the schema check's listing of the merge fields; and not
    # one request for the contacts that did not change.
    mailchimp = sandbox.stats()["requests"]["mailchimp"]
    assert mailchimp[MERGE_FIELDS] == 1
    assert sum(mailchimp.values()) <= 2 + len(edited)
    assert mailchimp.get("PATCH /lists/{list_id}/members/{subscriber_hash}", 0) <= len(edited)
    after = {m["email_address"]: m for m in sandbox.mailchimp_members()}
    changed = {email for email in after if after[email] != before[email]}
    assert len(changed) == 5
    assert {after[email]["merge_fields"]["FNAME"] for email in changed} == {f"Edited{n}" for n in range(5)}
    assert_consistent(sandbox)


def test_a_second_run_without_changes_makes_no_write_calls(sandbox, sync):
    sandbox.seed(hubspot_contacts=CONTACTS, hostile=True, random_seed=3)
    run_now(sync)
    sandbox.reset_stats()
    run = run_now(sync)
    stats = sandbox.stats()
    assert stats["writes"] == 0
    # Nothing to write: Mailchimp is not asked at all, not even for its merge fields,
    # seen less than SCHEMA_CHECK_INTERVAL_SECONDS ago (services.schema_drift).
    assert stats["requests"].get("mailchimp", {}) == {}
    assert (run.created_count, run.updated_count, run.pushed_count) == (0, 0, 0)


def test_injected_429s_and_5xx_still_end_consistent(sandbox, sync):
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=4)
    # Small batches, so that Mailchimp gets enough calls to meet faults too.
    sync.batch_size = 20
    sync.save()
    sandbox.faults(provider="all", rate=0.2, statuses=[429, 500, 503], random_seed=4)
    run = run_now(sync)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    statuses = sandbox.stats()["statuses"]
    for provider in ("hubspot", "mailchimp"):
        assert set(statuses[provider]) - {"200"}, f"faults were injected into {provider}"
    # Every attempt counts as an API call, the retried ones included.
    requests = sandbox.stats()["requests"]
    assert run.api_calls == {"HubSpot": sum(requests["hubspot"].values()),
                             "Mailchimp": sum(requests["mailchimp"].values())}
    sandbox.clear_faults()
    assert_consistent(sandbox)


def test_malformed_emails_become_record_errors_while_every_other_contact_syncs(sandbox, sync, hostile_contacts):
    sandbox.seed(hubspot_contacts=50, hostile=True, random_seed=5)
    run = run_now(sync)
    assert run.status == SyncRun.Status.PARTIAL, run.error
    invalid = {row["email"] for row in hostile_contacts if row["why"].startswith("invalid")}
    errors = RecordError.objects.filter(error_class="invalid_email", connection__name="HubSpot")
    for email in invalid:
        assert any(repr(email) in error.message for error in errors), email
    # Mailchimp's own rules refuse a few more (unicode addresses, a 10,000-character
    # name): record errors too, with the reason, while the rest still syncs.
    assert refused_by_mailchimp() == {"josé@example.com", "user@bücher.example", "long@example.com"}
    assert_consistent(sandbox)
