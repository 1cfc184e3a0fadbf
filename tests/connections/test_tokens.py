"""Fresh access tokens: refresh ahead of expiry and after a 401, under the row lock; revoked grants."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from audit.models import AuditEvent
from connections.addresses import AddressRefused
from connections.models import Connection
from connections.providers.base import AuthenticationError
from connections.reauth import connection_reauthorized
from connections.registry import provider_for
from connections.tokens import (
    ConnectionTokens,
    ReauthorizationNeeded,
    access_token_fresh,
    access_token_refresh_after_401,
)
from syncapp.models import Sync, SyncConnection
from tests.connections.oauth_sandbox import grant_from_sandbox, oauth_connection

pytestmark = pytest.mark.django_db


def refreshes(sandbox) -> int:
    return sandbox.oauth()["refreshes"]


def sync_with(connection: Connection, name: str, **fields) -> Sync:
    sync = Sync.objects.create(name=name, schedule_minutes=0, **fields)
    SyncConnection.objects.create(sync=sync, connection=connection, cursor="cursor-of-" + name)
    return sync


def test_a_token_far_from_expiry_is_used_as_stored(sandbox):
    connection = oauth_connection(sandbox)
    assert access_token_fresh(connection.pk) == connection.access_token
    assert refreshes(sandbox) == 0


def test_a_token_close_to_expiry_is_refreshed_and_both_tokens_saved(sandbox):
    sandbox.oauth(rotate_refresh_tokens=True)
    connection = oauth_connection(sandbox)
    Connection.objects.filter(pk=connection.pk).update(token_expires_at=timezone.now() + timedelta(seconds=60))
    token = access_token_fresh(connection.pk)
    stored = Connection.objects.get(pk=connection.pk)
    assert token != connection.access_token and token == stored.access_token
    assert stored.refresh_token != connection.refresh_token
    assert stored.token_expires_at > timezone.now() + timedelta(seconds=1700)
    assert refreshes(sandbox) == 1


def test_the_margin_is_at_most_half_a_short_lifetime(sandbox):
    sandbox.oauth(access_token_lifetime=4)
    connection = oauth_connection(sandbox)
    assert access_token_fresh(connection.pk) == connection.access_token
    assert refreshes(sandbox) == 0


def test_after_a_401_a_token_another_worker_refreshed_is_used_without_refreshing(sandbox):
    connection = oauth_connection(sandbox)
    assert access_token_refresh_after_401(connection.pk, "an-older-token") == connection.access_token
    assert refreshes(sandbox) == 0


def test_after_a_401_on_the_stored_token_it_is_refreshed(sandbox):
    connection = oauth_connection(sandbox)
    token = access_token_refresh_after_401(connection.pk, connection.access_token)
    assert token != connection.access_token
    assert Connection.objects.get(pk=connection.pk).access_token == token
    assert refreshes(sandbox) == 1


def test_the_client_caches_the_token_until_it_is_due(sandbox, django_assert_num_queries):
    connection = oauth_connection(sandbox)
    tokens = ConnectionTokens(connection.pk)
    first = tokens.current()
    with django_assert_num_queries(0):
        assert tokens.current() == first


def test_a_401_is_answered_by_one_refresh_and_a_retry(sandbox):
    connection = oauth_connection(sandbox)
    sandbox.faults(provider="hubspot", rate=0, expire_tokens=True, count=1)
    provider = provider_for(connection)
    assert provider.discover_fields()
    assert refreshes(sandbox) == 1


def test_a_revoked_grant_marks_the_connection_pauses_its_syncs_and_alerts(
    sandbox, settings, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    connection = oauth_connection(sandbox)
    running = sync_with(connection, "Running")
    paused_by_hand = sync_with(connection, "Paused by hand", paused=True)
    Connection.objects.filter(pk=connection.pk).update(token_expires_at=timezone.now())
    sandbox.oauth_revoke()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReauthorizationNeeded, match="BAD_REFRESH"):
        access_token_fresh(connection.pk)
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    assert "refused the refresh token" in connection.last_error
    assert connection.settings["oauth"]["paused_sync_ids"] == [running.pk]
    assert Sync.objects.get(pk=running.pk).paused
    assert len(mail.outbox) == 1
    assert "needs reauthorization" in mail.outbox[0].subject and mail.outbox[0].to == ["ops@example.com"]
    assert AuditEvent.objects.filter(action="connection.needs_reauthorization", object_id=str(connection.pk)).exists()
    # Asked again: no refresh is sent, nothing is paused or mailed twice.
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReauthorizationNeeded):
        access_token_fresh(connection.pk)
    assert sandbox.oauth()["refused_refreshes"] == 1
    assert len(mail.outbox) == 1
    assert Sync.objects.get(pk=paused_by_hand.pk).paused


def test_a_401_right_after_a_refresh_marks_the_connection(sandbox):
    connection = oauth_connection(sandbox)
    sandbox.faults(provider="hubspot", rate=0, expire_tokens=True, count=2)
    with pytest.raises(AuthenticationError):
        provider_for(connection).discover_fields()
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.NEEDS_REAUTH


def test_a_revoked_mailchimp_token_marks_the_connection(sandbox):
    connection = oauth_connection(sandbox, "mailchimp", name="Mailchimp (OAuth)", settings={"list_id": sandbox.list_id})
    sandbox.oauth_revoke("mailchimp")
    with pytest.raises(ReauthorizationNeeded):
        provider_for(connection).discover_fields()
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    assert "no refresh token" in connection.last_error


def test_reconnecting_resumes_exactly_the_paused_syncs_and_keeps_cursors(sandbox, django_user_model):
    connection = oauth_connection(sandbox)
    running = sync_with(connection, "Running")
    paused_by_hand = sync_with(connection, "Paused by hand", paused=True)
    sandbox.oauth_revoke()
    with pytest.raises(ReauthorizationNeeded):
        access_token_refresh_after_401(connection.pk, connection.access_token)
    user = django_user_model.objects.create_user("mara")
    resumed = connection_reauthorized(connection=connection, grant=grant_from_sandbox("hubspot", connection.base_url),
                                      user=user)
    connection.refresh_from_db()
    assert resumed == [running.pk]
    assert connection.status == Connection.Status.CONNECTED and connection.last_error == ""
    assert "paused_sync_ids" not in connection.settings["oauth"]
    assert not Sync.objects.get(pk=running.pk).paused
    assert Sync.objects.get(pk=paused_by_hand.pk).paused
    assert set(SyncConnection.objects.values_list("cursor", flat=True)) == {"cursor-of-Running",
                                                                          "cursor-of-Paused by hand"}
    assert access_token_fresh(connection.pk) == connection.access_token


def test_a_refresh_goes_through_the_address_guard_and_a_refusal_is_no_revocation(settings, resolver):
    settings.CONNECTION_URL_ALLOWLIST = []
    # A sandbox there, so that the refresh goes to that host's token endpoint.
    settings.SANDBOX_URL = "https://api.example.test"
    # Public when the connection was saved; the metadata service by the time it refreshes.
    resolver.answer("api.example.test", ["169.254.169.254"])
    connection = Connection.objects.create(
        name="HubSpot (rebound)", provider="hubspot", base_url="https://api.example.test/hubspot",
        access_token="old-access", refresh_token="old-refresh",
        token_expires_at=timezone.now() - timedelta(minutes=1), settings={"oauth": {}},
    )
    with pytest.raises(AddressRefused, match="api.example.test resolves to a link-local address"):
        access_token_fresh(connection.pk)
    connection.refresh_from_db()
    assert connection.status == Connection.Status.CONNECTED
    assert connection.refresh_token == "old-refresh"
