"""The email consent rule: the most restrictive state wins, and sync never re-subscribes."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.consent import (
    CLEANED,
    PENDING,
    RESTRICTIVENESS,
    SUBSCRIBED,
    TRANSACTIONAL,
    UNKNOWN,
    UNSUBSCRIBED,
    UnknownConsentState,
    merge_email_consent,
    most_restrictive,
    outgoing_email_consent,
)
from syncapp.models.hub import ConsentState

states = st.sampled_from(list(RESTRICTIVENESS))


def test_the_rule_knows_every_hub_state():
    assert set(RESTRICTIVENESS) == set(ConsentState.values)


class TestMostRestrictive:
    @pytest.mark.parametrize(
        ("states", "expected"),
        [
            ((SUBSCRIBED, UNSUBSCRIBED), UNSUBSCRIBED),
            ((UNSUBSCRIBED, CLEANED), CLEANED),
            ((SUBSCRIBED, PENDING), PENDING),
            ((SUBSCRIBED, TRANSACTIONAL), TRANSACTIONAL),
            ((UNKNOWN, SUBSCRIBED), SUBSCRIBED),
            ((None, SUBSCRIBED), SUBSCRIBED),
            ((), UNKNOWN),
        ],
    )
    def test_order(self, states, expected):
        assert most_restrictive(*states) == expected

    def test_unknown_values_are_refused(self):
        with pytest.raises(UnknownConsentState, match="'maybe'"):
            most_restrictive(SUBSCRIBED, "maybe")


class TestMergeEmailConsent:
    def test_an_unsubscribe_from_any_system_wins(self):
        assert merge_email_consent(base=SUBSCRIBED, theirs=UNSUBSCRIBED, ours=SUBSCRIBED) == UNSUBSCRIBED

    def test_a_hard_bounce_wins_over_an_unsubscribe(self):
        assert merge_email_consent(base=None, theirs=CLEANED, ours=UNSUBSCRIBED) == CLEANED

    def test_field_sync_never_turns_an_opt_out_into_a_subscription(self):
        assert merge_email_consent(base=UNSUBSCRIBED, theirs=SUBSCRIBED, ours=UNSUBSCRIBED) == UNSUBSCRIBED
        assert merge_email_consent(base=None, theirs=SUBSCRIBED, ours=CLEANED) == CLEANED

    def test_no_statement_changes_nothing(self):
        assert merge_email_consent(base=None, theirs=None, ours=UNSUBSCRIBED) == UNSUBSCRIBED
        assert merge_email_consent(base=None, theirs=UNKNOWN, ours=SUBSCRIBED) == SUBSCRIBED

    def test_a_value_equal_to_the_base_is_no_news(self):
        # The hub was re-subscribed by an explicit opt-in; the stale state read again must not undo it.
        assert merge_email_consent(base=UNSUBSCRIBED, theirs=UNSUBSCRIBED, ours=SUBSCRIBED) == SUBSCRIBED

    def test_a_first_statement_fills_an_unknown_hub(self):
        assert merge_email_consent(base=None, theirs=SUBSCRIBED, ours=UNKNOWN) == SUBSCRIBED

    def test_a_double_opt_in_confirmation_is_taken(self):
        assert merge_email_consent(base=PENDING, theirs=SUBSCRIBED, ours=PENDING) == SUBSCRIBED

    def test_a_confirmation_does_not_undo_an_opt_out_read_elsewhere(self):
        assert merge_email_consent(base=PENDING, theirs=SUBSCRIBED, ours=UNSUBSCRIBED) == UNSUBSCRIBED

    @given(base=st.one_of(st.none(), states), theirs=st.one_of(st.none(), states), ours=states)
    def test_opt_outs_are_never_lifted(self, base, theirs, ours):
        result = merge_email_consent(base=base, theirs=theirs, ours=ours)
        if ours in (UNSUBSCRIBED, CLEANED):
            assert RESTRICTIVENESS[result] >= RESTRICTIVENESS[ours]
        assert result in (ours, theirs)


class TestOutgoingEmailConsent:
    @pytest.mark.parametrize("state", [SUBSCRIBED, PENDING, TRANSACTIONAL, UNSUBSCRIBED, CLEANED])
    def test_a_statement_goes_out_to_a_system_whose_state_is_unknown(self, state):
        assert outgoing_email_consent(state) == state

    def test_no_statement_leaves_the_remote_state_alone(self):
        assert outgoing_email_consent(UNKNOWN) is None
        assert outgoing_email_consent(UNKNOWN, UNSUBSCRIBED) is None

    @pytest.mark.parametrize("remote", [UNSUBSCRIBED, CLEANED])
    def test_never_turns_a_remote_opt_out_into_a_subscription(self, remote):
        assert outgoing_email_consent(SUBSCRIBED, remote) is None

    def test_a_pending_remote_is_not_confirmed_by_the_hub(self):
        assert outgoing_email_consent(SUBSCRIBED, PENDING) is None

    def test_an_opt_out_goes_out_to_a_subscribed_remote(self):
        assert outgoing_email_consent(UNSUBSCRIBED, SUBSCRIBED) == UNSUBSCRIBED

    @given(hub=states, remote=st.one_of(st.none(), states))
    def test_what_goes_out_is_never_looser_than_the_known_remote_state(self, hub, remote):
        sent = outgoing_email_consent(hub, remote)
        if sent is not None and remote is not None:
            assert RESTRICTIVENESS[sent] >= RESTRICTIVENESS[remote]
