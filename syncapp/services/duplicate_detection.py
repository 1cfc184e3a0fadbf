"""Flagging likely duplicate contacts for review while pulling.

Two kinds (issue 3): two records of one system with the same email (each becomes its own
contact, held apart until a reviewer merges them), and the same phone under different
emails. A phone shared by more than SHARED_PHONE_LIMIT contacts is an office line or a
switchboard, not one person: it flags nothing.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count

from syncapp.engine.identity import likely_duplicate_pairs
from syncapp.models import Contact, DuplicatePair

SHARED_PHONE_LIMIT = 3


def duplicate_pairs_flag(pairs: Iterable[tuple[int, int, str, str]]) -> None:
    """Store (contact, contact, reason, detail) pairs; a pair already known stays as it is.

    A dismissed pair is not raised again: the unique pair constraint keeps the reviewer's
    decision.
    """
    rows = []
    for first, second, reason, detail in pairs:
        if first == second:
            continue
        low, high = sorted((first, second))
        rows.append(DuplicatePair(contact_a_id=low, contact_b_id=high, reason=reason, detail=detail[:300]))
    if rows:
        DuplicatePair.objects.bulk_create(rows, ignore_conflicts=True)


def shared_phone_pairs_since(since: datetime) -> list[tuple[int, int, str, str]]:
    """Return pairs of contacts sharing a phone under different emails, among phones of
    contacts changed since `since` (a run's start): one query for a whole run."""
    recent = Contact.objects.filter(updated_at__gte=since, phone__isnull=False, email__isnull=False).values("phone")
    shared = (
        Contact.objects.filter(phone__in=recent, email__isnull=False)
        .values("phone")
        .annotate(holders=Count("id"))
        .filter(holders__gt=1, holders__lte=SHARED_PHONE_LIMIT)
        .values("phone")
    )
    rows = Contact.objects.filter(phone__in=shared, email__isnull=False).values_list("id", "phone", "email")
    return [
        (first, second, DuplicatePair.Reason.SAME_PHONE, f"Phone {phone} on {email_a} and {email_b}")
        for first, second, phone, email_a, email_b in likely_duplicate_pairs(rows)
    ]


def duplicates_flag_since(since: datetime) -> None:
    """Flag the shared-phone pairs among contacts a run created or changed."""
    duplicate_pairs_flag(shared_phone_pairs_since(since))
