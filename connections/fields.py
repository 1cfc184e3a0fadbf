"""Encrypted model fields for credentials.

django-fernet-encrypted-fields returns the stored ciphertext when decryption fails and
stores empty strings as NULL. For credentials both are wrong: a wrong key must stop the
caller rather than hand ciphertext to a provider as if it were a token, and an empty
secret must come back as the empty string it was.
"""
from cryptography.fernet import InvalidToken
from encrypted_fields.fields import EncryptedTextField

# Stored for "" so that an empty secret is told apart from no secret (NULL).
_EMPTY_MARKER = "enc:empty"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


class SecretField(EncryptedTextField):
    """A text secret, encrypted at rest with every key in SECRET_KEY x SALT_KEY."""

    def get_prep_value(self, value):
        if value == "":
            return _EMPTY_MARKER
        return super().get_prep_value(value)

    def to_python(self, value):
        if value is None or not isinstance(value, str) or hasattr(self, "_already_decrypted"):
            return value
        if value == _EMPTY_MARKER:
            return ""
        try:
            return self.f.decrypt(value.encode("utf-8")).decode("utf-8")
        except InvalidToken:
            # Name the column, never the value: the value is ciphertext of a secret.
            raise DecryptionError(
                f"Cannot decrypt {self.model.__name__}.{self.name}: the encryption keys "
                "(SECRET_KEY, SECRET_KEY_FALLBACKS, SALT_KEY) do not match the stored data."
            ) from None
