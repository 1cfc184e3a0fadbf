"""Settings come from the environment; development keys are generated once; production
passes Django's deployment checks."""
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Print the settings a test looks at, as JSON, from a fresh interpreter.
SHOW_SETTINGS = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"],
    "options": db.get("OPTIONS", {}),
    "q_cluster": settings.Q_CLUSTER,
    "secret_key_fallbacks": settings.SECRET_KEY_FALLBACKS,
    "salt_key": settings.SALT_KEY,
}))
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        SALT_KEY=secrets.token_urlsafe(32),
        DJANGO_SETTINGS_MODULE="syncapp.settings",
    )
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{code}"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=60,
    )


def load_settings(**env: str) -> dict:
    result = run_python(SHOW_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_python(f"from django.core.management import call_command\ncall_command(*{list(args)!r})", **env)


def test_sqlite_is_the_default_with_wal_immediate_transactions_and_a_busy_timeout(tmp_path):
    loaded = load_settings(DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}")
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["options"]["transaction_mode"] == "IMMEDIATE"
    assert loaded["options"]["timeout"] >= 5
    assert "journal_mode=WAL" in loaded["options"]["init_command"]


def test_postgres_url_selects_postgresql_without_sqlite_options():
    loaded = load_settings(DATABASE_URL="postgres://postgres@127.0.0.1:5432/syncapp")
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert "transaction_mode" not in loaded["options"]


def test_the_orm_is_the_broker_unless_redis_url_is_set():
    assert load_settings()["q_cluster"]["orm"] == "default"
    with_redis = load_settings(REDIS_URL="redis://127.0.0.1:6379/0")["q_cluster"]
    assert with_redis["redis"] == "redis://127.0.0.1:6379/0"
    assert "orm" not in with_redis


def test_task_settings_avoid_django_q2_traps():
    cluster = load_settings()["q_cluster"]
    # A task still running when `retry` passes is handed to a second worker.
    assert cluster["timeout"] < cluster["retry"]
    assert cluster["catch_up"] is False
    assert 1 <= cluster["max_attempts"] <= 5


def test_key_lists_are_read_from_comma_separated_variables():
    loaded = load_settings(SALT_KEY="new-salt,old-salt", SECRET_KEY_FALLBACKS="old-key-1,old-key-2")
    assert loaded["salt_key"] == ["new-salt", "old-salt"]
    assert loaded["secret_key_fallbacks"] == ["old-key-1", "old-key-2"]


def test_any_providers_oauth_app_is_read_from_its_name_with_no_settings_line_for_it():
    loaded = run_python(
        "import json; from django.conf import settings; print(json.dumps(settings.OAUTH_CLIENTS))",
        HUBSPOT_CLIENT_ID="hub-app", HUBSPOT_CLIENT_SECRET="hub-secret",
        ACTIVECAMPAIGN_CLIENT_ID="ac-app", ACTIVECAMPAIGN_CLIENT_SECRET="ac-secret",
        KLAVIYO_CLIENT_ID="kl-app",
    )
    assert loaded.returncode == 0, loaded.stderr
    clients = json.loads(loaded.stdout)
    assert clients["hubspot"] == {"client_id": "hub-app", "client_secret": "hub-secret"}
    assert clients["activecampaign"] == {"client_id": "ac-app", "client_secret": "ac-secret"}
    # An app without its secret is kept as it is; connecting then says what is missing.
    assert clients["klaviyo"] == {"client_id": "kl-app", "client_secret": ""}
    # The sandbox's own OAuth app is not a provider's.
    assert "sandbox_oauth" not in clients


# The keys production requires besides SECRET_KEY and SALT_KEY.
PRODUCTION_KEYS = {
    "SUPPRESSION_KEYS": f"k1:{secrets.token_urlsafe(32)}",
    "RECEIPT_SIGNING_KEY": secrets.token_urlsafe(32),
}


def test_production_settings_pass_the_deployment_checks():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", DJANGO_SETTINGS_MODULE="syncapp.settings.production",
        **PRODUCTION_KEYS,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr


@pytest.mark.parametrize("missing", sorted(PRODUCTION_KEYS))
def test_production_requires_the_suppression_and_receipt_keys(missing):
    keys = {name: value for name, value in PRODUCTION_KEYS.items() if name != missing}
    result = manage("check", DJANGO_SETTINGS_MODULE="syncapp.settings.production", **keys)
    assert result.returncode != 0
    assert f"Set the {missing} environment variable" in result.stderr


def test_development_derives_a_suppression_key_from_the_secret_key():
    result = run_python("from django.conf import settings\n"
                        "print(settings.SUPPRESSION_KEYS[0].split(':')[0], len(settings.RECEIPT_SIGNING_KEY))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["k1", "64"]


def test_production_refuses_a_weak_secret_key():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_SETTINGS_MODULE="syncapp.settings.production", SECRET_KEY="too-short", **PRODUCTION_KEYS,
    )
    assert result.returncode != 0
    assert "security.W009" in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_generates_development_keys_once_and_never_overwrites_them(tmp_path):
    make = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-C", str(tmp_path), ".env"]
    subprocess.run(make, check=True, capture_output=True, timeout=60)
    env_file = tmp_path / ".env"
    first = env_file.read_text()
    values = dict(line.split("=", 1) for line in first.splitlines())
    assert set(values) == {"SECRET_KEY", "SALT_KEY"}
    assert len(values["SECRET_KEY"]) >= 50 and len(set(values["SECRET_KEY"])) >= 5
    assert len(values["SALT_KEY"]) >= 32
    assert env_file.stat().st_mode & 0o077 == 0, "the keys file is readable by others"

    subprocess.run(make, check=True, capture_output=True, timeout=60)
    assert env_file.read_text() == first
