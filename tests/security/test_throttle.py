"""Login throttling: five failures for a username, or twenty from one address, within
15 minutes lock it out for 15 minutes, on the app's login page and the admin's alike."""
from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from syncapp.roles import MARKETER
from syncapp.security.throttle import client_ip, login_failure_record, login_lockout_seconds
from tests.workspace import PASSWORD, user_with_role

pytestmark = pytest.mark.django_db

LOCKED_MESSAGE = "Too many failed login attempts. Try again in 15 minutes."
WRONG = "not the password"
APP_LOGIN, ADMIN_LOGIN = "login", "admin:login"


@pytest.fixture
def maria():
    return user_with_role("maria", MARKETER, staff=True)


def attempt(client, password: str, *, username: str = "maria", page: str = APP_LOGIN, address: str = "192.0.2.10"):
    return client.post(reverse(page), {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(client, times: int, **kwargs) -> None:
    for _ in range(times):
        response = attempt(client, WRONG, **kwargs)
        assert response.status_code == 200
        assert LOCKED_MESSAGE not in response.content.decode()


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_four_failures_do_not_lock_the_user_out(client, maria):
    fail(client, 4)
    assert attempt(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_fifth_failure_locks_the_username_out_even_for_the_right_password(client, maria):
    fail(client, 5)
    response = attempt(client, PASSWORD)
    assert response.status_code == 200
    assert LOCKED_MESSAGE in response.content.decode()
    assert not logged_in(client)


def test_the_admin_login_is_locked_too_and_counts_with_the_app_login(client, maria):
    fail(client, 3)
    fail(client, 2, page=ADMIN_LOGIN)
    response = attempt(client, PASSWORD, page=ADMIN_LOGIN)
    assert LOCKED_MESSAGE in response.content.decode()
    assert not logged_in(client)


def test_the_lockout_ends_after_fifteen_minutes():
    # No real user is needed: the lockout is about the username typed.
    for _ in range(5):
        login_failure_record(username="maria", ip="192.0.2.10")
    locked_at = timezone.now()
    assert 14 * 60 < login_lockout_seconds(username="maria", ip="", now=locked_at) <= 15 * 60
    assert login_lockout_seconds(username="maria", ip="", now=locked_at + timedelta(minutes=15)) == 0


def test_a_successful_login_starts_the_count_again(client, maria):
    fail(client, 4)
    assert attempt(client, PASSWORD).status_code == 302
    client.logout()
    fail(client, 4)
    assert attempt(client, PASSWORD).status_code == 302


def test_unknown_usernames_lock_out_the_same_way_so_nothing_tells_them_apart(client):
    fail(client, 5, username="nobody")
    assert LOCKED_MESSAGE in attempt(client, WRONG, username="nobody").content.decode()


def test_twenty_failures_from_one_address_lock_that_address_out_for_every_username(client, maria):
    for number in range(20):
        attempt(client, WRONG, username=f"guess{number}")
    assert LOCKED_MESSAGE in attempt(client, PASSWORD).content.decode()
    assert attempt(client, PASSWORD, address="198.51.100.7").status_code == 302


def test_failures_and_lockouts_are_audited_without_the_password(client, maria):
    fail(client, 5)
    failures = AuditEvent.objects.filter(action="login.failed")
    assert failures.count() == 5
    assert {(event.object_id, event.changes["ip"][1]) for event in failures} == {("maria", "192.0.2.10")}
    lockout = AuditEvent.objects.get(action="login.locked_out")
    assert (lockout.object_type, lockout.object_id) == ("username", "maria")
    assert lockout.changes == {"failures": [None, 5], "locked_minutes": [None, 15]}
    assert not AuditEvent.objects.filter(changes__icontains=WRONG).exists()


def test_the_client_address_is_remote_addr_unless_proxies_are_trusted(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.1")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    # The entry the proxy appended; the ones before it are the client's own claims.
    assert client_ip(request) == "198.51.100.1"
    settings.TRUSTED_PROXY_COUNT = 3
    assert client_ip(request) == "10.0.0.2"
