"""The email consent rule: the most restrictive state wins, and sync never re-subscribes.

A re-subscribe crosses systems only as an explicit opt-in newer than the opt-out it lifts.
"""
from datetime import UTC, datetime, timedelta

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
    ConsentDecision,
    Holder,
    UnknownConsentState,
    address_consent,
    merge_consent,
    merge_email_consent,
    most_restrictive,
    outgoing_consent,
    outgoing_email_consent,
    reply_statement,
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


OPTED_OUT = datetime(2026, 3, 1, tzinfo=UTC)
BEFORE, AFTER = OPTED_OUT - timedelta(days=1), OPTED_OUT + timedelta(days=1)


class TestMergeConsent:
    """merge_consent: the ledger's rule with explicit opt-ins (a system's own opt-in time)."""

    # (case, base, theirs, ours, opted_in_at, opted_out_at, expected state, explicit opt-in)
    CASES = [
        ("an unsubscribe from a system wins", SUBSCRIBED, UNSUBSCRIBED, SUBSCRIBED, None, None, UNSUBSCRIBED, False),
        ("a hard bounce wins over everything", SUBSCRIBED, CLEANED, UNSUBSCRIBED, None, None, CLEANED, False),
        ("pending restricts a subscription", None, PENDING, SUBSCRIBED, None, None, PENDING, False),
        ("transactional restricts a subscription", SUBSCRIBED, TRANSACTIONAL, SUBSCRIBED, None, None,
         TRANSACTIONAL, False),
        ("a first statement fills an unknown hub", None, SUBSCRIBED, UNKNOWN, None, None, SUBSCRIBED, False),
        ("no statement changes nothing", SUBSCRIBED, None, UNSUBSCRIBED, AFTER, OPTED_OUT, UNSUBSCRIBED, False),
        ("'unknown' is no statement", SUBSCRIBED, UNKNOWN, SUBSCRIBED, None, None, SUBSCRIBED, False),
        ("a double opt-in confirmation is taken", PENDING, SUBSCRIBED, PENDING, None, None, SUBSCRIBED, False),
        # Re-subscribes.
        ("an opt-in newer than the opt-out lifts an unsubscribe", UNSUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED,
         AFTER, OPTED_OUT, SUBSCRIBED, True),
        ("a system still holding its old subscribed state lifts nothing", SUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED,
         AFTER, OPTED_OUT, UNSUBSCRIBED, False),
        ("an opt-in newer than the opt-out lifts pending", None, SUBSCRIBED, PENDING, AFTER, OPTED_OUT,
         SUBSCRIBED, True),
        ("an opt-in newer than the opt-out lifts transactional", TRANSACTIONAL, SUBSCRIBED, TRANSACTIONAL,
         AFTER, OPTED_OUT, SUBSCRIBED, True),
        ("an opt-in older than the opt-out does not", UNSUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED, BEFORE, OPTED_OUT,
         UNSUBSCRIBED, False),
        ("an opt-in at the very instant of the opt-out does not", UNSUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED,
         OPTED_OUT, OPTED_OUT, UNSUBSCRIBED, False),
        ("a subscribed without an opt-in time does not", UNSUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED, None, OPTED_OUT,
         UNSUBSCRIBED, False),
        ("an opt-in with no recorded opt-out to compare does not", UNSUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED, AFTER,
         None, UNSUBSCRIBED, False),
        ("nothing lifts a hard bounce", UNSUBSCRIBED, SUBSCRIBED, CLEANED, AFTER, OPTED_OUT, CLEANED, False),
        ("an opt-in is not a restriction's statement", UNSUBSCRIBED, PENDING, UNSUBSCRIBED, AFTER, OPTED_OUT,
         UNSUBSCRIBED, False),
    ]

    @pytest.mark.parametrize(("case", "base", "theirs", "ours", "opted_in_at", "opted_out_at", "state", "explicit"),
                             CASES, ids=[row[0] for row in CASES])
    def test_cases(self, case, base, theirs, ours, opted_in_at, opted_out_at, state, explicit):
        decision = merge_consent(base=base, theirs=theirs, ours=ours, opted_in_at=opted_in_at,
                                 opted_out_at=opted_out_at)
        assert decision == ConsentDecision(state, explicit_opt_in=explicit)

    @given(base=st.one_of(st.none(), states), theirs=st.one_of(st.none(), states), ours=states,
           opted_in_at=st.one_of(st.none(), st.sampled_from([BEFORE, OPTED_OUT, AFTER])),
           opted_out_at=st.one_of(st.none(), st.just(OPTED_OUT)))
    def test_only_a_newer_explicit_opt_in_ever_loosens(self, base, theirs, ours, opted_in_at, opted_out_at):
        decision = merge_consent(base=base, theirs=theirs, ours=ours, opted_in_at=opted_in_at,
                                 opted_out_at=opted_out_at)
        assert decision.state in (ours, theirs)
        loosened = RESTRICTIVENESS[decision.state] < RESTRICTIVENESS[ours] and ours != UNKNOWN
        is_confirmation = (base, theirs, ours) == (PENDING, SUBSCRIBED, PENDING)
        if loosened and not is_confirmation:
            assert decision.explicit_opt_in
        if decision.explicit_opt_in:
            assert decision.state == SUBSCRIBED and ours != CLEANED
            assert opted_in_at is not None and opted_out_at is not None and opted_in_at > opted_out_at


# Mailchimp can be told "unsubscribed" and "cleaned" about an existing member; HubSpot's
# opt-out flag only "unsubscribed".
AUDIENCE = frozenset({UNSUBSCRIBED, CLEANED})
OPT_OUT_FLAG = frozenset({UNSUBSCRIBED})


class TestOutgoingConsent:
    """outgoing_consent: what a system is told, given what it holds and what it can hold."""

    # (case, hub state, remote state, writable, explicit opt-in, sent)
    CASES = [
        ("no statement in the hub: nothing is sent", UNKNOWN, SUBSCRIBED, None, False, None),
        ("a new record gets the hub's state", SUBSCRIBED, None, None, False, SUBSCRIBED),
        ("a new record may be created pending", PENDING, None, None, False, PENDING),
        ("a new record may be created unsubscribed", UNSUBSCRIBED, None, None, False, UNSUBSCRIBED),
        ("an opt-out reaches a subscribed member", UNSUBSCRIBED, SUBSCRIBED, AUDIENCE, False, UNSUBSCRIBED),
        ("a hard bounce reaches a subscribed member", CLEANED, SUBSCRIBED, AUDIENCE, False, CLEANED),
        ("a hard bounce outranks an unsubscribe there", CLEANED, UNSUBSCRIBED, AUDIENCE, False, CLEANED),
        ("a hard bounce reaches a CRM as its opt-out", CLEANED, None, OPT_OUT_FLAG, False, UNSUBSCRIBED),
        ("an opt-out reaches a CRM", UNSUBSCRIBED, None, OPT_OUT_FLAG, False, UNSUBSCRIBED),
        ("an opt-out already held is stated again (the base tells it is not news)", UNSUBSCRIBED, UNSUBSCRIBED,
         AUDIENCE, False, UNSUBSCRIBED),
        ("subscribed cannot be written to an existing record", SUBSCRIBED, None, AUDIENCE, False, None),
        ("pending cannot be approached by a writable state", PENDING, SUBSCRIBED, AUDIENCE, False, None),
        ("transactional neither", TRANSACTIONAL, SUBSCRIBED, OPT_OUT_FLAG, False, None),
        ("never loosens a remote opt-out", SUBSCRIBED, UNSUBSCRIBED, None, False, None),
        ("never loosens a remote hard bounce", UNSUBSCRIBED, CLEANED, AUDIENCE, False, None),
        ("never confirms a remote pending", SUBSCRIBED, PENDING, None, False, None),
        ("'unknown' remote is no state", SUBSCRIBED, UNKNOWN, None, False, SUBSCRIBED),
        # Explicit opt-ins.
        ("an explicit opt-in lifts a remote opt-out", SUBSCRIBED, UNSUBSCRIBED, AUDIENCE, True, SUBSCRIBED),
        ("an explicit opt-in lifts a remote pending", SUBSCRIBED, PENDING, AUDIENCE, True, SUBSCRIBED),
        ("an explicit opt-in lifts a remote transactional", SUBSCRIBED, TRANSACTIONAL, None, True, SUBSCRIBED),
        ("an explicit opt-in never lifts a hard bounce", SUBSCRIBED, CLEANED, AUDIENCE, True, None),
        ("an explicit opt-in goes as subscribed to a new record", SUBSCRIBED, None, None, True, SUBSCRIBED),
        ("an explicit opt-in is not sent where subscribed cannot be written", SUBSCRIBED, SUBSCRIBED, AUDIENCE,
         True, None),
    ]

    @pytest.mark.parametrize(("case", "hub", "remote", "writable", "explicit", "sent"), CASES,
                             ids=[row[0] for row in CASES])
    def test_cases(self, case, hub, remote, writable, explicit, sent):
        assert outgoing_consent(hub, remote, writable=writable, explicit_opt_in=explicit) == sent

    @given(hub=states, remote=st.one_of(st.none(), states),
           writable=st.sampled_from([None, AUDIENCE, OPT_OUT_FLAG]), explicit=st.booleans())
    def test_what_is_sent(self, hub, remote, writable, explicit):
        sent = outgoing_consent(hub, remote, writable=writable, explicit_opt_in=explicit)
        if sent is None:
            return
        # Never looser than what the system holds, unless an explicit opt-in lifts it.
        if remote not in (None, UNKNOWN) and RESTRICTIVENESS[sent] < RESTRICTIVENESS[remote]:
            assert explicit and sent == SUBSCRIBED and remote != CLEANED
        else:
            # Never looser than the hub's state either, and never a state the system cannot hold.
            assert RESTRICTIVENESS[sent] <= RESTRICTIVENESS[hub] or sent == hub
            assert writable is None or sent in writable or explicit


class TestAddressConsent:
    """address_consent: a restriction on any record holding an address holds for every holder."""

    # (case, the holder, the others holding its address, the holder's state after)
    CASES = [
        ("an opt-out on the other record reaches this one", Holder(UNKNOWN), [Holder(UNSUBSCRIBED)], UNSUBSCRIBED),
        ("it reaches a subscription too", Holder(SUBSCRIBED), [Holder(UNSUBSCRIBED)], UNSUBSCRIBED),
        ("a hard bounce is the address's", Holder(UNSUBSCRIBED), [Holder(CLEANED)], CLEANED),
        ("pending restricts a subscription", Holder(SUBSCRIBED), [Holder(PENDING)], PENDING),
        ("the most restrictive of several wins", Holder(SUBSCRIBED),
         [Holder(PENDING), Holder(CLEANED), Holder(UNSUBSCRIBED)], CLEANED),
        ("a subscription elsewhere is no opt-in here", Holder(UNKNOWN), [Holder(SUBSCRIBED)], UNKNOWN),
        ("nor does it lift an opt-out here", Holder(UNSUBSCRIBED), [Holder(SUBSCRIBED, opted_in_at=AFTER)],
         UNSUBSCRIBED),
        ("alone, a holder keeps its state", Holder(SUBSCRIBED), [], SUBSCRIBED),
        ("a looser restriction elsewhere changes nothing", Holder(CLEANED), [Holder(UNSUBSCRIBED)], CLEANED),
        # Explicit opt-ins.
        ("an explicit opt-in newer than the other's opt-out stands", Holder(SUBSCRIBED, opted_in_at=AFTER),
         [Holder(UNSUBSCRIBED, opted_out_at=OPTED_OUT)], SUBSCRIBED),
        ("one older than it does not", Holder(SUBSCRIBED, opted_in_at=BEFORE),
         [Holder(UNSUBSCRIBED, opted_out_at=OPTED_OUT)], UNSUBSCRIBED),
        ("nor one at the same instant", Holder(SUBSCRIBED, opted_in_at=OPTED_OUT),
         [Holder(UNSUBSCRIBED, opted_out_at=OPTED_OUT)], UNSUBSCRIBED),
        ("nor one facing an opt-out of unknown time", Holder(SUBSCRIBED, opted_in_at=AFTER),
         [Holder(UNSUBSCRIBED)], UNSUBSCRIBED),
        ("no opt-in lifts a hard bounce", Holder(SUBSCRIBED, opted_in_at=AFTER),
         [Holder(CLEANED, opted_out_at=OPTED_OUT)], CLEANED),
        ("an opt-in time without a subscription lifts nothing", Holder(UNKNOWN, opted_in_at=AFTER),
         [Holder(UNSUBSCRIBED, opted_out_at=OPTED_OUT)], UNSUBSCRIBED),
    ]

    @pytest.mark.parametrize(("case", "holder", "others", "state"), CASES, ids=[row[0] for row in CASES])
    def test_cases(self, case, holder, others, state):
        assert address_consent(holder, others) == state

    holders = st.builds(Holder, states, st.one_of(st.none(), st.sampled_from([BEFORE, OPTED_OUT, AFTER])),
                        st.one_of(st.none(), st.just(OPTED_OUT)))

    @given(holder=holders, others=st.lists(holders, max_size=4))
    def test_never_looser_and_every_restriction_held_unless_asked_again(self, holder, others):
        state = address_consent(holder, others)
        assert RESTRICTIVENESS[state] >= RESTRICTIVENESS[holder.state]
        assert state in {holder.state, *(other.state for other in others)}
        for other in others:
            restriction = RESTRICTIVENESS[other.state] > RESTRICTIVENESS[SUBSCRIBED]
            if restriction and RESTRICTIVENESS[other.state] > RESTRICTIVENESS[state]:
                assert holder.state == SUBSCRIBED and other.state != CLEANED
                assert holder.opted_in_at is not None and other.opted_out_at is not None
                assert holder.opted_in_at > other.opted_out_at


class TestReplyStatement:
    """reply_statement: what a system's reply to a write states as its own."""

    # (case, reported, asked, agreed, created, stated)
    CASES = [
        ("an unsubscribe the write did not ask for", UNSUBSCRIBED, None, SUBSCRIBED, False, UNSUBSCRIBED),
        ("a bounce where an unsubscribe was asked", CLEANED, UNSUBSCRIBED, SUBSCRIBED, False, CLEANED),
        ("an opt-out found on a record the write meant to create", UNSUBSCRIBED, None, None, True, UNSUBSCRIBED),
        ("a state never agreed before", SUBSCRIBED, None, None, False, SUBSCRIBED),
        ("the state asked for is an echo", UNSUBSCRIBED, UNSUBSCRIBED, SUBSCRIBED, False, None),
        ("the state already agreed is no news", UNSUBSCRIBED, None, UNSUBSCRIBED, False, None),
        ("the default of a record created without a state", SUBSCRIBED, None, None, True, None),
        ("a pending default too", PENDING, None, None, True, None),
        ("no state in the reply", None, UNSUBSCRIBED, SUBSCRIBED, False, None),
        ("'unknown' is no state", UNKNOWN, None, SUBSCRIBED, False, None),
    ]

    @pytest.mark.parametrize(("case", "reported", "asked", "agreed", "created", "stated"), CASES,
                             ids=[row[0] for row in CASES])
    def test_cases(self, case, reported, asked, agreed, created, stated):
        assert reply_statement(reported=reported, asked=asked, agreed=agreed, created=created) == stated

    @given(reported=st.one_of(st.none(), states), asked=st.one_of(st.none(), states),
           agreed=st.one_of(st.none(), states), created=st.booleans())
    def test_an_opt_out_the_write_did_not_ask_for_is_always_stated(self, reported, asked, agreed, created):
        stated = reply_statement(reported=reported, asked=asked, agreed=agreed, created=created)
        assert stated in (None, reported)
        if reported in (UNSUBSCRIBED, CLEANED) and reported not in (asked, agreed):
            assert stated == reported
