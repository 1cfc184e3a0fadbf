"""Explicit opt-ins in the consent rule: what is sent, what a write asks, and the opt-in time kept.

An explicit opt-in is the one way a restriction is lifted; these rules decide where it
goes and what it leaves on the contact. No database: the engine is pure.
"""
from datetime import UTC, datetime

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
    email_consent_to_send,
    explicit_opt_in_applies,
    opt_in_moment_after,
    state_asked,
)

states = st.sampled_from(list(RESTRICTIVENESS))
CRM = frozenset({SUBSCRIBED, UNSUBSCRIBED})  # a system that cannot hold pending, transactional or cleaned
EARLIER = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2024, 6, 1, tzinfo=UTC)


def send(hub_state, remote_state, *, opted_in=False, asked_state=PENDING, writable=None, record_exists=True):
    return email_consent_to_send(hub_state=hub_state, remote_state=remote_state, opted_in=opted_in,
                                 asked_state=asked_state, writable=writable, record_exists=record_exists)


class TestEmailConsentToSend:
    @pytest.mark.parametrize(
        ("hub_state", "remote_state", "opted_in", "asked_state", "expected"),
        [
            # An explicit opt-in over an unsubscribe reaches a system that can carry one.
            (SUBSCRIBED, UNSUBSCRIBED, True, PENDING, (SUBSCRIBED, True)),
            # Without the hub's opt-in time, a subscription never loosens an opt-out.
            (SUBSCRIBED, UNSUBSCRIBED, False, PENDING, (None, False)),
            # A system that cannot carry an opt-in to an opted-out record keeps its opt-out.
            (SUBSCRIBED, UNSUBSCRIBED, True, None, (None, False)),
            # Only an unsubscribe is lifted so: a bounce stays, and pending waits for the person.
            (SUBSCRIBED, CLEANED, True, PENDING, (None, False)),
            (SUBSCRIBED, PENDING, True, PENDING, (None, False)),
            (SUBSCRIBED, TRANSACTIONAL, True, PENDING, (None, False)),
            # Where nothing is held against it, a subscription is sent, but is no opt-in.
            (SUBSCRIBED, SUBSCRIBED, True, PENDING, (SUBSCRIBED, False)),
            (SUBSCRIBED, None, True, PENDING, (SUBSCRIBED, False)),
            # Restrictions are sent as ever.
            (UNSUBSCRIBED, SUBSCRIBED, False, PENDING, (UNSUBSCRIBED, False)),
            (CLEANED, UNSUBSCRIBED, True, PENDING, (CLEANED, False)),
            # No statement sends nothing.
            (UNKNOWN, UNSUBSCRIBED, True, PENDING, (None, False)),
        ],
    )
    def test_to_an_existing_record(self, hub_state, remote_state, opted_in, asked_state, expected):
        assert send(hub_state, remote_state, opted_in=opted_in, asked_state=asked_state) == expected

    def test_an_explicit_opt_in_goes_out_whatever_states_the_system_can_otherwise_be_told(self):
        # Carrying an opt-in is the provider's own way (Mailchimp asks the person to
        # confirm), apart from the states it can be written.
        assert send(SUBSCRIBED, UNSUBSCRIBED, opted_in=True, writable=frozenset({UNSUBSCRIBED})) == (SUBSCRIBED, True)

    def test_an_opt_in_reaches_a_system_that_holds_only_subscribed_and_unsubscribed(self):
        assert send(SUBSCRIBED, UNSUBSCRIBED, opted_in=True, writable=CRM) == (SUBSCRIBED, True)

    def test_a_bounce_reaches_a_crm_as_an_opt_out(self):
        assert send(CLEANED, SUBSCRIBED, writable=CRM) == (UNSUBSCRIBED, False)

    @pytest.mark.parametrize(
        ("hub_state", "remote_state", "expected"),
        [
            # A record created again (restored after a delete) keeps the restriction it had there.
            (SUBSCRIBED, UNSUBSCRIBED, (UNSUBSCRIBED, False)),
            (SUBSCRIBED, CLEANED, (CLEANED, False)),
            (UNKNOWN, PENDING, (PENDING, False)),
            (UNKNOWN, TRANSACTIONAL, (TRANSACTIONAL, False)),
            # A subscription held there before is no restriction to keep: nothing decides it.
            (UNKNOWN, SUBSCRIBED, (None, False)),
            (UNKNOWN, None, (None, False)),
            # The hub's state, where sent, wins as ever.
            (CLEANED, UNSUBSCRIBED, (CLEANED, False)),
            (SUBSCRIBED, None, (SUBSCRIBED, False)),
        ],
    )
    def test_to_a_record_being_created(self, hub_state, remote_state, expected):
        assert send(hub_state, remote_state, record_exists=False) == expected

    def test_an_explicit_opt_in_lifts_the_opt_out_of_a_record_created_again(self):
        assert send(SUBSCRIBED, UNSUBSCRIBED, opted_in=True, record_exists=False) == (SUBSCRIBED, True)

    def test_an_existing_record_keeps_its_restriction_by_not_being_sent_one(self):
        assert send(UNKNOWN, UNSUBSCRIBED, record_exists=True) == (None, False)

    @given(hub_state=states, remote_state=st.one_of(st.none(), states), asked_state=st.sampled_from([None, PENDING]),
           writable=st.sampled_from([None, CRM]), record_exists=st.booleans())
    def test_a_send_never_loosens_a_restriction_without_an_explicit_opt_in(
        self, hub_state, remote_state, asked_state, writable, record_exists
    ):
        consent, explicit = send(hub_state, remote_state, opted_in=False, asked_state=asked_state,
                                 writable=writable, record_exists=record_exists)
        assert not explicit
        if consent is not None and remote_state is not None:
            assert RESTRICTIVENESS[consent] >= RESTRICTIVENESS[remote_state]

    @given(hub_state=states, remote_state=st.one_of(st.none(), states), opted_in=st.booleans(),
           asked_state=st.sampled_from([None, PENDING]), writable=st.sampled_from([None, CRM]),
           record_exists=st.booleans())
    def test_an_explicit_opt_in_only_ever_sends_a_subscription_over_an_unsubscribe(
        self, hub_state, remote_state, opted_in, asked_state, writable, record_exists
    ):
        consent, explicit = send(hub_state, remote_state, opted_in=opted_in, asked_state=asked_state,
                                 writable=writable, record_exists=record_exists)
        if explicit:
            assert (consent, hub_state, remote_state, opted_in) == (SUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED, True)
            assert asked_state is not None


class TestStateAsked:
    @pytest.mark.parametrize(
        ("sent", "explicit_opt_in", "asked_state", "expected"),
        [
            # An opted-out record asked to confirm holds the confirmation state, not subscribed.
            (SUBSCRIBED, True, PENDING, PENDING),
            # Any other write asks for what it sends.
            (SUBSCRIBED, False, PENDING, SUBSCRIBED),
            (UNSUBSCRIBED, False, PENDING, UNSUBSCRIBED),
            (None, False, PENDING, None),
            # A system with no confirmation state holds what was sent.
            (SUBSCRIBED, True, None, SUBSCRIBED),
        ],
    )
    def test_table(self, sent, explicit_opt_in, asked_state, expected):
        assert state_asked(sent=sent, explicit_opt_in=explicit_opt_in, asked_state=asked_state) == expected


class TestExplicitOptInApplies:
    @pytest.mark.parametrize(
        ("requested_state", "previous_state", "explicit", "expected"),
        [
            # The person asked again: it lifts any restriction but a bounce.
            (SUBSCRIBED, UNSUBSCRIBED, True, True),
            (SUBSCRIBED, PENDING, True, True),
            (SUBSCRIBED, TRANSACTIONAL, True, True),
            (SUBSCRIBED, CLEANED, True, False),
            # Over no restriction it still counts: the moment the person asked is recorded.
            (SUBSCRIBED, SUBSCRIBED, True, True),
            (SUBSCRIBED, UNKNOWN, True, True),
            (SUBSCRIBED, None, True, True),
            # A user's subscription without the person asking is no opt-in.
            (SUBSCRIBED, UNSUBSCRIBED, False, False),
            # Only a subscription is an opt-in.
            (UNSUBSCRIBED, SUBSCRIBED, True, False),
            (PENDING, UNSUBSCRIBED, True, False),
        ],
    )
    def test_table(self, requested_state, previous_state, explicit, expected):
        assert explicit_opt_in_applies(requested_state=requested_state, previous_state=previous_state,
                                       explicit=explicit) is expected


class TestOptInMomentAfter:
    @pytest.mark.parametrize(
        ("current", "state", "explicit_opt_in", "expected"),
        [
            # An explicit opt-in records its moment, replacing any earlier one.
            (None, SUBSCRIBED, True, LATER),
            (EARLIER, SUBSCRIBED, True, LATER),
            # A subscription without a new opt-in keeps the time behind it.
            (EARLIER, SUBSCRIBED, False, EARLIER),
            (None, SUBSCRIBED, False, None),
            # Any other state drops it: a later subscription needs a new opt-in.
            (EARLIER, PENDING, False, None),
            (EARLIER, TRANSACTIONAL, False, None),
            (EARLIER, UNSUBSCRIBED, False, None),
            (EARLIER, CLEANED, False, None),
            (EARLIER, UNKNOWN, False, None),
        ],
    )
    def test_table(self, current, state, explicit_opt_in, expected):
        assert opt_in_moment_after(current=current, state=state, explicit_opt_in=explicit_opt_in,
                                   moment=LATER) == expected

    @given(current=st.sampled_from([None, EARLIER]), state=states)
    def test_only_a_subscription_keeps_an_opt_in_time(self, current, state):
        after = opt_in_moment_after(current=current, state=state, explicit_opt_in=False, moment=LATER)
        assert after == (current if state == SUBSCRIBED else None)
