"""The HTTP client: timeouts on every call, bounded retries, Retry-After, error classes, no secrets."""
import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
from django.test import override_settings
from requests.auth import HTTPBasicAuth

from connections.addresses import AddressRefused
from connections.http import GuardedSession, HttpClient, RequestRefused, parse_retry_after
from connections.providers.base import AuthenticationError, ProviderError, TransientError
from connections.ratelimit import RateBudget
from connections.validators import validate_public_base_url
from tests.connections.loopback import LoopbackServer, Reply

BASE = "https://api.example.test"
TOKEN = "pat-na1-0123456789abcdef"
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "http-tests"}}


class FakeClock:
    """Time that passes only when a budget sleeps."""

    def __init__(self):
        self.now = 2_000_000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def client(sleeps=None, **kwargs) -> HttpClient:
    kwargs.setdefault("auth", {"Authorization": f"Bearer {TOKEN}"})
    kwargs.setdefault("secrets", (TOKEN,))
    return HttpClient(BASE, provider="Example", sleep=sleeps if sleeps is not None else Sleeps(), jitter=lambda: 1.0,
                      **kwargs)


@responses.activate
def test_a_successful_call_sends_credentials_and_both_timeouts():
    responses.get(f"{BASE}/things", json={"ok": True})
    http = client(connect_timeout=3, read_timeout=45)
    assert http.json("GET", "/things") == {"ok": True}
    call = responses.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.request.req_kwargs["timeout"] == (3, 45)
    assert http.request_count == 1


@responses.activate
def test_every_retry_has_the_timeouts_too():
    responses.get(f"{BASE}/things", status=503)
    responses.get(f"{BASE}/things", json={})
    http = client(connect_timeout=2, read_timeout=9)
    http.json("GET", "/things")
    assert [call.request.req_kwargs["timeout"] for call in responses.calls] == [(2, 9), (2, 9)]


@responses.activate
def test_an_auth_object_is_used_as_given():
    responses.get(f"{BASE}/things", json={})
    client(auth=HTTPBasicAuth("any", "key-us6")).json("GET", "/things")
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_a_429_with_retry_after_seconds_waits_that_long():
    responses.get(f"{BASE}/things", status=429, headers={"Retry-After": "7"}, json={"message": "slow down"})
    responses.get(f"{BASE}/things", json={"ok": True})
    sleeps = Sleeps()
    http = client(sleeps)
    assert http.json("GET", "/things") == {"ok": True}
    assert sleeps == [7.0]
    assert http.request_count == 2


@responses.activate
def test_a_429_with_an_http_date_waits_until_then():
    later = datetime.now(UTC) + timedelta(seconds=30)
    responses.get(f"{BASE}/things", status=429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    responses.get(f"{BASE}/things", json={})
    sleeps = Sleeps()
    client(sleeps).json("GET", "/things")
    assert 27 <= sleeps[0] <= 30


@responses.activate
def test_a_429_without_retry_after_backs_off_exponentially_up_to_the_cap():
    for _ in range(5):
        responses.get(f"{BASE}/things", status=429)
    responses.get(f"{BASE}/things", json={})
    sleeps = Sleeps()
    client(sleeps, backoff_base=0.5, backoff_cap=3.0, max_retries=5).json("GET", "/things")
    # jitter() returns 1.0 here: the top of each full-jitter range.
    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_between_zero_and_the_ceiling():
    http = HttpClient(BASE, jitter=lambda: 0.25, backoff_base=1.0, backoff_cap=10.0)
    assert [http._backoff(attempt) for attempt in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.5]


@responses.activate
def test_a_retry_after_beyond_the_limit_gives_up_at_once():
    responses.get(f"{BASE}/things", status=429, headers={"Retry-After": "86400"}, json={"message": "daily limit"})
    sleeps = Sleeps()
    with pytest.raises(TransientError, match="asked to wait longer") as caught:
        client(sleeps, max_retry_after=120).json("GET", "/things")
    assert caught.value.retriable
    assert sleeps == []


@override_settings(CACHES=LOCMEM)
@responses.activate
def test_a_429_holds_off_every_worker_sharing_the_budget():
    responses.get(f"{BASE}/things", status=429, headers={"Retry-After": "5"})
    responses.get(f"{BASE}/things", json={})
    this_worker, other_worker = FakeClock(), FakeClock()
    budget = RateBudget(f"http-{uuid.uuid4()}", 100, 10, clock=this_worker, sleep=this_worker.sleep)
    client(budget=budget).json("GET", "/things")
    RateBudget(budget.key, 100, 10, clock=other_worker, sleep=other_worker.sleep).acquire()
    assert sum(other_worker.sleeps) >= 5


@override_settings(CACHES=LOCMEM)
@responses.activate
def test_a_call_with_an_endpoint_budget_waits_for_both_budgets_on_every_attempt():
    responses.get(f"{BASE}/search", status=429)
    responses.get(f"{BASE}/search", json={})
    responses.get(f"{BASE}/other", json={})
    clock = FakeClock()
    account = RateBudget(f"http-{uuid.uuid4()}", 100, 10, clock=clock, sleep=clock.sleep)
    search = account.narrower("search", 1, 1)
    http = client(budget=account)
    http.json("GET", "/search", endpoint_budget=search)
    # The retry waited for the endpoint's one request per second; the other call did not.
    assert sum(clock.sleeps) >= 1
    waited = sum(clock.sleeps)
    http.json("GET", "/other")
    assert sum(clock.sleeps) == waited
    assert http.request_count == 3


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried(status):
    responses.post(f"{BASE}/things", status=status)
    responses.post(f"{BASE}/things", json={"id": 1})
    http = client()
    assert http.json("POST", "/things", json={"a": 1}) == {"id": 1}
    assert http.request_count == 2


@responses.activate
def test_retries_are_bounded_and_end_in_a_transient_error():
    responses.get(f"{BASE}/things", status=503, body="<html>503 Service Unavailable</html>")
    http = client(max_retries=3)
    with pytest.raises(TransientError) as caught:
        http.json("GET", "/things")
    assert http.request_count == 4
    assert caught.value.status == 503
    assert caught.value.retriable
    assert "gave up after 4 attempts" in str(caught.value)
    assert "Example GET /things" in str(caught.value)


@responses.activate
@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("Connection reset by peer"), requests.ReadTimeout("read timed out")]
)
def test_resets_and_timeouts_are_retried(failure):
    responses.get(f"{BASE}/things", body=failure)
    responses.get(f"{BASE}/things", json={"ok": True})
    http = client()
    assert http.json("GET", "/things") == {"ok": True}
    assert http.request_count == 2


@responses.activate
def test_a_connection_that_keeps_failing_ends_in_a_transient_error_without_a_status():
    responses.get(f"{BASE}/things", body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(TransientError, match="ConnectTimeout") as caught:
        client(max_retries=2).json("GET", "/things")
    assert caught.value.status is None


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_an_authentication_error_at_once(status):
    responses.get(f"{BASE}/things", status=status,
                  json={"title": "API Key Invalid", "detail": "Your API key may be invalid."})
    http = client()
    with pytest.raises(AuthenticationError,
                       match="HTTP 40[13]: API Key Invalid; Your API key may be invalid") as caught:
        http.json("GET", "/things")
    assert caught.value.status == status
    assert not caught.value.retriable
    assert http.request_count == 1


@responses.activate
def test_other_client_errors_are_not_retried_and_carry_the_providers_words():
    body = {
        "status": "error",
        "message": "Property values were not valid",
        "category": "VALIDATION_ERROR",
        "errors": [{"message": "Email address a..b@example.com is invalid", "name": "email"}],
    }
    responses.post(f"{BASE}/batch", status=400, json=body)
    http = client()
    with pytest.raises(ProviderError) as caught:
        http.json("POST", "/batch", json={})
    error = caught.value
    assert type(error) is ProviderError
    assert error.status == 400
    assert not error.retriable
    assert "HTTP 400" in str(error)
    assert "Property values were not valid" in str(error)
    assert "email: Email address a..b@example.com is invalid" in str(error)
    assert error.body == body
    assert http.request_count == 1


@responses.activate
def test_mailchimp_problem_details_are_explained():
    responses.post(
        f"{BASE}/lists/x",
        status=400,
        json={"title": "Invalid Resource", "detail": "Bad merge field",
              "errors": [{"field": "FNAME", "message": "too long"}]},
    )
    with pytest.raises(ProviderError, match="Invalid Resource; Bad merge field; FNAME: too long"):
        client().json("POST", "/lists/x", json={})


@responses.activate
def test_errors_given_as_title_and_detail_are_explained():
    # ActiveCampaign's 422 names the problem in the items' title and detail, with no message.
    responses.post(
        f"{BASE}/contacts",
        status=422,
        json={"errors": [{"title": "Email address already exists in the system.", "detail": "",
                          "code": "duplicate", "source": {"pointer": "/data/attributes/email"}}]},
    )
    with pytest.raises(ProviderError, match="HTTP 422.*Email address already exists in the system."):
        client().json("POST", "/contacts", json={})


@responses.activate
def test_a_credential_echoed_by_the_provider_never_reaches_the_message():
    responses.get(f"{BASE}/things", status=400,
                  json={"message": f"token {TOKEN} is malformed; Authorization: Bearer {TOKEN}"})
    with pytest.raises(ProviderError) as caught:
        client().json("GET", "/things")
    assert TOKEN not in str(caught.value)
    assert "[redacted]" in str(caught.value)


@responses.activate
def test_retry_log_lines_carry_no_credential(caplog):
    responses.get(f"{BASE}/things", body=requests.ConnectionError(f"reset while sending Bearer {TOKEN}"))
    responses.get(f"{BASE}/things", json={})
    with caplog.at_level(logging.WARNING, logger="connections.http"):
        client().json("GET", "/things")
    assert "retry 1" in caplog.text
    assert TOKEN not in caplog.text


@responses.activate
def test_an_empty_reply_reads_as_none_and_a_non_json_one_is_an_error():
    responses.delete(f"{BASE}/things/1", status=204)
    responses.get(f"{BASE}/things/2", body="<html>hello</html>")
    http = client()
    assert http.json("DELETE", "/things/1") is None
    with pytest.raises(ProviderError, match="not JSON"):
        http.json("GET", "/things/2")


def test_one_session_per_client():
    first, second = client(), client()
    assert first.session is not second.session
    assert first.session.headers["Authorization"] == f"Bearer {TOKEN}"


def test_negative_retries_are_refused():
    with pytest.raises(ValueError):
        HttpClient(BASE, max_retries=-1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("12", 12.0), (" 1.5 ", 1.5), ("-3", 0.0), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_values(header, expected):
    assert parse_retry_after(header) == expected


# The guard: every connection is opened to an address checked at that moment, and no
# redirect is followed. Servers run on loopback; other names come from the stub resolver,
# and the autouse `only_loopback` fixture fails a test that tries to leave the machine.

METADATA = "http://169.254.169.254/latest/meta-data/"


def test_a_name_that_rebinds_to_the_metadata_service_after_the_save_check_is_refused_at_connect(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    resolver.answer("api.example.test", ["93.184.216.34"], ["169.254.169.254"])
    validate_public_base_url(f"{BASE}/hubspot")
    http = client()
    with pytest.raises(AddressRefused, match="api.example.test resolves to a link-local address") as refused:
        http.json("GET", "/things")
    assert str(refused.value).startswith("Example GET /things failed: Not connecting")
    assert not refused.value.retriable
    # Asked once at save and once at connect: a refusal is not retried.
    assert resolver.asked == ["api.example.test", "api.example.test"]


def test_a_name_resolving_to_public_and_private_addresses_is_refused(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    resolver.answer("api.example.test", ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(AddressRefused, match="private address"):
        client().json("GET", "/things")


@pytest.mark.parametrize("host", ["[64:ff9b::a9fe:a9fe]", "[::169.254.169.254]", "[::ffff:a9fe:a9fe]",
                                  "[2002:a9fe:a9fe::1]", "[2001:0:4136:e378:8000:63bf:3fff:fdd2]"])
def test_an_ipv6_literal_embedding_an_ipv4_address_is_refused_at_connect(host, resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    with pytest.raises(AddressRefused, match="embeds an IPv4 address"):
        HttpClient(f"https://{host}/3.0", provider="Example").json("GET", "/ping")
    assert resolver.asked == []


def test_the_connection_goes_to_exactly_the_address_that_was_checked(resolver, settings, monkeypatch):
    settings.CONNECTION_URL_ALLOWLIST = ["pinned.test"]
    resolver.answer("pinned.test", ["127.0.0.1"])
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with LoopbackServer({("GET", "/things"): Reply(body={"ok": True})}) as server:
        reply = HttpClient(f"http://pinned.test:{server.port}", provider="Example").json("GET", "/things")
    assert reply == {"ok": True}
    assert resolver.asked == ["pinned.test"]
    # The socket was opened to the checked address; the name was never looked up again.
    assert looked_up == ["127.0.0.1"]
    # The request still names the host it is for.
    assert server.requests[0].headers["Host"] == f"pinned.test:{server.port}"


@pytest.mark.parametrize(("method", "status"), [("GET", 301), ("GET", 302), ("POST", 303), ("POST", 307),
                                                ("PUT", 308)])
def test_a_redirect_is_a_provider_error_and_is_not_followed(method, status, settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    routes = {(method, "/things"): Reply(status, {}, {"Location": METADATA})}
    with LoopbackServer(routes) as server:
        http = HttpClient(server.url, provider="Example", sleep=Sleeps())
        with pytest.raises(RequestRefused) as refused:
            http.request(method, "/things")
    assert isinstance(refused.value, ProviderError) and not refused.value.retriable
    assert refused.value.status == status
    assert f"HTTP {status}" in str(refused.value)
    assert "redirects to 169.254.169.254; redirects are not followed" in str(refused.value)
    assert len(server.requests) == 1 and http.request_count == 1


def test_the_guarded_session_follows_no_redirect_even_when_asked_to(settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with LoopbackServer({("GET", "/token"): Reply(302, {}, {"Location": METADATA})}) as server:
        with GuardedSession() as session, pytest.raises(RequestRefused, match="HTTP 302"):
            session.get(f"{server.url}/token", allow_redirects=True, timeout=5)
    assert len(server.requests) == 1


def test_plain_http_to_a_host_outside_the_allowlist_is_not_sent(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    resolver.answer("api.example.test", ["93.184.216.34"])
    with pytest.raises(RequestRefused, match="use https"):
        HttpClient("http://api.example.test", provider="Example").json("GET", "/things")
    assert resolver.asked == []


def test_proxies_from_the_environment_are_ignored(settings, monkeypatch):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    # Nothing listens on port 9: a request sent through this proxy would fail.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with LoopbackServer({("GET", "/things"): Reply(body={"ok": True})}) as server:
        assert HttpClient(server.url).json("GET", "/things") == {"ok": True}


def test_an_explicit_proxy_is_refused(settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with GuardedSession() as session, pytest.raises(RequestRefused, match="proxy"):
        session.get("http://127.0.0.1:9/things", proxies={"http": "http://127.0.0.1:9"}, timeout=5)


def test_a_checked_address_that_refuses_the_connection_is_a_transient_failure(settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sleeps = Sleeps()
    http = HttpClient(f"http://127.0.0.1:{closed_port}", provider="Example", max_retries=1, sleep=sleeps)
    with pytest.raises(TransientError, match="gave up after 2 attempts; last: ConnectionError"):
        http.json("GET", "/things")
    assert len(sleeps) == 1
