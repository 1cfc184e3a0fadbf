"""A person as compliance staff name one: an email or a phone, and the contacts that are or were them.

A person is searched through the hub's contacts, never through the text of the events:
the trail names contacts by id ("first_name of contact 1"), so each event about a
person carries that contact's id. A contact whose email changed keeps its id, so its
events from before the change are found by the old address through the audited change
itself (`"email": [old, new]`); a contact merged into another lives on in the survivor.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from audit.expressions import ChangedEmail
from audit.models import AuditEvent
from audit.suppression import identifier_key
from connections.models import Connection
from syncapp.engine.identity import InvalidEmail, InvalidPhone, normalize_email, normalize_phone
from syncapp.models import Contact

EMAIL, PHONE = "email", "phone"
# Events whose "email" change holds addresses the contact really had, before or after.
# A conflict's opening is left out: its sides are what a system proposed, which may be
# somebody else's address, and a person's search must not bring in another person.
EMAIL_HELD_ACTIONS = frozenset({
    "contact.created",
    "contact.updated",
    "contact.email_fixed",
    "contact.merged",
    "conflict.resolved",
    "conflict.settled",
})
MERGED = "contact.merged"


class InvalidPerson(ValueError):
    """The text names no one: neither a usable email address nor a phone number."""


@dataclass(frozen=True)
class Person:
    kind: str  # EMAIL or PHONE
    value: str  # normalized: lowercased email, or E.164 phone

    def audit_key(self) -> str:
        """Return how the trail names this person: the keyed hash the suppression list and
        deletion requests use, never the address or number itself."""
        return identifier_key(self.kind, self.value)


def person_parse(text: str) -> Person:
    """Return the person `text` names: an email when it holds an @, else a phone number.

    A phone written without its +country code is read in the region the connections read
    national numbers in, when they agree on one; otherwise the code is needed.
    """
    text = (text or "").strip()
    if not text:
        raise InvalidPerson("Enter an email address or a phone number.")
    if "@" in text:
        try:
            return Person(EMAIL, normalize_email(text))
        except InvalidEmail as error:
            raise InvalidPerson(f"This email address {error}.") from None
    regions = set(Connection.objects.order_by().values_list("default_phone_region", flat=True).distinct())
    if not text.startswith("+") and len(regions) != 1:
        raise InvalidPerson("Write the phone number with its country code (+44 20 …), or enter an email address.")
    try:
        return Person(PHONE, normalize_phone(text, regions.pop() if regions else None))
    except InvalidPhone as error:
        raise InvalidPerson(f"This phone number {error}.") from None


def person_contact_ids(person: Person) -> set[int]:
    """Return the ids of the contacts that are this person, or were.

    The contacts holding the email or phone now; for an email, those that held it before
    (an audited email change, creation or merge names it); then every contact merged into
    those, and those they were merged into, however long ago.
    """
    ids = set(Contact.objects.filter(**{person.kind: person.value}).values_list("pk", flat=True))
    if person.kind == EMAIL:
        ids |= _contacts_that_held(person.value)
    return _with_merged(ids)


def _contacts_that_held(email: str) -> set[int]:
    # Few rows hold a given address; the actions are checked here rather than in the
    # query, so that the planner always takes the two expression indexes (0004).
    rows = (
        AuditEvent.objects.alias(before=ChangedEmail(0), after=ChangedEmail(1))
        .filter(Q(before=email) | Q(after=email), contact_id__isnull=False)
        .order_by()
        .values_list("contact_id", "action")
    )
    return {contact_id for contact_id, action in rows if action in EMAIL_HELD_ACTIONS}


def _with_merged(ids: set[int]) -> set[int]:
    """Return `ids` with every contact a merge joined to one of them, both ways, transitively."""
    ids, frontier = set(ids), set(ids)
    while frontier:
        merges = AuditEvent.objects.filter(action=MERGED).order_by()
        merged_in = merges.filter(contact_id__in=frontier).values_list("changes__merged_contact_id__1", flat=True)
        merged_into = merges.filter(changes__merged_contact_id__1__in=list(frontier)).values_list("contact_id",
                                                                                                flat=True)
        found = {pk for pk in [*merged_in, *merged_into] if isinstance(pk, int)}
        frontier = found - ids
        ids |= frontier
    return ids
