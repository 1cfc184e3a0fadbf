"""Key management: secrets encrypted under old keys stay readable, and rotation moves
every one of them to the current key, so the old key can then be dropped."""
import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection as db
from encrypted_fields.fields import EncryptedTextField

from audit.models import AuditEvent
from connections.fields import EMPTY_MARKER, DecryptionError, encryption_keys
from connections.keys import secret_fields, secrets_rotate
from connections.models import Connection

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent.parent

OLD_SALT, NEW_SALT = "old-salt-4b1f", "new-salt-93ce"
OLD_KEY, NEW_KEY = "old-secret-key-" + "a" * 40, "new-secret-key-" + "b" * 40
SECRETS = {
    "api_key": "mc-api-key-0f9e8d-us1",
    "access_token": "hs-access-77aa",
    "refresh_token": "hs-refresh-88bb",
    "webhook_secret": "whsec-99cc",
    "client_secret": "oauth-client-secret-11dd",
}
CONNECTION_SECRET_COLUMNS = set(SECRETS)


def raw(pk: int, column: str):
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {db.ops.quote_name(column)} FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def make(name: str = "HubSpot", **secrets) -> Connection:
    return Connection.objects.create(name=name, provider="hubspot", base_url="https://api.hubapi.com", **secrets)


@pytest.fixture
def old_keys(settings):
    """Start with only the old keys configured; return the settings to change later."""
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS, settings.SALT_KEY = OLD_KEY, [], [OLD_SALT]
    return settings


def test_every_secret_column_of_every_model_is_found():
    found = {(f.model._meta.label, f.name) for f in secret_fields()}
    assert {("connections.Connection", name) for name in CONNECTION_SECRET_COLUMNS} <= found


def test_keys_match_the_encrypted_fields_library_so_its_rows_stay_readable(settings):
    settings.SALT_KEY = [NEW_SALT, OLD_SALT]
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    assert list(encryption_keys()) == list(EncryptedTextField().keys)


def test_after_a_salt_change_rotation_moves_every_secret_to_the_new_salt(old_keys):
    connection = make(**SECRETS)
    before = {column: raw(connection.pk, column) for column in SECRETS}

    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]
    assert Connection.objects.get(pk=connection.pk).api_key == SECRETS["api_key"]
    report = secrets_rotate()
    assert report.rotated == len(SECRETS)
    assert all(raw(connection.pk, column) != before[column] for column in SECRETS)

    old_keys.SALT_KEY = [NEW_SALT]
    loaded = Connection.objects.get(pk=connection.pk)
    assert {column: getattr(loaded, column) for column in SECRETS} == SECRETS


def test_after_a_secret_key_change_rotation_moves_every_secret_to_the_new_key(old_keys):
    connections = [make(f"Connection {n}", **SECRETS) for n in range(3)]

    old_keys.SECRET_KEY, old_keys.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert secrets_rotate().rotated == 3 * len(SECRETS)

    old_keys.SECRET_KEY_FALLBACKS = []
    for connection in connections:
        loaded = Connection.objects.get(pk=connection.pk)
        assert {column: getattr(loaded, column) for column in SECRETS} == SECRETS


def test_without_rotation_dropping_the_old_key_makes_the_secrets_unreadable(old_keys):
    connection = make(api_key=SECRETS["api_key"])
    old_keys.SALT_KEY = [NEW_SALT]
    with pytest.raises(DecryptionError, match="Connection.api_key"):
        Connection.objects.get(pk=connection.pk)


def test_a_second_rotation_changes_nothing(old_keys):
    connection = make(**SECRETS)
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]
    secrets_rotate()
    after_first = {column: raw(connection.pk, column) for column in SECRETS}

    report = secrets_rotate()
    assert (report.rotated, report.current) == (0, len(SECRETS))
    assert {column: raw(connection.pk, column) for column in SECRETS} == after_first


def test_empty_and_missing_secrets_survive_rotation(old_keys):
    connection = make(api_key="", access_token=None, webhook_secret="kept")
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]
    report = secrets_rotate()
    assert report.rotated == 1
    assert raw(connection.pk, "api_key") == EMPTY_MARKER
    assert raw(connection.pk, "access_token") is None
    old_keys.SALT_KEY = [NEW_SALT]
    loaded = Connection.objects.get(pk=connection.pk)
    assert (loaded.api_key, loaded.access_token, loaded.webhook_secret) == ("", None, "kept")


def test_a_dry_run_counts_and_writes_nothing(old_keys):
    connection = make(**SECRETS)
    before = {column: raw(connection.pk, column) for column in SECRETS}
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]

    report = secrets_rotate(dry_run=True)
    assert report.rotated == len(SECRETS)
    assert {column: raw(connection.pk, column) for column in SECRETS} == before
    assert not AuditEvent.objects.filter(action="encryption_keys.rotated").exists()


def test_a_value_no_key_decrypts_stops_the_rotation_and_nothing_is_written(old_keys):
    good = make("Good", api_key=SECRETS["api_key"])
    bad = make("Bad", api_key="placeholder")
    foreign = Fernet(base64.urlsafe_b64encode(os.urandom(32))).encrypt(b"someone else's token").decode()
    with db.cursor() as cursor:
        cursor.execute("UPDATE connections_connection SET api_key = %s WHERE id = %s", [foreign, bad.pk])
    before = raw(good.pk, "api_key")
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]

    with pytest.raises(CommandError) as caught:
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    message = str(caught.value)
    assert f"Connection.api_key of row {bad.pk}" in message
    assert "Nothing was changed" in message
    assert foreign not in message and "someone else" not in message
    assert raw(good.pk, "api_key") == before


def test_the_command_reports_counts_per_column_and_audits_without_values(old_keys):
    make("One", api_key=SECRETS["api_key"], access_token=SECRETS["access_token"])
    make("Two", api_key="")
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]

    output = io.StringIO()
    call_command("rotate_encryption_keys", stdout=output)
    text = output.getvalue()
    assert "connections.Connection.api_key: 1 re-encrypted, 0 already current, 1 empty" in text
    assert "connections.Connection.access_token: 1 re-encrypted, 0 already current, 1 empty" in text
    assert "2 secret(s) re-encrypted, 0 already under the current key." in text

    event = AuditEvent.objects.get(action="encryption_keys.rotated")
    assert event.changes == {
        "connections.Connection.api_key": [None, "1 re-encrypted"],
        "connections.Connection.access_token": [None, "1 re-encrypted"],
    }
    for value in SECRETS.values():
        assert value not in text and value not in str(event.changes)


def test_the_dry_run_flag_of_the_command(old_keys):
    make(api_key=SECRETS["api_key"])
    old_keys.SALT_KEY = [NEW_SALT, OLD_SALT]
    output = io.StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=output)
    assert "Dry run, nothing written: 1 secret(s) to re-encrypt" in output.getvalue()
    old_keys.SALT_KEY = [NEW_SALT]
    with pytest.raises(DecryptionError):
        Connection.objects.get(name="HubSpot")


@pytest.mark.parametrize("salt_key", ["", ",", " "])
@pytest.mark.parametrize("command", [["rotate_encryption_keys", "--dry-run"], ["check"]])
def test_an_empty_salt_stops_a_command_with_one_clear_error(salt_key, command, tmp_path):
    environment = {**os.environ, "SALT_KEY": salt_key, "DJANGO_SETTINGS_MODULE": "syncapp.settings",
                   "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}"}
    result = subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, env=environment,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "SALT_KEY is empty" in result.stderr


@pytest.mark.parametrize("salts", [[], ["old-salt-4b1f", ""]])
def test_rotation_called_with_an_empty_salt_changes_nothing(settings, salts):
    connection = make(api_key=SECRETS["api_key"])
    stored = raw(connection.pk, "api_key")
    settings.SALT_KEY = salts

    with pytest.raises(CommandError, match="SALT_KEY is empty"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert raw(connection.pk, "api_key") == stored
