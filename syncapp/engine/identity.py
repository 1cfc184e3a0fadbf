"""Who is who: normalized emails and phones, and matching incoming records to contacts.

Matching order (ARCHITECTURE.md, Identity): the record's existing link, then its email,
then its phone, else a new contact. Phone matching is narrow on purpose: a phone joins
a record to a contact only when one of the two has no email. The same phone under two
different emails is usually a household or an office line shared by two people, not one
person, and merging them would mix two people's data and consent.
"""
from __future__ import annotations

import encodings.idna
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import phonenumbers


class InvalidEmail(ValueError):
    """The text is not an email address Syncapp can use as an identity key."""


class InvalidPhone(ValueError):
    """The text is not a phone number that can be written in E.164."""


# RFC 5322 atext outside letters and digits; any other ASCII punctuation in an unquoted
# local part makes the address invalid.
_LOCAL_PUNCTUATION = frozenset("!#$%&'*+-/=?^_`{|}~.")
_DOMAIN_ASCII = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
# Unicode categories never valid in an address: controls, invisible format characters
# (zero-width spaces, bidi overrides: spoofing tools), separators and unassigned points.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_COMMON_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
MAX_LOCAL_LENGTH = 64
MAX_LABEL_LENGTH = 63


def normalize_email(raw: object) -> str:
    """Return `raw` trimmed, lowercased and in NFC, or raise InvalidEmail saying why.

    Internationalized addresses (RFC 6531) are kept as readable Unicode: a unicode local
    part or domain is valid text and is not converted to punycode. Quoted local parts and
    IP-literal domains are refused: no provider Syncapp talks to accepts them.
    """
    if raw is None:
        raise InvalidEmail("no email address")
    if not isinstance(raw, str):
        raise InvalidEmail(f"expected text, got {type(raw).__name__}")
    email = raw.strip().lower()
    if email.isascii() and len(email) <= MAX_EMAIL_LENGTH and _COMMON_EMAIL.fullmatch(email):
        # The everyday address, checked in one pass; anything else gets the full,
        # character by character check that can say what is wrong.
        local, domain = email.split("@")
        if len(local) <= MAX_LOCAL_LENGTH and not domain.rsplit(".", 1)[1].isdigit():
            return email
    email = unicodedata.normalize("NFC", email)
    if not email:
        raise InvalidEmail("the email address is empty")
    for char in email:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zs", "Zl", "Zp"):
            raise InvalidEmail("contains a space")
        if category in _FORBIDDEN_CATEGORIES:
            raise InvalidEmail(f"contains an invisible or control character (U+{ord(char):04X})")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"is longer than {MAX_EMAIL_LENGTH} characters")
    at_count = email.count("@")
    if at_count == 0:
        raise InvalidEmail("has no @")
    if at_count > 1:
        raise InvalidEmail("has more than one @")
    local, domain = email.split("@")
    _check_local_part(local)
    _check_domain(domain)
    return email


def _check_local_part(local: str) -> None:
    if not local:
        raise InvalidEmail("has nothing before the @")
    if local.startswith('"'):
        raise InvalidEmail("quoted local parts are not supported")
    if local.startswith(".") or local.endswith("."):
        raise InvalidEmail("the part before the @ starts or ends with a dot")
    if ".." in local:
        raise InvalidEmail("has two dots in a row")
    for char in local:
        if char.isascii() and not char.isalnum() and char not in _LOCAL_PUNCTUATION:
            raise InvalidEmail(f"contains {char!r}, which is not allowed before the @")
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise InvalidEmail(f"the part before the @ is longer than {MAX_LOCAL_LENGTH} bytes")


def _check_domain(domain: str) -> None:
    if not domain:
        raise InvalidEmail("has no domain after the @")
    if domain.startswith("["):
        raise InvalidEmail("IP address domains are not supported")
    if domain.startswith(".") or domain.endswith("."):
        raise InvalidEmail("the domain starts or ends with a dot")
    if ".." in domain:
        raise InvalidEmail("has two dots in a row")
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidEmail("the domain has no dot (as in example.com)")
    for label in labels:
        _check_domain_label(label)
    if labels[-1].isdigit():
        raise InvalidEmail("the top-level domain is a number")


def _check_domain_label(label: str) -> None:
    if label.startswith("-") or label.endswith("-"):
        raise InvalidEmail(f"the domain label {label!r} starts or ends with a hyphen")
    if label.isascii():
        for char in label:
            if char not in _DOMAIN_ASCII:
                raise InvalidEmail(f"contains {char!r}, which is not allowed in a domain")
        ascii_label = label
    else:
        try:
            ascii_label = encodings.idna.ToASCII(label).decode("ascii")
        except UnicodeError:
            raise InvalidEmail(f"the domain label {label!r} is not a valid internationalized name") from None
    if len(ascii_label) > MAX_LABEL_LENGTH:
        raise InvalidEmail(f"a domain label is longer than {MAX_LABEL_LENGTH} characters")


def normalize_phone(raw: object, region: str | None) -> str:
    """Return `raw` as an E.164 number, reading national numbers in `region`.

    Refused, with InvalidPhone:
    - letters ("1-800-FLOWERS"): a vanity number is a business line, not a person's, and
      turning letters into digits would invent a number nobody typed;
    - extensions ("ext. 12"): E.164 cannot hold one, and the number without it is a
      switchboard shared by many people, which would make phone matching merge them;
    - numbers that are not valid for their country (phonenumbers' metadata).
    """
    if raw is None:
        raise InvalidPhone("no phone number")
    if not isinstance(raw, str):
        raise InvalidPhone(f"expected text, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise InvalidPhone("the phone number is empty")
    region = (region or "").upper()
    if not text.startswith("+") and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPhone(f"has no +country code and the default region {region or '(none)'!r} is unknown")
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        raise InvalidPhone("is not a phone number") from None
    if number.extension:
        raise InvalidPhone("has an extension, which E.164 cannot hold")
    if any(char.isalpha() for char in text):
        raise InvalidPhone("contains letters (vanity numbers are not converted)")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("is not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class IncomingKeys:
    """The identity keys of one record read from a system, already normalized."""

    external_id: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class KnownContact:
    """A hub contact that an incoming record might be."""

    contact_id: int
    email: str | None = None
    phone: str | None = None
    # Its record in the system being read, when it has one with an id there.
    linked_external_id: str | None = None


@dataclass(frozen=True)
class IdentityIndex:
    """What the hub knows that bears on one page: links and candidate contacts."""

    # External id in the system being read -> the contact it is linked to.
    links: Mapping[str, int] = field(default_factory=dict)
    contacts: Mapping[int, KnownContact] = field(default_factory=dict)

    @classmethod
    def build(cls, *, links: Mapping[str, int], contacts: Iterable[KnownContact]) -> IdentityIndex:
        return cls(links=dict(links), contacts={contact.contact_id: contact for contact in contacts})


class MatchKind(StrEnum):
    LINK = "link"
    EMAIL = "email"
    PHONE = "phone"
    NEW = "new"
    # Another record of the same system is already this person: a duplicate there.
    DUPLICATE = "duplicate"
    # The phone fits several contacts and there is no email to tell them apart.
    AMBIGUOUS = "ambiguous"
    # Neither a link, an email nor a phone: nothing to tell who this is.
    UNIDENTIFIED = "unidentified"


@dataclass(frozen=True)
class Match:
    kind: MatchKind
    contact_id: int | None = None
    # Why a record could not be matched (duplicate, ambiguous, unidentified).
    reason: str = ""
    # For a DUPLICATE: the other record of the same system that is the same person
    # (same email), when there is one; the caller lists the pair for review.
    duplicate_of: str | None = None

    @property
    def usable(self) -> bool:
        return self.kind in (MatchKind.LINK, MatchKind.EMAIL, MatchKind.PHONE, MatchKind.NEW)


def match(keys: IncomingKeys, index: IdentityIndex) -> Match:
    """Decide which contact one incoming record is (see `match_page` for a whole page)."""
    return match_page([keys], index)[0]


def match_page(records: Sequence[IncomingKeys], index: IdentityIndex) -> list[Match]:
    """Decide, for each record of one page of one system, which contact it is.

    Records with an existing link are decided first, so that the contacts they hold
    (and their new emails and phones) are known before the others are matched. Two
    records of the page that resolve to the same person are caught: the later one is a
    DUPLICATE, whichever way it matched. External ids must be unique within `records`.
    """
    page = _PageMatcher(index)
    results: list[Match | None] = [None] * len(records)
    linked_first = sorted(range(len(records)), key=lambda i: records[i].external_id not in index.links)
    for i in linked_first:
        results[i] = page.match(records[i])
    return results  # type: ignore[return-value]


class _PageMatcher:
    """The hub's identity keys as they stand part-way through a page."""

    def __init__(self, index: IdentityIndex):
        self.links = index.links
        self.contacts = dict(index.contacts)
        self.contact_by_email: dict[str, int] = {}
        self.contacts_by_phone: dict[str, list[int]] = {}
        for contact in sorted(self.contacts.values(), key=lambda c: c.contact_id):
            if contact.email:
                self.contact_by_email.setdefault(contact.email, contact.contact_id)
            if contact.phone:
                self.contacts_by_phone.setdefault(contact.phone, []).append(contact.contact_id)
        # Contact id -> the external id that holds it, from links and from this page.
        self.holder = {
            contact.contact_id: contact.linked_external_id
            for contact in self.contacts.values()
            if contact.linked_external_id
        }
        # Email -> external id of the page's record that will create that contact.
        self.new_by_email: dict[str, str] = {}

    def match(self, keys: IncomingKeys) -> Match:
        contact_id = self.links.get(keys.external_id)
        if contact_id is not None:
            return self._match_link(keys, contact_id)
        if keys.email:
            return self._match_email(keys)
        if keys.phone:
            return self._match_phone(keys)
        return Match(MatchKind.UNIDENTIFIED, reason="the record has neither a valid email nor a valid phone")

    def _match_link(self, keys: IncomingKeys, contact_id: int) -> Match:
        if keys.email:
            owner = self.contact_by_email.get(keys.email)
            known = self.contacts.get(contact_id)
            # A contact listed as a likely duplicate shares its email with another one
            # until a reviewer merges them: its own record is not a new conflict.
            if owner is not None and owner != contact_id and not (known and known.email == keys.email):
                reason = f"its new email {keys.email} already belongs to another contact"
                return Match(MatchKind.DUPLICATE, reason=reason)
        self.holder[contact_id] = keys.external_id
        self._move_keys(contact_id, keys)
        return Match(MatchKind.LINK, contact_id)

    def _match_email(self, keys: IncomingKeys) -> Match:
        contact_id = self.contact_by_email.get(keys.email)
        if contact_id is None:
            if keys.email in self.new_by_email:
                return self._duplicate_of(self.new_by_email[keys.email])
            return self._match_phone(keys)
        holder = self.holder.get(contact_id)
        if holder is not None and holder != keys.external_id:
            return self._duplicate_of(holder)
        self.holder[contact_id] = keys.external_id
        self._move_keys(contact_id, keys)
        return Match(MatchKind.EMAIL, contact_id)

    def _match_phone(self, keys: IncomingKeys) -> Match:
        if keys.phone:
            candidates = [
                contact_id
                for contact_id in self.contacts_by_phone.get(keys.phone, [])
                if self.holder.get(contact_id) in (None, keys.external_id)
                and (not keys.email or not self.contacts[contact_id].email)
            ]
            if len(candidates) > 1:
                if not keys.email:
                    reason = f"its phone matches {len(candidates)} contacts and it has no email"
                    return Match(MatchKind.AMBIGUOUS, reason=reason)
            elif candidates:
                contact_id = candidates[0]
                self.holder[contact_id] = keys.external_id
                self._move_keys(contact_id, keys)
                return Match(MatchKind.PHONE, contact_id)
        if keys.email:
            self.new_by_email[keys.email] = keys.external_id
        return Match(MatchKind.NEW)

    def _duplicate_of(self, external_id: str) -> Match:
        return Match(MatchKind.DUPLICATE, reason=f"same person as record {external_id} of the same system",
                     duplicate_of=external_id)

    def _move_keys(self, contact_id: int, keys: IncomingKeys) -> None:
        """Give the contact the record's email and phone for the rest of the page."""
        known = self.contacts.get(contact_id) or KnownContact(contact_id)
        email, phone = keys.email or known.email, keys.phone or known.phone
        if known.email and known.email != email and self.contact_by_email.get(known.email) == contact_id:
            del self.contact_by_email[known.email]
        if email:
            self.contact_by_email[email] = contact_id
        if known.phone and known.phone != phone:
            others = [c for c in self.contacts_by_phone.get(known.phone, []) if c != contact_id]
            self.contacts_by_phone[known.phone] = others
        if phone and contact_id not in self.contacts_by_phone.get(phone, []):
            self.contacts_by_phone.setdefault(phone, []).append(contact_id)
        self.contacts[contact_id] = KnownContact(contact_id, email, phone, keys.external_id)


def likely_duplicate_pairs(rows: Iterable[tuple[int, str, str]]) -> list[tuple[int, int, str, str, str]]:
    """Return (id, id, phone, email, email) for contacts sharing a phone under different emails.

    `rows` are (contact id, phone, email). Each pair appears once, lower id first.
    """
    by_phone: dict[str, list[tuple[int, str]]] = {}
    for contact_id, phone, email in rows:
        by_phone.setdefault(phone, []).append((contact_id, email))
    pairs = []
    for phone, holders in by_phone.items():
        holders.sort()
        for i, (first, email_a) in enumerate(holders):
            for second, email_b in holders[i + 1:]:
                if email_a != email_b:
                    pairs.append((first, second, phone, email_a, email_b))
    return pairs
