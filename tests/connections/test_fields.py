"""SecretField: encrypted at rest, plaintext in Python, loud when the keys do not match."""
import base64
import os

import pytest
from cryptography.fernet import Fernet
from django.db import connection as db

from connections.fields import DecryptionError
from connections.models import Connection

pytestmark = pytest.mark.django_db

SECRET = "pat-na1-5e3c7a1b-very-secret"


def stored(pk: int, column: str = "api_key"):
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def make(**secrets) -> Connection:
    return Connection.objects.create(name="HubSpot", provider="hubspot", base_url="https://api.hubapi.com", **secrets)


def test_a_secret_is_ciphertext_in_the_database_and_plaintext_when_read():
    saved = make(api_key=SECRET)
    assert SECRET not in stored(saved.pk)
    assert Connection.objects.get(pk=saved.pk).api_key == SECRET


def test_the_instance_keeps_plaintext_after_saving():
    saved = make(api_key=SECRET)
    assert saved.api_key == SECRET


def test_saving_a_loaded_row_again_does_not_encrypt_twice():
    saved = make(api_key=SECRET)
    loaded = Connection.objects.get(pk=saved.pk)
    loaded.name = "Renamed"
    loaded.save()
    assert Connection.objects.get(pk=saved.pk).api_key == SECRET


def test_each_save_uses_a_fresh_ciphertext():
    saved = make(api_key=SECRET)
    first = stored(saved.pk)
    saved.save()
    assert stored(saved.pk) != first
    assert Connection.objects.get(pk=saved.pk).api_key == SECRET


def test_an_empty_secret_comes_back_empty_and_a_missing_one_as_none():
    saved = make(api_key="", access_token=None)
    loaded = Connection.objects.get(pk=saved.pk)
    assert loaded.api_key == ""
    assert loaded.access_token is None


def test_unicode_secrets_round_trip():
    saved = make(webhook_secret="clé-秘密-🔑")
    assert Connection.objects.get(pk=saved.pk).webhook_secret == "clé-秘密-🔑"


def test_a_secret_encrypted_with_other_keys_raises_instead_of_returning_ciphertext():
    saved = make(api_key=SECRET)
    foreign = Fernet(base64.urlsafe_b64encode(os.urandom(32))).encrypt(b"someone else's token").decode()
    with db.cursor() as cursor:
        cursor.execute("UPDATE connections_connection SET api_key = %s WHERE id = %s", [foreign, saved.pk])
    with pytest.raises(DecryptionError) as caught:
        Connection.objects.get(pk=saved.pk)
    message = str(caught.value)
    assert "Connection.api_key" in message
    assert "SALT_KEY" in message
    assert foreign not in message
    assert "someone else" not in message


def test_values_queries_decrypt_too():
    saved = make(api_key=SECRET)
    assert list(Connection.objects.filter(pk=saved.pk).values_list("api_key", flat=True)) == [SECRET]
