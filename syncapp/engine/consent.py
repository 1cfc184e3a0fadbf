"""The email consent rule: the most restrictive state wins, everywhere.

An unsubscribe or a hard bounce (cleaned) read from any system becomes the hub's state
and is pushed to every other system. Field sync never loosens a state: a system saying
"subscribed" does not undo an unsubscribe read elsewhere; a re-subscribe needs an
explicit, newer opt-in event, which is not a field value. The one loosening a field
may carry is a double opt-in confirmation: the system that held the address as pending
reporting it subscribed.

States are the hub's ConsentState values; "unknown" means no statement at all.
"""
from __future__ import annotations

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
