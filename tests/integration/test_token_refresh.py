"""OAuth tokens through the real sandbox: expiry during a run, rotation under two worker
processes, and a revoked grant followed by Reconnect."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from connections.models import Connection
from connections.oauth import oauth_endpoints, token_refresh
from connections.reauth import connection_store_grant
from syncapp.models import Sync, SyncConnection, SyncRun
from syncapp.roles import MARKETER
from tests.connections.oauth_sandbox import approve_at, grant_from_sandbox
from tests.databases import test_database_url
from tests.integration.workspace import REPO, assert_consistent, run_now, sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROTATIONS = 100
OK = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)
WORKER_SECONDS = 90
# One worker process: loop API calls through the connection's client until the sandbox
# has rotated the refresh token ROTATIONS times; report the calls and the failures.
WORKER = """
import json, time, requests
from connections.models import Connection
from connections.registry import provider_for
provider = provider_for(Connection.objects.get(pk={connection_id}))
calls, failures, deadline = 0, [], time.monotonic() + {seconds}
while time.monotonic() < deadline:
    if calls % 10 == 0 and requests.get("{control}", timeout=10).json()["rotations"] >= {rotations}:
        break
    try:
        provider.http.json("GET", "/crm/v3/objects/contacts", params={{"limit": 1}})
    except Exception as error:
        failures.append(f"{{type(error).__name__}}: {{error}}")
    calls += 1
print("RESULT " + json.dumps({{"calls": calls, "failures": failures[:5], "failed": len(failures)}}))
"""


def oauth_hubspot(sandbox, sync: Sync) -> Connection:
    """Turn the sync's HubSpot connection into one authorized through the sandbox's OAuth."""
    hubspot = sync.connections.get(provider="hubspot")
    connection_store_grant(hubspot, grant_from_sandbox("hubspot", hubspot.base_url), oauth={})
    hubspot.save()
    return hubspot


@pytest.fixture
def sync(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox)


def test_a_run_longer_than_the_token_lifetime_refreshes_and_fails_no_call(sandbox, sync):
    sandbox.oauth(access_token_lifetime=2)
    hubspot = oauth_hubspot(sandbox, sync)
    sandbox.seed(hubspot_contacts=500, random_seed=3)
    # Each HubSpot call takes 0.7 s: reading 500 contacts takes several token lifetimes.
    sandbox.faults(provider="hubspot", rate=0, latency_ms=700)
    run = run_now(sync)
    # Partial only for the seed's contacts Mailchimp refuses, never for a failed call.
    assert run.status in OK, run.error
    assert not run.error
    assert run.read_count == 500
    oauth = sandbox.oauth()
    assert oauth["refreshes"] >= 2
    assert "401" not in sandbox.stats()["statuses"]["hubspot"]
    assert Connection.objects.get(pk=hubspot.pk).status == Connection.Status.CONNECTED
    sandbox.clear_faults()
    assert_consistent(sandbox)


def test_two_worker_processes_share_rotating_refresh_tokens_without_losing_the_grant(sandbox, sync, tmp_path):
    sandbox.oauth(access_token_lifetime=1, rotate_refresh_tokens=True)
    hubspot = oauth_hubspot(sandbox, sync)
    Connection.objects.filter(pk=hubspot.pk).update(rate_limit_requests=100_000, rate_limit_window_seconds=10)
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        # The workers refresh through the sandbox's OAuth: it is their configured sandbox.
        "SANDBOX_URL": sandbox.url,
        # Refresh a one-second token after a tenth of a second: many rotations, no expiry in flight.
        "OAUTH_REFRESH_MARGIN_FRACTION": "0.9",
        "PYTHONUNBUFFERED": "1",
    }
    code = WORKER.format(connection_id=hubspot.pk, seconds=WORKER_SECONDS, rotations=ROTATIONS,
                         control=f"{sandbox.url}/_sandbox/oauth")
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    workers = []
    for log in logs:
        with log.open("w") as output:
            workers.append(subprocess.Popen([sys.executable, str(REPO / "manage.py"), "shell", "-c", code], cwd=REPO,
                                            env=env, stdout=output, stderr=subprocess.STDOUT))
    for worker in workers:
        worker.wait(WORKER_SECONDS + 30)
    results = []
    for worker, log in zip(workers, logs, strict=True):
        output = log.read_text()
        assert worker.returncode == 0, output[-3000:]
        results.append(json.loads(output.split("RESULT ", 1)[1]))
    oauth = sandbox.oauth()
    assert oauth["rotations"] >= ROTATIONS
    assert oauth["refused_refreshes"] == 0
    for result in results:
        assert result["failed"] == 0, result["failures"]
        assert result["calls"] > 0
    stored = Connection.objects.get(pk=hubspot.pk)
    assert stored.status == Connection.Status.CONNECTED
    # The grant is not lost: the stored refresh token is the one the sandbox holds now.
    assert token_refresh(oauth_endpoints("hubspot", stored.base_url), stored.refresh_token).access_token


def test_a_revoked_grant_pauses_the_sync_alerts_and_reconnect_resumes_from_the_same_cursors(sandbox, sync, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    hubspot = oauth_hubspot(sandbox, sync)
    sandbox.seed(hubspot_contacts=50, random_seed=4)
    first = run_now(sync)
    assert first.status in OK, first.error
    cursors = dict(SyncConnection.objects.values_list("pk", "cursor"))
    assert SyncConnection.objects.get(connection=hubspot).cursor, "the first run saved HubSpot's cursor"

    sandbox.oauth_revoke()
    failed = run_now(sync)
    assert failed.status == SyncRun.Status.FAILED
    hubspot.refresh_from_db()
    assert hubspot.status == Connection.Status.NEEDS_REAUTH
    assert Sync.objects.get(pk=sync.pk).paused
    assert len(mail.outbox) == 1 and "needs reauthorization" in mail.outbox[0].subject
    assert dict(SyncConnection.objects.values_list("pk", "cursor")) == cursors

    client = Client()
    client.force_login(user_with_role("mara", MARKETER))
    banner = client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="reauth-banner"' in banner and "needs to be connected again" in banner
    client.post(reverse("connections:reconnect", args=[hubspot.pk]))
    flow_url = client.session["connections_oauth_flow"]["authorize_url"]
    response = client.get(reverse("connections:oauth_callback"), approve_at(flow_url))
    assert response.status_code == 302
    hubspot.refresh_from_db()
    assert hubspot.status == Connection.Status.CONNECTED
    assert not Sync.objects.get(pk=sync.pk).paused
    assert 'data-testid="reauth-banner"' not in client.get(reverse("dashboard")).content.decode()
    assert dict(SyncConnection.objects.values_list("pk", "cursor")) == cursors

    resumed = run_now(sync)
    assert resumed.status in OK, resumed.error
    # A delta run from the saved cursors: nothing changed, so nothing is read again.
    assert resumed.read_count < first.read_count
