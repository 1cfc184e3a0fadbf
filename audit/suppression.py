"""The suppression list: keyed hashes of erased people's emails and phones, checked by every sync.

An identifier is kept as HMAC-SHA256(secret, "<kind>:<value>") under a key of
SUPPRESSION_KEYS ("key_id:secret" pairs, the current key first), never in plain text.
Values are hashed in their identity form: emails as `engine.identity.normalize_email`
returns them, phones in E.164, as the hub stores them.

Rotation: lookups hash with every listed key, so an identifier suppressed under an old
key is still found. When one is found under an old key only, its row is re-made under
the current key then and there (no plain text is kept, so this is the only moment it
can be). `suppression_key_usage` tells how many rows each key still holds: an old key
may leave SUPPRESSION_KEYS once it holds none (docs/security.md).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count

from audit.models import Suppression
from syncapp.engine.identity import InvalidEmail, normalize_email

EMAIL = Suppression.Kind.EMAIL
PHONE = Suppression.Kind.PHONE


@dataclass(frozen=True)
class SuppressionKey:
    key_id: str
    secret: bytes


def suppression_keys() -> list[SuppressionKey]:
    """Return SUPPRESSION_KEYS parsed, the current key first; raise ImproperlyConfigured when malformed."""
    keys = []
    for entry in settings.SUPPRESSION_KEYS:
        key_id, colon, secret = str(entry).strip().partition(":")
        if not (colon and key_id.strip() and secret.strip()):
            raise ImproperlyConfigured(
                "Each SUPPRESSION_KEYS entry is key_id:secret (for example k2:<32 random characters>), "
                "the current key first."
            )
        keys.append(SuppressionKey(key_id.strip(), secret.strip().encode()))
    if not keys:
        raise ImproperlyConfigured("SUPPRESSION_KEYS names no key: the suppression list cannot be read or written.")
    ids = [key.key_id for key in keys]
    if len(set(ids)) != len(ids):
        raise ImproperlyConfigured(f"SUPPRESSION_KEYS names a key id twice: {', '.join(ids)}.")
    return keys


def identifier_form(kind: str, value: str) -> str:
    """Return the form an identifier is hashed in: the normalized email, or the phone as given (E.164)."""
    value = str(value).strip()
    if kind == EMAIL:
        try:
            return normalize_email(value)
        except InvalidEmail:
            # Not an address Syncapp would import: hashed trimmed and lowercased all the same.
            return value.lower()
    if kind == PHONE:
        return value
    raise ValueError(f"Unknown identifier kind {kind!r}: email or phone.")


def identifier_keys(kind: str, value: str) -> list[str]:
    """Return the identifier's keyed hash (hex) under every key of SUPPRESSION_KEYS, current first."""
    return [_digest(key, kind, identifier_form(kind, value)) for key in suppression_keys()]


def identifier_key(kind: str, value: str) -> str:
    """Return the identifier's keyed hash under the current key (what requests and audit rows name)."""
    return _digest(suppression_keys()[0], kind, identifier_form(kind, value))


def external_id_key(external_id: str) -> str:
    """Return a system's record id as kept once a deletion request completes: keyed, under the current key.

    Some ids are the person's address in disguise (a Mailchimp member id is the unkeyed
    MD5 of it, which anyone can compute from a guess); a keyed hash is not.
    """
    return hmac.new(suppression_keys()[0].secret, f"external_id:{external_id}".encode(), hashlib.sha256).hexdigest()


def is_suppressed(*, email: str | None = None, phone: str | None = None) -> bool:
    """Return whether the email or the phone belongs to someone erased on request."""
    return bool(suppressed_among([email] if email else [], [phone] if phone else []))


def suppressed_among(emails: Iterable[str], phones: Iterable[str]) -> set[str]:
    """Return the identifiers among `emails` and `phones` that are suppressed, normalized; one query.

    Rows found under an old key only are re-made under the current key (two more
    queries, only then), so an old key's rows stop being needed as the identifiers come by.
    """
    keys = suppression_keys()
    # Keyed hash -> (kind, normalized identifier, whether under the current key).
    wanted: dict[str, tuple[str, str, bool]] = {}
    for kind, values in ((EMAIL, emails), (PHONE, phones)):
        for value in values:
            if not value:
                continue
            form = identifier_form(kind, value)
            for position, key in enumerate(keys):
                wanted[_digest(key, kind, form)] = (kind, form, position == 0)
    if not wanted:
        return set()
    found = list(Suppression.objects.filter(key_hash__in=list(wanted)))
    current = {wanted[row.key_hash][:2] for row in found if wanted[row.key_hash][2]}
    stale = [row for row in found if wanted[row.key_hash][:2] not in current]
    if stale:
        _rekey(stale, [wanted[row.key_hash][:2] for row in stale], keys[0])
    return {wanted[row.key_hash][1] for row in found}


def suppress(*, email: str | None, phone: str | None, request=None) -> list[Suppression]:
    """Add the email and the phone to the suppression list under the current key; return the rows added."""
    key = suppression_keys()[0]
    rows = [
        Suppression(kind=kind, key_hash=_digest(key, kind, identifier_form(kind, value)), key_id=key.key_id,
                    request=request)
        for kind, value in ((EMAIL, email), (PHONE, phone)) if value
    ]
    existing = set(Suppression.objects.filter(key_hash__in=[row.key_hash for row in rows])
                   .values_list("key_hash", flat=True))
    added = [row for row in rows if row.key_hash not in existing]
    Suppression.objects.bulk_create(added, ignore_conflicts=True)
    return added


def suppression_key_usage() -> dict[str, int]:
    """Return {key_id: rows} for the suppression list, keys no longer configured included."""
    usage = {key.key_id: 0 for key in suppression_keys()}
    usage.update(dict(Suppression.objects.order_by().values_list("key_id").annotate(rows=Count("id"))))
    return usage


def _rekey(rows: list[Suppression], identifiers: list[tuple[str, str]], key: SuppressionKey) -> None:
    """Re-make rows found under an old key under the current one, keeping the request they came from."""
    fresh = {}
    for row, (kind, form) in zip(rows, identifiers, strict=True):
        digest = _digest(key, kind, form)
        fresh.setdefault(digest, Suppression(kind=kind, key_hash=digest, key_id=key.key_id, request_id=row.request_id))
    Suppression.objects.bulk_create(list(fresh.values()), ignore_conflicts=True)
    Suppression.objects.filter(pk__in=[row.pk for row in rows]).delete()


def _digest(key: SuppressionKey, kind: str, form: str) -> str:
    # The kind is part of the message: an email and a phone never share a hash.
    return hmac.new(key.secret, f"{kind}:{form}".encode(), hashlib.sha256).hexdigest()
