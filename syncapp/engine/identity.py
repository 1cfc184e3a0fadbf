"""Who is who: normalized emails and phones, and matching incoming records to contacts.

Matching order (ARCHITECTURE.md, Identity): the record's existing link, then its email,
then its phone, else a new contact. Phone matching is narrow on purpose: a phone joins
a record to a contact only when one of the two has no email. The same phone under two
different emails is usually a household or an office line shared by two people, not one
person, and merging them would mix two people's data and consent.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import email_validator
import phonenumbers


class InvalidEmail(ValueError):
    """The text is not an email address Syncapp can use as an identity key."""


class InvalidPhone(ValueError):
    """The text is not a phone number that can be written in E.164."""


MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL_LENGTH = 64
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_COMMON_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*\.[a-z]{{2,63}}")
# Names reserved by RFC 6761 and others (test, local, invalid, onion...): no mail is
# ever delivered there, so an address under them is not a person's.
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def normalize_email(raw: object) -> str:
    """Return `raw` trimmed, lowercased and in NFC, or raise InvalidEmail saying why.

    The syntax is checked by email-validator, without any network lookup (no MX or
    DNS query: a sync must not depend on DNS, and an address is not refused because its
    domain is unreachable today). On top of it, Syncapp lowercases the whole address,
    as every provider it talks to matches addresses without case, and refuses:
    - quoted local parts, IP-literal domains and display names ("Ann <ann@x.com>"): no
      provider Syncapp talks to accepts them;
    - a local part longer than 64 bytes (RFC 5321), which email-validator lets through
      but mail servers and Mailchimp refuse;
    - special-use domains (.test, .local, .invalid, localhost...): nothing is delivered
      there.
    Internationalized addresses (RFC 6531) are kept as readable Unicode, not punycode.
    Domain typos (gmial.com) are valid syntax: see engine.email_typos.
    """
    if raw is None:
        raise InvalidEmail("no email address")
    if not isinstance(raw, str):
        raise InvalidEmail(f"expected text, got {type(raw).__name__}")
    email = raw.strip().lower()
    if email.isascii() and len(email) <= MAX_EMAIL_LENGTH and _COMMON_EMAIL.fullmatch(email):
        # The everyday address, decided in one pass (email-validator costs twenty times
        # more, on the most frequent step of a pull): the pattern accepts only what
        # email-validator accepts too (tests/syncapp/test_identity.py checks this).
        local, domain = email.split("@")
        if len(local) <= MAX_LOCAL_LENGTH and domain.rsplit(".", 1)[1] not in _SPECIAL_USE:
            return email
    email = unicodedata.normalize("NFC", email)
    if not email:
        raise InvalidEmail("the email address is empty")
    # Said here rather than by email-validator, whose words for these are less clear
    # ("invalid characters: '@'") or which lets them through (a long local part).
    at_count = email.count("@")
    if at_count > 1 and not email.startswith('"'):
        raise InvalidEmail("has more than one @")
    if at_count == 1 and len(email.split("@")[0].encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise InvalidEmail(f"the part before the @ is longer than {MAX_LOCAL_LENGTH} bytes")
    try:
        validated = email_validator.validate_email(
            email, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=False,
            allow_domain_literal=False, allow_display_name=False, allow_empty_local=False,
            globally_deliverable=True,
        )
    except email_validator.EmailNotValidError as error:
        raise InvalidEmail(_reason(error)) from None
    return unicodedata.normalize("NFC", validated.normalized.lower())


def _reason(error: Exception) -> str:
    """Return email-validator's message as a clause: "an email address cannot ...".

    Its sentences are clear; they only lose the capital and the full stop, as they are
    shown after the address ("Invalid email 'a..b@x.com': an email address cannot have
    two periods in a row.").
    """
    text = str(error).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else "is not a valid email address"


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
            return self._match_email(keys, keys.email)
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

    def _match_email(self, keys: IncomingKeys, email: str) -> Match:
        contact_id = self.contact_by_email.get(email)
        if contact_id is None:
            if email in self.new_by_email:
                return self._duplicate_of(self.new_by_email[email])
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
