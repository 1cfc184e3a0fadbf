"""Echoes: whether a record read is only Syncapp's own write (or last read) coming back.

After a two-way run pushes into a system, the next delta read lists every record it
wrote, since each was modified after the watermark. Such a record holds exactly what
Syncapp last agreed with that system, and its hub contact has not changed since: the
page machinery (matching, merging, the conflict book, the ledger, the link's write, the
pending marks) would decide nothing for it. `is_echo` recognizes it so that the page
skips it, on plain data; anything else (a value changed there, a consent statement other
than the one agreed, another email or phone, a record restored, an id that moved, a
contact changed in the hub since) gets the full treatment.

Values are compared as the system holds them (the merge base's form), never in hub
form: a base recorded in another spelling (what Syncapp sent, read back normalized)
must be replaced by what the system holds, which only the full treatment does. Two
kinds of field are not in the base after Syncapp created a record there, since a push's
base is what it sent: a field the push left out because the hub holds nothing in it
(the record holds nothing either: no news), and the consent field, whose state travels
apart from the fields (judged by the state last agreed, `email_consent_base`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncapp.engine.merge import is_empty


@dataclass(frozen=True, slots=True)
class Known:
    """What Syncapp last agreed with a system about one record: its link and its contact's state."""

    # External field -> value, as the system held it at the last agreement (the link's merge base).
    merge_base: Mapping[str, Any]
    # The email consent state last agreed with the system ("" when none was).
    email_consent_base: str
    archived: bool
    stable_id: str
    # When the link was last written (a read that changed it, or a push).
    agreed_at: datetime | None
    contact_email: str | None
    contact_phone: str | None
    # When the hub contact last changed.
    contact_changed_at: datetime | None
    # The external fields whose hub value is empty (None, "", [], {}): what a push leaves out.
    # Only those the merge base lacks are asked about.
    empty_in_hub: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Read:
    """One record as a delta read returns it, converted (services.incoming)."""

    # External field -> value as read and cleaned: every mapped field it carries, its
    # email, and the fields the sync only writes there.
    fields: Mapping[str, Any]
    # Its identity keys in hub form (normalized email, E.164 phone; None: not carried).
    email: str | None
    phone: str | None
    stable_id: str
    # Its email consent statement in hub form (None: it states none), and the external
    # field it comes from (None: the sync does not read consent from this system).
    email_consent: str | None
    consent_field: str | None
    # Read whole: no field left out as unreadable, no email typo fixed on the way in.
    whole: bool


def is_echo(read: Read, known: Known) -> bool:
    """Return whether a record read holds only what Syncapp last agreed with the system.

    The caller has matched it by external id to its link. Every field it carries must
    equal the merge base, or be absent from it and empty on both sides; its consent
    statement, if it makes one, must be the state last agreed (Syncapp's own write of a
    state included, which travels apart from the fields); its keys must be the
    contact's; and the contact must not have changed in the hub since the link was last
    agreed: a contact changed since may owe this system or another a push, which only
    the full treatment decides (services.page_marks).
    """
    if not read.whole or known.archived:
        return False
    if read.stable_id and read.stable_id != known.stable_id:
        return False
    if read.email != known.contact_email:
        return False
    if read.phone is not None and read.phone != known.contact_phone:
        return False
    if known.agreed_at is None or known.contact_changed_at is None or known.contact_changed_at > known.agreed_at:
        return False
    if read.email_consent is not None and read.email_consent != known.email_consent_base:
        return False
    base = known.merge_base
    for name, value in read.fields.items():
        if name in base and base[name] == value:
            continue
        if name == read.consent_field:
            # Stating nothing, or the state agreed (checked above): the consent rule has no news.
            continue
        if name not in base and is_empty(value) and name in known.empty_in_hub:
            continue
        return False
    return True
