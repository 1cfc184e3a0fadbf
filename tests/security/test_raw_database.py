"""A copy of the database without the keys gives away no secret: every secret column
holds Fernet tokens, and no plaintext secret is anywhere in any table."""
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.db import connection as db
from django.urls import reverse

from connections.fields import EMPTY_MARKER, encryption_keys
from connections.keys import secret_fields
from connections.models import Connection
from connections.services import connection_update
from syncapp.roles import MARKETER
from tests.security.rawdb import encoded_rows, raw_rows
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db

SECRETS = {
    "new_api_key": "mc-raw-scan-key-5e1d-us1",
    "new_access_token": "hs-raw-scan-access-6f2e",
    "new_refresh_token": "hs-raw-scan-refresh-7a3f",
    "new_webhook_secret": "raw-scan-webhook-8b4a",
    "new_client_secret": "raw-scan-client-9c5b",
}


@pytest.fixture
def marketer_client(client):
    client.force_login(user_with_role("maria", MARKETER, staff=True))
    return client


def add_connection_through_the_admin(client, name: str, **secrets) -> Connection:
    data = {
        "name": name,
        "provider": "hubspot",
        "base_url": "https://api.hubapi.com",
        "settings": "{}",
        "default_phone_region": "US",
        "scopes": "crm.objects.contacts.read",
        "status": "connected",
        "token_expires_at_0": "",
        "token_expires_at_1": "",
        **secrets,
    }
    response = client.post(reverse("admin:connections_connection_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    return Connection.objects.get(name=name)


def secret_columns() -> list[tuple[str, str]]:
    return [(f.model._meta.db_table, f.column) for f in secret_fields()]


def stored_values(table: str, column: str) -> list:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {db.ops.quote_name(column)} FROM {db.ops.quote_name(table)}")
        return [row[0] for row in cursor.fetchall()]


def test_secret_columns_hold_only_fernet_tokens_of_the_current_keys(marketer_client):
    add_connection_through_the_admin(marketer_client, "Typed in", **SECRETS)
    stored = add_connection_through_the_admin(marketer_client, "Changed later")
    connection_update(connection=stored, user=None, fields={"api_key": "changed-by-service-0d6c", "access_token": ""})
    Connection.objects.create(name="Made in code", provider="mailchimp", base_url="https://us1.api.mailchimp.com/3.0",
                              api_key="made-in-code-1e7d-us1")

    fernets = [Fernet(key) for key in encryption_keys()]
    tokens = 0
    for table, column in secret_columns():
        for value in stored_values(table, column):
            if value is None or value == EMPTY_MARKER:
                continue
            assert isinstance(value, str) and value.startswith("gAAAAA"), f"{table}.{column} holds a non-token"
            assert any(_decrypts(fernet, value) for fernet in fernets), f"{table}.{column} holds an unreadable token"
            tokens += 1
    assert tokens == len(SECRETS) + 2


def test_no_plaintext_secret_is_anywhere_in_the_raw_database(marketer_client):
    connection = add_connection_through_the_admin(marketer_client, "Typed in", **SECRETS)
    # Change them all once more: the audit trail records that they changed.
    marketer_client.post(
        reverse("admin:connections_connection_change", args=[connection.pk]),
        {**_form_data(connection), **{name: value + "-v2" for name, value in SECRETS.items()}},
    )
    plaintexts = [*SECRETS.values(), *(value + "-v2" for value in SECRETS.values())]

    loaded = Connection.objects.get(pk=connection.pk)
    assert loaded.api_key == SECRETS["new_api_key"] + "-v2"
    found = [
        (where, secret)
        for where, text in [*((f"{table}.{column}", text) for table, column, text in raw_rows()), *encoded_rows()]
        for secret in plaintexts
        if secret in text
    ]
    assert found == []


def _decrypts(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def _form_data(connection: Connection) -> dict:
    return {
        "name": connection.name,
        "provider": connection.provider,
        "base_url": connection.base_url,
        "settings": json.dumps(connection.settings),
        "default_phone_region": connection.default_phone_region,
        "scopes": connection.scopes,
        "status": connection.status,
        "token_expires_at_0": "",
        "token_expires_at_1": "",
    }
