"""Encrypted model fields for credentials.

django-fernet-encrypted-fields returns the stored ciphertext when decryption fails and
stores empty strings as NULL. For credentials both are wrong: a wrong key must stop the
caller rather than hand ciphertext to a provider as if it were a token, and an empty
secret must come back as the empty string it was.

Keys are derived from SECRET_KEY (then each of SECRET_KEY_FALLBACKS) combined with each
salt of SALT_KEY, in that order: the first pair encrypts, every pair decrypts. See
docs/security.md for key management and `manage.py rotate_encryption_keys`.
"""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from encrypted_fields.fields import EncryptedTextField

# Stored for "" so that an empty secret is told apart from no secret (NULL).
EMPTY_MARKER = "enc:empty"
# The library's key derivation; rows written by it stay readable.
KDF_ITERATIONS = 100_000


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def encryption_keys() -> tuple[bytes, ...]:
    """Return the Fernet keys of the current settings, the encrypting key first."""
    salts = settings.SALT_KEY if isinstance(settings.SALT_KEY, (list, tuple)) else [settings.SALT_KEY]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return _derive_keys(tuple(secrets), tuple(salts))


@lru_cache(maxsize=8)
def _derive_keys(secrets: tuple[str, ...], salts: tuple[str, ...]) -> tuple[bytes, ...]:
    # Cached by the settings' values rather than per field, so that every field sees a
    # change of keys at once (tests override them) and PBKDF2 runs once per key set.
    keys = []
    for secret in secrets:
        for salt in salts:
            kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt.encode("utf-8"), iterations=KDF_ITERATIONS)
            keys.append(base64.urlsafe_b64encode(kdf.derive(secret.encode("utf-8"))))
    return tuple(keys)


def encrypting_fernet() -> Fernet:
    """Return the Fernet of the first key: the only one new ciphertext is made with."""
    return Fernet(encryption_keys()[0])


def decrypting_fernet() -> MultiFernet:
    """Return a MultiFernet that encrypts with the first key and decrypts with any."""
    return MultiFernet([Fernet(key) for key in encryption_keys()])


class SecretField(EncryptedTextField):
    """A text secret, encrypted at rest with every key in SECRET_KEY x SALT_KEY."""

    @property
    def keys(self) -> tuple[bytes, ...]:
        return encryption_keys()

    @property
    def f(self) -> MultiFernet:
        return decrypting_fernet()

    def get_prep_value(self, value):
        if value == "":
            return EMPTY_MARKER
        return super().get_prep_value(value)

    def to_python(self, value):
        # Values in Python are always plaintext; only the database holds ciphertext,
        # so decryption happens in from_db_value alone. (Decrypting here would also
        # run on plaintext being saved, since TextField.get_prep_value calls it.)
        return value

    def from_db_value(self, value, expression, connection):
        if value is None or not isinstance(value, str):
            return value
        if value == EMPTY_MARKER:
            return ""
        try:
            return self.f.decrypt(value.encode("utf-8")).decode("utf-8")
        except InvalidToken:
            raise self.decryption_error() from None

    def decryption_error(self, row: object = None) -> DecryptionError:
        """Return the error for an undecryptable value: it names the column, never the value."""
        where = f"{self.model.__name__}.{self.name}" + (f" of row {row}" if row is not None else "")
        return DecryptionError(
            f"Cannot decrypt {where}: the encryption keys (SECRET_KEY, SECRET_KEY_FALLBACKS, SALT_KEY) "
            "do not match the stored data."
        )
