"""Suggest a system's field for an unmapped hub field, by name, label and kind.

Pure: takes the hub field and the system's discovered fields, returns ranked
suggestions. A suggestion is only a starting point the marketer confirms in the form.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from connections.providers.base import FieldInfo

# Names people and systems give each hub field, normalized (see `normalize`).
SYNONYMS = {
    "email": ("email", "emailaddress", "mail", "email1"),
    "phone": ("phone", "phonenumber", "mobilephone", "mobile", "tel", "telephone", "cellphone", "sms"),
    "first_name": ("firstname", "fname", "givenname", "first", "forename"),
    "last_name": ("lastname", "lname", "surname", "familyname", "last"),
    "company": ("company", "companyname", "organization", "organisation", "org", "employer"),
    "lifecycle_stage": ("lifecyclestage", "lifecycle", "stage"),
    "email_consent": ("emailoptout", "hsemailoptout", "status", "emailconsent", "subscriptionstatus"),
    "sms_consent": ("smsconsent", "smsoptin", "smsoptout", "smsstatus"),
}
# External kinds that can carry each hub kind as it is.
KIND_FITS = {
    "text": {"text", "enum", "url"},
    "email": {"email", "text"},
    "phone": {"phone", "text"},
    "consent": {"consent", "bool", "enum"},
    "number": {"number", "text"},
    "date": {"date", "datetime", "birthday", "text"},
}

EXACT_NAME = 100
EXACT_LABEL = 90
SYNONYM_NAME = 80
SYNONYM_LABEL = 70
# Bonus when the kinds are the same, not merely compatible.
SAME_KIND = 5
# Larger than the gap between the best and the weakest match: writable first.
READ_ONLY_PENALTY = 40


@dataclass(frozen=True)
class Suggestion:
    field: FieldInfo
    score: int
    reason: str


def normalize(text: str) -> str:
    """Return `text` folded for comparison: "First Name", "first_name", "FNAME " -> "firstname"."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    return re.sub(r"[^a-z0-9]", "", folded)


def kind_fits(hub_kind: str, external_kind: str) -> bool:
    """Return whether a field of `external_kind` can hold a hub value of `hub_kind` as it is."""
    return external_kind == hub_kind or external_kind in KIND_FITS.get(hub_kind, ())


def _match(hub_name: str, field: FieldInfo) -> tuple[int, str] | None:
    own = normalize(hub_name.removeprefix("attributes."))
    synonyms = SYNONYMS.get(hub_name, ())
    name, label = normalize(field.name), normalize(field.label)
    if name == own:
        return EXACT_NAME, "same name"
    if label == own:
        return EXACT_LABEL, "same label"
    if name in synonyms:
        return SYNONYM_NAME, "a usual name for it"
    if label in synonyms:
        return SYNONYM_LABEL, "a usual label for it"
    return None


def suggest_fields(*, hub_name: str, hub_kind: str, fields: Iterable[FieldInfo],
                   taken: Iterable[str] = ()) -> list[Suggestion]:
    """Return the fields that look like `hub_name`, best first.

    Fields already mapped (`taken`) and fields whose kind cannot hold the hub value
    are left out; a read-only field ranks below a writable one.
    """
    taken = set(taken)
    suggestions = []
    for field in fields:
        if field.name in taken or not kind_fits(hub_kind, field.kind):
            continue
        matched = _match(hub_name, field)
        if matched is None:
            continue
        score, reason = matched
        if field.kind == hub_kind:
            score += SAME_KIND
        if not field.writable:
            score -= READ_ONLY_PENALTY
            reason += "; read-only there"
        suggestions.append(Suggestion(field, score, reason))
    return sorted(suggestions, key=lambda suggestion: (-suggestion.score, suggestion.field.name))


def best_field(*, hub_name: str, hub_kind: str, fields: Iterable[FieldInfo],
               taken: Iterable[str] = ()) -> Suggestion | None:
    """Return the best suggestion for `hub_name`, or None."""
    found = suggest_fields(hub_name=hub_name, hub_kind=hub_kind, fields=fields, taken=taken)
    return found[0] if found else None
