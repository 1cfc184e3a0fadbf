"""The consent rule: the most restrictive state wins, everywhere.

An unsubscribe or a hard bounce (cleaned) read from any system becomes the hub's state
and is pushed to every other system. Field sync never loosens a state: a system saying
"subscribed" does not undo an unsubscribe read elsewhere; a re-subscribe needs an
explicit, newer opt-in event, which is not a field value. The one loosening a field
may carry is a double opt-in confirmation: the system that held the address as pending
reporting it subscribed.

A re-subscribe after an opt-out crosses systems only as an explicit opt-in (a system's
own opt-in time, or a user recording one) newer than the opt-out it overrides.

Consent belongs to the address (email) or the number (SMS), not to a record: a
restriction stated on any record holding it holds for every contact holding it,
whatever identity decided (`address_consent`). And a state a system reports in reply
to a write is a statement of that system, as one read from it is (`reply_statement`).

States are the hub's ConsentState values; "unknown" means no statement at all.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

UNKNOWN = "unknown"
SUBSCRIBED = "subscribed"
PENDING = "pending"
TRANSACTIONAL = "transactional"
UNSUBSCRIBED = "unsubscribed"
CLEANED = "cleaned"

# Higher is more restrictive. Pending (awaiting confirmation) and transactional (no
# marketing) both forbid marketing email that subscribed allows; cleaned (the address
# bounces) outranks an unsubscribe because it holds whatever the person wants.
RESTRICTIVENESS = {UNKNOWN: 0, SUBSCRIBED: 1, PENDING: 2, TRANSACTIONAL: 3, UNSUBSCRIBED: 4, CLEANED: 5}


class UnknownConsentState(ValueError):
    """A consent value that is not one of the hub's states."""


def _rank(state: str) -> int:
    try:
        return RESTRICTIVENESS[state]
    except KeyError:
        raise UnknownConsentState(f"{state!r} is not a consent state ({', '.join(RESTRICTIVENESS)})") from None


def most_restrictive(*states: str | None) -> str:
    """Return the most restrictive of `states`; None and "unknown" say nothing."""
    known = [state for state in states if state is not None]
    return max(known, key=_rank, default=UNKNOWN)


def merge_email_consent(*, base: str | None, theirs: str | None, ours: str) -> str:
    """Return the hub's email consent after reading `theirs` from a system.

    `base` is the state last agreed with that system (None when never agreed). A value
    equal to the base is no news; no statement (None, "unknown") changes nothing.
    """
    if theirs is None or theirs == UNKNOWN or theirs == base:
        return ours
    if theirs == SUBSCRIBED and base == PENDING and ours == PENDING:
        return SUBSCRIBED
    return most_restrictive(ours, theirs)


# States an explicit opt-in may lift. A cleaned address bounces: no opt-in makes it
# deliverable again, so it stays cleaned until the address changes.
LIFTABLE = frozenset({PENDING, TRANSACTIONAL, UNSUBSCRIBED})


@dataclass(frozen=True)
class ConsentDecision:
    state: str
    # The new state rests on an explicit opt-in (and may be sent where an opt-out is held).
    explicit_opt_in: bool = False


def merge_consent(
    *,
    base: str | None,
    theirs: str | None,
    ours: str,
    opted_in_at: datetime | None = None,
    opted_out_at: datetime | None = None,
) -> ConsentDecision:
    """Return the hub's consent after a system stated `theirs`, explicit opt-ins included.

    `opted_in_at` is the system's own time of the person's opt-in (Mailchimp's
    timestamp_opt), when it reports one; `opted_out_at` when the hub's restriction was
    recorded. A "subscribed" with an opt-in newer than the opt-out is the person asking
    again, and lifts the restriction; without such evidence the most restrictive wins.
    """
    if (
        theirs == SUBSCRIBED
        and theirs != base
        and ours in LIFTABLE
        and opted_in_at is not None
        and opted_out_at is not None
        and opted_in_at > opted_out_at
    ):
        return ConsentDecision(SUBSCRIBED, explicit_opt_in=True)
    return ConsentDecision(merge_email_consent(base=base, theirs=theirs, ours=ours))


def outgoing_consent(
    hub_state: str,
    remote_state: str | None,
    *,
    writable: Collection[str] | None = None,
    explicit_opt_in: bool = False,
) -> str | None:
    """Return the consent state to send to a system, or None to leave its state alone.

    `remote_state` is the state last agreed with that system (None when unknown).
    `writable` is what the system can be told about an existing record (None: any
    state, as for a record being created). A state it cannot hold is sent as the most
    restrictive state it can hold that is no looser (a hard bounce reaches a CRM as an
    opt-out); a state it cannot approach at all is not sent: sending it would change
    nothing there and be sent again every run. An explicit opt-in is sent even where
    an opt-out is held, and only then may a state be looser than the remote one.
    """
    if _rank(hub_state) == 0:
        return None
    if explicit_opt_in and hub_state == SUBSCRIBED and remote_state in LIFTABLE:
        return SUBSCRIBED
    state = hub_state
    if writable is not None and state not in writable:
        lower = [candidate for candidate in writable if _rank(candidate) <= _rank(state)]
        if not lower:
            return None
        state = max(lower, key=_rank)
    if remote_state is not None and remote_state != UNKNOWN and _rank(state) < _rank(remote_state):
        return None
    return state


def new_record_consent(
    *, hub_state: str | None, remote_state: str | None, chosen: str | None, offered: Collection[str]
) -> str | None:
    """Return the email consent state a record created in a system gets; None: it must not be created.

    The hub's state, where it knows one, by the consent rule (never looser than what
    that system last held: a record created again after a delete keeps its opt-out).
    Where the hub knows nothing, a restriction the system held before still holds;
    otherwise the state a marketer chose for new records (`chosen`, one of the system's
    `offered` states), and with no choice nothing: an unknown consent is never made a
    subscription by default.
    """
    hub_state = hub_state or UNKNOWN
    remote_state = remote_state if remote_state in RESTRICTIVENESS and remote_state != UNKNOWN else None
    decided = outgoing_consent(hub_state, remote_state)
    if decided is not None:
        return decided
    if remote_state is not None and _rank(remote_state) > _rank(SUBSCRIBED):
        return remote_state
    if chosen and chosen in offered:
        return chosen
    return None


def email_consent_to_send(
    *,
    hub_state: str,
    remote_state: str | None,
    opted_in: bool,
    asked_state: str | None,
    writable: Collection[str] | None,
    record_exists: bool,
) -> tuple[str | None, bool]:
    """Return the email consent to send to a system (None: leave it alone), and whether it is an explicit opt-in.

    `remote_state` is the state last agreed with that system (None when never);
    `opted_in` whether the hub holds the time of an explicit opt-in behind its
    subscription; `asked_state` the state the system records an explicit opt-in as
    (Provider.explicit_opt_in_state; None: it cannot carry one to an opted-out record);
    `writable` as for `outgoing_consent`; `record_exists` whether the record is known
    there (False: the write creates it).

    An explicit opt-in goes only over an unsubscribe, and only to a system that can
    carry one (Mailchimp, as a confirmation request); the others keep their opt-out.
    It is explicit only if the subscription is what is sent. A record created again
    (restored after a delete) keeps the restriction it had there, where the hub's state
    would not be sent: the system's default for new records would drop it.
    """
    explicit = asked_state is not None and hub_state == SUBSCRIBED and remote_state == UNSUBSCRIBED and opted_in
    consent = outgoing_consent(hub_state, remote_state, writable=writable, explicit_opt_in=explicit)
    explicit = explicit and consent == SUBSCRIBED
    if (consent is None and not record_exists and remote_state
            and RESTRICTIVENESS[remote_state] > RESTRICTIVENESS[SUBSCRIBED]):
        consent = remote_state
    return consent, explicit


def state_asked(*, sent: str | None, explicit_opt_in: bool, asked_state: str | None) -> str | None:
    """Return the state a write asks a system to hold (None: none), as it will read back.

    `sent` is the email consent written; an explicit opt-in sent to an opted-out record
    leaves it in the system's confirmation state (`asked_state`; Mailchimp: pending),
    not subscribed: the person has yet to confirm there.
    """
    return asked_state if explicit_opt_in and asked_state else sent


def explicit_opt_in_applies(*, requested_state: str, previous_state: str | None, explicit: bool) -> bool:
    """Return whether a user's statement of `requested_state` counts as an explicit opt-in.

    It does when the user says the person asked (`explicit`) for a subscription, over
    any state but cleaned: no opt-in makes a bouncing address deliverable. Unlike a
    system's opt-in (`merge_consent`), a user's needs no restriction to lift and no
    opt-out time to be newer than: over no state or a subscription it still records
    the moment the person asked.
    """
    return bool(explicit) and requested_state == SUBSCRIBED and previous_state != CLEANED


def opt_in_moment_after(
    *, current: datetime | None, state: str, explicit_opt_in: bool, moment: datetime | None
) -> datetime | None:
    """Return the time of the explicit opt-in behind a contact's email subscription after a consent decision.

    `current` is the time held before; `state` the hub's email consent decided;
    `explicit_opt_in` whether the decision rests on an explicit opt-in given at
    `moment`. An opt-in time stands only behind a subscription: any other state drops
    it, and a later subscription needs a new opt-in. Otherwise it is kept.

    The callers reach it with different states. A read (pull) may decide "unknown"
    (nothing stated anywhere), which drops the time. A user's statement
    (consent_ledger.consent_statement_record) tested "more restrictive than
    subscribed", which would keep it over "unknown", but a statement's state is never
    "unknown", so the two agree on every state it reaches. A state reported in reply
    to a write (consent_reports_apply) is never explicit and is applied only when it
    changes the hub's state, so a stale time beside an unchanged restriction is left
    there, where a read would drop it.
    """
    if explicit_opt_in:
        return moment
    if state != SUBSCRIBED:
        return None
    return current


def outgoing_email_consent(hub_state: str, remote_state: str | None = None) -> str | None:
    """Return the consent state to send to a system, or None to leave its state alone.

    `remote_state` is the state last agreed with that system, when known. The hub's
    state is sent unless it says nothing, or unless it is looser than what the system
    is known to hold: that would turn an opt-out there into a subscription.
    """
    if _rank(hub_state) == 0:
        return None
    if remote_state is not None and _rank(hub_state) < _rank(remote_state):
        return None
    return hub_state


@dataclass(frozen=True)
class Holder:
    """One contact holding an address (or number), as the address rule sees it.

    `state` is its state on the channel; `opted_in_at` when the explicit opt-in behind
    its subscription was given, if one was; `opted_out_at` when its restriction was
    stated, if recorded.
    """

    state: str
    opted_in_at: datetime | None = None
    opted_out_at: datetime | None = None


def address_consent(holder: Holder, others: Iterable[Holder]) -> str:
    """Return the state `holder` must have, given the other contacts holding its address.

    Consent belongs to the address, not to a record: a restriction (pending,
    transactional, unsubscribed, cleaned) stated on any holder applies to every holder,
    whether identity made one contact of them, two, or a pair waiting for review. A
    subscription is not spread: it restricts nothing, and another record's is no opt-in
    of this one. The one restriction a holder is spared is one its own explicit opt-in
    is newer than (the person asked again after it); a cleaned address stays cleaned.
    The result is never looser than the holder's own state.
    """
    restrictions = []
    for other in others:
        if _rank(other.state) <= _rank(SUBSCRIBED):
            continue
        asked_again = (
            holder.state == SUBSCRIBED
            and holder.opted_in_at is not None
            and other.state in LIFTABLE
            and other.opted_out_at is not None
            and holder.opted_in_at > other.opted_out_at
        )
        if not asked_again:
            restrictions.append(other.state)
    return most_restrictive(holder.state, *restrictions)


def reply_statement(*, reported: str | None, asked: str | None, agreed: str | None, created: bool) -> str | None:
    """Return the state a system's reply to a write states as its own, or None when it states nothing new.

    `reported` is the state the reply says the record holds; `asked` what the write
    asked for (None: nothing); `agreed` the state last agreed with that system; `created`
    whether the write created the record there (as far as Syncapp knew). The reply
    echoes the write when it reports what was asked, or, for a record created without a
    state, a state no looser than the system's default for new records could be (an
    opt-out or a bounce is never a default). Otherwise it is the system's own state,
    news unless it is the one already agreed: it counts as a read of it would.
    """
    if reported is None or reported == UNKNOWN or reported == asked or reported == agreed:
        return None
    if created and asked is None and _rank(reported) < _rank(UNSUBSCRIBED):
        return None
    return reported
