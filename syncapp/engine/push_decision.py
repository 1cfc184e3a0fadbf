"""What to push: whether a system must be sent a contact, decided on plain data.

A pull marks, for the sync, every system it writes that lacks the contact's current
values; a push sends only what the system does not hold. Both ask here. A contact lacks
what a system needs when it has none of the identity keys the system keys its records
by (an email for Mailchimp, a phone for an SMS platform): it is "not applicable" there,
waiting without an error until it has them.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import StrEnum
from typing import Any

_ABSENT: Any = object()
# The hub's identity keys, as providers name them in `RecordKeys`.
KEY_WORDS = {"email": "an email address", "phone": "a phone number"}


class Verdict(StrEnum):
    # The system lacks something: mark the contact pending there.
    SEND = "send"
    # The system holds everything the sync would send.
    UP_TO_DATE = "up_to_date"
    # The contact lacks a key the system needs to hold its record: it waits, no error.
    NOT_APPLICABLE = "not_applicable"
    # The record there was deleted: nothing is sent any more (delete handling).
    ARCHIVED = "archived"
    # Already marked for this sync: nothing to add.
    MARKED = "marked"
    # A same-email duplicate under review: not sent until a reviewer merges it.
    ON_HOLD = "on_hold"


def keys_missing(needed: Collection[str], *, email: str | None, phone: str | None) -> tuple[str, ...]:
    """Return the identity keys in `needed` the contact does not have, in their order."""
    if not needed:
        return ()
    # Asked for every contact and system of a page: no dict built per call.
    return tuple(key for key in needed if not (email if key == "email" else phone if key == "phone" else None))


def keys_needed(*, exists_there: bool, to_create: Collection[str], to_update: Collection[str]) -> Collection[str]:
    """Return the keys a contact needs to be written to a system: to update its record there, or to create one."""
    return to_update if exists_there else to_create


def not_applicable_reason(system: str, missing: Collection[str]) -> str:
    """Say why a contact is not sent to a system, for the contact page."""
    wanted = " and ".join(KEY_WORDS.get(key, key) for key in missing)
    return f"{system} keys its records by {wanted}, which this contact does not have."


def push_verdict(
    *,
    missing: Collection[str],
    linked: bool,
    archived: bool = False,
    marked: bool = False,
    on_hold: bool = False,
    differs: Callable[[], bool],
) -> Verdict:
    """Decide whether a pull marks a contact pending for one system the sync writes.

    `missing` are the keys the contact lacks there (`keys_missing`); `linked` says the
    hub knows the contact's record there (else everything it holds is news); `differs`
    is asked last, only when the rest leaves the question open (it builds a payload).
    """
    if on_hold:
        return Verdict.ON_HOLD
    if missing:
        return Verdict.NOT_APPLICABLE
    if not linked:
        return Verdict.SEND
    if archived:
        return Verdict.ARCHIVED
    if marked:
        return Verdict.MARKED
    return Verdict.SEND if differs() else Verdict.UP_TO_DATE


def payload_differs(
    fields: Mapping[str, Any],
    held: Mapping[str, Any],
    *,
    exists_there: bool,
    email_consent: str | None,
    email_consent_held: str,
    exact: Collection[str] = (),
    same_in_hub_form: Callable[[str, Any, Any], bool],
) -> bool:
    """Return whether a payload says anything a system does not hold already.

    `held` is the merge base with that system (external field -> value). A value the
    system holds in another spelling of the same hub value ("ANA@X.COM" for ana@x.com,
    a phone in national format) is not a difference, as `same_in_hub_form(field, held,
    value)` says: the sync never rewrites a system's data only to restyle it. Fields in
    `exact` (a backfill changed how they are written) are compared as written.
    """
    if not exists_there:
        return True
    for name, value in fields.items():
        current = held.get(name, _ABSENT)
        if current == value:
            continue
        if current is _ABSENT or name in exact or not same_in_hub_form(name, current, value):
            return True
    return email_consent is not None and email_consent != email_consent_held

