"""System checks on the keys of the suppression list and of deletion receipts."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


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
