"""The status a record created in an email platform gets (engine.consent.new_record_consent)."""
import pytest

from syncapp.engine.consent import RESTRICTIVENESS, new_record_consent

MAILCHIMP = ("pending", "transactional", "subscribed")


def decide(hub, remote=None, chosen=""):
    return new_record_consent(hub_state=hub, remote_state=remote, chosen=chosen, offered=MAILCHIMP)


@pytest.mark.parametrize(
    "hub, remote, chosen, expected",
    [
        # The hub knows: its state, whatever was chosen.
        ("subscribed", None, "", "subscribed"),
        ("subscribed", None, "pending", "subscribed"),
        ("pending", None, "subscribed", "pending"),
        ("transactional", None, "subscribed", "transactional"),
        ("unsubscribed", None, "subscribed", "unsubscribed"),
        ("cleaned", None, "subscribed", "cleaned"),
        # The hub does not know: the marketer's choice, or nothing at all.
        ("unknown", None, "", None),
        (None, None, "", None),
        ("unknown", None, "pending", "pending"),
        ("unknown", None, "transactional", "transactional"),
        ("unknown", None, "subscribed", "subscribed"),
        # A choice the system does not offer is no choice.
        ("unknown", None, "unsubscribed", None),
        ("unknown", None, "<script>", None),
        # What that system held before (a record created again after a delete) is never loosened.
        ("unknown", "unsubscribed", "subscribed", "unsubscribed"),
        ("subscribed", "unsubscribed", "subscribed", "unsubscribed"),
        ("subscribed", "cleaned", "", "cleaned"),
        ("pending", "transactional", "", "transactional"),
        # ... but a subscription held there before is not the person's consent here and now.
        ("unknown", "subscribed", "", None),
        ("unknown", "subscribed", "pending", "pending"),
        ("unknown", "unknown", "", None),
    ],
)
def test_the_status_of_a_new_record(hub, remote, chosen, expected):
    assert decide(hub, remote, chosen) == expected


@pytest.mark.parametrize(
    "hub", [state for state in RESTRICTIVENESS if RESTRICTIVENESS[state] > RESTRICTIVENESS["subscribed"]]
)
@pytest.mark.parametrize("chosen", ["", *MAILCHIMP])
@pytest.mark.parametrize("remote", [None, *RESTRICTIVENESS])
def test_a_known_opt_out_or_restriction_never_becomes_a_subscription(hub, chosen, remote):
    assert decide(hub, remote, chosen) != "subscribed"
    assert RESTRICTIVENESS[decide(hub, remote, chosen)] >= RESTRICTIVENESS[hub]


@pytest.mark.parametrize("remote", [None, *RESTRICTIVENESS])
def test_without_a_choice_an_unknown_consent_is_never_created_subscribed(remote):
    assert decide("unknown", remote, "") != "subscribed"


def test_a_system_without_subscription_statuses_takes_only_the_hubs_state():
    assert new_record_consent(hub_state="unknown", remote_state=None, chosen="subscribed", offered=()) is None
    assert new_record_consent(hub_state="unsubscribed", remote_state=None, chosen="", offered=()) == "unsubscribed"
