"""The status new Mailchimp members get, through the sandbox: never `subscribed` by default."""
import pytest

from syncapp.models import RecordError, RecordLink, SyncConnection, SyncRun
from tests.integration.workspace import importable, run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONTACTS = 60


@pytest.fixture
def sync(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=31)
    return sandbox_sync(sandbox)


def choose(sync, status: str, basis: str = "") -> None:
    SyncConnection.objects.filter(sync=sync, connection__name="Mailchimp").update(
        new_member_status=status, new_member_legal_basis=basis)


def people(sandbox) -> tuple[set[str], set[str]]:
    """Return the importable emails opted out in HubSpot, and those whose consent HubSpot does not state."""
    wanted = importable(sandbox.hubspot_contacts())
    opted_out = {email for email, same in wanted.items()
                 if any(contact["properties"].get("hs_email_optout") == "true" for contact in same)}
    return opted_out, set(wanted) - opted_out


def refused_by_mailchimp() -> set[str]:
    """Emails Mailchimp itself refused (malformed for it), apart from those waiting for a status."""
    return set(RecordError.objects.filter(connection__name="Mailchimp", resolved=False, retriable=False)
               .exclude(error_class="not_created").values_list("contact__email", flat=True))


def statuses(sandbox) -> dict[str, str]:
    return {member["email_address"]: member["status"] for member in sandbox.mailchimp_members()}


def test_with_unknown_consent_and_no_choice_no_member_is_created_subscribed(sandbox, sync):
    choose(sync, "")
    opted_out, unknown = people(sandbox)
    assert opted_out and unknown

    run = run_now(sync)
    assert run.status == SyncRun.Status.PARTIAL, run.error
    held = statuses(sandbox)
    assert "subscribed" not in held.values()
    # Opt-outs are known: those members exist, unsubscribed. The others wait.
    assert set(held) == opted_out - refused_by_mailchimp()
    assert set(held.values()) == {"unsubscribed"}
    waiting = RecordError.objects.filter(connection__name="Mailchimp", error_class="not_created", resolved=False)
    assert set(waiting.values_list("contact__email", flat=True)) == unknown - refused_by_mailchimp()
    assert all("Choose the status new members get on the sync page" in error.message for error in waiting)
    # Still to be pushed: kept pending, but not sent again while nothing changes.
    assert RecordLink.objects.filter(connection__name="Mailchimp", external_id=None,
                                     pending_pushes__sync=sync).count() == waiting.count()
    again = run_now(sync)
    assert again.pushed_count == 0 and RecordError.objects.get(pk=waiting.first().pk).attempts == 1


def test_with_pending_chosen_the_waiting_members_are_created_pending(sandbox, sync):
    choose(sync, "")
    run_now(sync)
    choose(sync, "pending")
    run = run_now(sync)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    opted_out, unknown = people(sandbox)
    held = statuses(sandbox)
    refused = refused_by_mailchimp()
    assert {email for email, status in held.items() if status == "pending"} == unknown - refused
    assert {email for email, status in held.items() if status == "unsubscribed"} == opted_out - refused
    assert not RecordError.objects.filter(error_class="not_created", resolved=False).exists()


@pytest.mark.parametrize("chosen", ["subscribed", "pending", "transactional"])
def test_a_known_unsubscribe_creates_an_unsubscribed_member_whatever_is_chosen(sandbox, sync, chosen):
    choose(sync, chosen, "Recorded consent from the signup form")
    run = run_now(sync)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    opted_out, unknown = people(sandbox)
    held = statuses(sandbox)
    refused = refused_by_mailchimp()
    assert all(held[email] == "unsubscribed" for email in opted_out - refused)
    assert all(held[email] == chosen for email in unknown - refused)
