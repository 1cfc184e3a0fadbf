"""System checks on the keys of the suppression list and of deletion receipts."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError


@register(Tags.security)
def check_compliance_keys(app_configs, **kwargs) -> list[Error]:
    """Refuse to start with keys the suppression list or the receipts cannot use."""
    from audit.suppression import suppression_keys

    errors = []
    try:
        suppression_keys()
    except ImproperlyConfigured as error:
        errors.append(Error(f"{error} See docs/security.md.", id="audit.E001"))
    if not str(getattr(settings, "RECEIPT_SIGNING_KEY", "")).strip():
        errors.append(Error(
            "RECEIPT_SIGNING_KEY is empty: deletion receipts could not be signed. See docs/security.md.",
            id="audit.E002",
        ))
    return errors


@register(Tags.security)
def check_suppression_keys_in_use(app_configs, **kwargs) -> list[Error]:
    """Refuse to start when a key no longer in SUPPRESSION_KEYS still holds rows of the suppression list.

    The people in those rows would no longer be recognised, and a sync would bring them
    back: a key may leave the list only once it holds none (docs/security.md).
    """
    from audit.suppression import suppression_key_usage, suppression_keys

    try:
        configured = {key.key_id for key in suppression_keys()}
        usage = suppression_key_usage()
    except ImproperlyConfigured:
        return []  # audit.E001 says why.
    except DatabaseError:
        # No database yet, or not migrated yet: this check runs before `migrate` does.
        return []
    dropped = sorted((key_id, rows) for key_id, rows in usage.items() if key_id not in configured and rows)
    if not dropped:
        return []
    held = ", ".join(f"{key_id} holds {rows} suppressed identifier(s)" for key_id, rows in dropped)
    return [Error(
        f"SUPPRESSION_KEYS no longer lists keys still in use: {held}. Those people would come back with the next "
        "sync.",
        hint="List the key again after the current one; remove it once suppression_key_usage() counts no row for "
             "it. See docs/security.md.",
        id="audit.E003",
    )]
