"""System checks on the settings the encryption of credentials depends on."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


def encryption_settings_problem() -> str | None:
    """Say what is wrong with SALT_KEY, the salts every encryption key is derived with, if anything."""
    salts = settings.SALT_KEY if isinstance(settings.SALT_KEY, (list, tuple)) else [settings.SALT_KEY]
    if not salts or any(not str(salt).strip() for salt in salts):
        return (
            "SALT_KEY is empty, or one of its comma-separated salts is: set it to a random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))'); see docs/security.md."
        )
    return None


@register(Tags.security)
def check_encryption_settings(app_configs, **kwargs) -> list[Error]:
    """Refuse to start without a salt: no credential could be encrypted or read."""
    problem = encryption_settings_problem()
    return [Error(problem, id="syncapp.security.E001")] if problem else []
