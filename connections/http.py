"""One HTTP client per connection: a session, timeouts, the rate budget and bounded retries.

Every request goes through `HttpClient.request`: it waits for the connection's rate
budget and a concurrency slot, sends with a connect and a read timeout, and retries what
may succeed later (429, 5xx, timeouts, resets) with exponential backoff and full jitter,
honouring Retry-After. Other 4xx are not retried. Errors are raised as the provider
interface's exceptions, with messages that carry the provider's explanation and never a
credential.

With a token source (`TokenSource`, for OAuth connections) each request carries the
source's current access token, and a 401 is answered once by a refresh and a retry; a
second 401 tells the source the grant no longer works.

Every outbound request Syncapp makes (provider clients, OAuth code exchange, token
refresh, Mailchimp's metadata call) goes through `GuardedSession`: it connects only to
addresses that `connections.addresses` allows, resolved and checked when the
connection is opened and then used as checked; it speaks plain http only to
allowlisted hosts, ignores proxies from the environment and follows no redirect.
"""
from __future__ import annotations

import email.utils
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from connections.addresses import AddressRefused, allowlisted, checked_addresses
from connections.providers.base import AuthenticationError, ProviderError, TransientError
from connections.ratelimit import RateBudget
from connections.redaction import redact

logger = logging.getLogger(__name__)

USER_AGENT = "Syncapp/0.1 (+self-hosted contact sync)"
# How much of a provider's error text goes into a message.
_DETAIL_LIMIT = 500
# Client errors that say "not now" rather than "never": request timeout, rate limit.
_RETRIED_4XX = (408, 429)


class RequestRefused(ProviderError):
    """The guard would not send a request, or follow where its reply points."""

    retriable = False


class _PinnedConnection:
    """Open the socket to an address `checked_addresses` passed, and to no other.

    urllib3 would resolve the name once more inside `create_connection`, and a name that
    resolved to a public address for the check can resolve to 169.254.169.254 a moment
    later (DNS rebinding). So the name is resolved once, here, when the connection is
    opened, every address is checked, and the socket goes to one of exactly those.
    TLS still sends the host name (SNI) and verifies the certificate against it:
    `HTTPSConnection.connect` wraps this socket using `self.host`, not the address.
    """

    def _new_conn(self) -> socket.socket:
        try:
            addresses = checked_addresses(self._dns_host, self.port)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        failure: OSError | None = None
        for address in addresses:
            try:
                # A numeric address: create_connection's getaddrinfo does no lookup.
                return create_connection(
                    (address, self.port), self.timeout,
                    source_address=self.source_address, socket_options=self.socket_options,
                )
            except OSError as error:
                failure = error
        if isinstance(failure, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from failure
        raise NewConnectionError(self, f"Failed to establish a new connection: {failure}") from failure


class _GuardedHTTPConnection(_PinnedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections are pinned to checked addresses."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        # Through a proxy, the address checked would be the proxy's and the proxy would
        # reach the target, wherever it is.
        raise RequestRefused("Requests through a proxy are not sent: the address check would not cover the target.")


class GuardedSession(requests.Session):
    """A requests session that sends only what the address policy allows, and follows no redirect.

    Redirects are refused rather than checked hop by hop: no API or token endpoint
    Syncapp calls answers with one, a redirect to another host would carry the
    credential headers there, and a refusal names the status so that a wrong base URL
    (http for https, a moved API root) is fixed where it is configured.
    """

    def __init__(self) -> None:
        super().__init__()
        # Proxies from the environment would carry requests past the address check, and
        # ~/.netrc credentials would be added for whatever host a URL names.
        self.trust_env = False
        adapter = GuardedAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.scheme != "https" and not (parts.scheme == "http" and allowlisted(parts.hostname or "")):
            raise RequestRefused(
                f"Plain {parts.scheme or 'scheme-less'} requests to {parts.hostname or 'this address'} are not sent: "
                "use https (plain http is only for hosts in CONNECTION_URL_ALLOWLIST)."
            )
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        if 300 <= response.status_code < 400:
            target = urlsplit(response.headers.get("Location", "")).hostname
            response.close()
            raise RequestRefused(
                f"HTTP {response.status_code}: the reply redirects"
                + (f" to {target}" if target else "")
                + "; redirects are not followed. Check the base URL.",
                status=response.status_code,
            )
        return response


class TokenSource(Protocol):
    """Where an OAuth connection's client gets its access token (see connections.tokens)."""

    scheme: str

    def current(self) -> str: ...

    def after_unauthorized(self, stale: str) -> str: ...

    def rejected(self) -> None: ...


class HttpClient:
    """Send requests to one account's API within its budget, retrying what is transient.

    Write calls are retried too: every write Syncapp makes is idempotent (upserts keyed
    by email, archive and erase of one record), so sending one twice after a lost reply
    does no harm.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthBase | Mapping[str, str] | None = None,
        tokens: TokenSource | None = None,
        budget: RateBudget | None = None,
        provider: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.provider = provider or "provider"
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.secrets = tuple(secret for secret in secrets if secret)
        self.tokens = tokens
        self._sleep = sleep
        self._jitter = jitter
        # Every HTTP request sent, retries included: the run reports its API calls.
        self.request_count = 0
        self._count_lock = threading.Lock()
        # Called just before each attempt of a request other than GET, once it may leave:
        # a run's lease fence (syncapp.services.tracker) raises there when the run may no
        # longer write.
        self.before_write: Callable[[], None] | None = None
        self.session = GuardedSession()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if isinstance(auth, Mapping):
            self.session.headers.update(auth)
        elif auth is not None:
            self.session.auth = auth

    def close(self) -> None:
        self.session.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its parsed JSON body (None for an empty body)."""
        return self._parsed(method, path, self.request(method, path, **kwargs))

    def json_dated(self, method: str, path: str, **kwargs: Any) -> tuple[Any, int | None]:
        """Send a request; return its parsed JSON body and the provider's clock when it answered.

        The time is the reply's Date header in milliseconds since the epoch (whole
        seconds, rounded down), None without a readable one: a delta read moves its
        watermark by the provider's clock, never by ours (connections.providers.cursors).
        """
        response = self.request(method, path, **kwargs)
        return self._parsed(method, path, response), reply_date_ms(response)

    def _parsed(self, method: str, path: str, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                self._describe(method, path, response.status_code, "the reply is not JSON"), status=response.status_code
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        endpoint_budget: RateBudget | None = None,
    ) -> requests.Response:
        """Send `method path`, retrying transient failures; return a 2xx response or raise.

        `endpoint_budget` is a rate limit the endpoint has on top of the account's (such
        as HubSpot's search): every attempt waits for both.
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        refreshed = False
        while True:
            headers = None
            if self.tokens is not None:
                token = self.tokens.current()
                headers = {"Authorization": f"{self.tokens.scheme} {token}"}
            try:
                response = self._send(method, url, endpoint_budget, params=params, json=json, headers=headers)
            except (AddressRefused, RequestRefused) as refusal:
                raise type(refusal)(
                    self._describe(method, path, refusal.status, str(refusal)), status=refusal.status
                ) from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
                status = None
            else:
                if response.status_code < 400:
                    return response
                status = response.status_code
                if status == 401 and self.tokens is not None:
                    if not refreshed:
                        # Expired early, or another worker's refresh replaced it: once more with a fresh one.
                        self.tokens.after_unauthorized(token)
                        refreshed = True
                        continue
                    self.tokens.rejected()
                if status in (401, 403):
                    # The body says which: a HubSpot 403 names the missing scopes (MISSING_SCOPES).
                    raise AuthenticationError(
                        self._describe(method, path, status, _explain(response)), status=status, body=_body(response)
                    )
                if status not in _RETRIED_4XX and status < 500:
                    raise ProviderError(
                        self._describe(method, path, status, _explain(response)), status=status, body=_body(response)
                    )
                failure = f"HTTP {status}: {_explain(response)}"
                delay = self._retry_delay(response, attempt)
                if delay is None:
                    raise TransientError(
                        self._describe(method, path, status, "asked to wait longer than this client waits"),
                        status=status,
                    )
                if status == 429:
                    # Slow every worker of this connection down, not just this one.
                    for budget in (self.budget, endpoint_budget):
                        if budget is not None:
                            budget.hold_off(delay)
            if attempt >= self.max_retries:
                raise TransientError(
                    self._describe(method, path, status, f"gave up after {attempt + 1} attempts; last: {failure}"),
                    status=status,
                )
            logger.warning(
                "%s",
                redact(f"{self.provider} {method} {path}: {failure}; retry {attempt + 1} in {delay:.2f}s",
                       self.secrets),
            )
            self._sleep(delay)
            attempt += 1

    def _send(self, method: str, url: str, endpoint_budget: RateBudget | None, **kwargs: Any) -> requests.Response:
        if self.budget is not None:
            self.budget.acquire()
        if endpoint_budget is not None:
            # After the account's budget: the request then leaves as soon as the narrower
            # window allows, so sends stay spaced as that window counts them.
            endpoint_budget.acquire()
        if self.budget is None:
            return self._count_and_send(method, url, **kwargs)
        with self.budget.slot():
            return self._count_and_send(method, url, **kwargs)

    def _count_and_send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if self.before_write is not None and method.upper() != "GET":
            self.before_write()
        with self._count_lock:
            self.request_count += 1
        return self.session.request(method, url, timeout=self.timeout, **kwargs)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: anywhere up to base * 2**attempt, capped."""
        return self._jitter() * min(self.backoff_cap, self.backoff_base * 2**attempt)

    def _retry_delay(self, response: requests.Response, attempt: int) -> float | None:
        """Return how long to wait before retrying; None when told to wait too long."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self._backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        return retry_after

    def _describe(self, method: str, path: str, status: int | None, detail: str) -> str:
        where = f"{self.provider} {method} {path.split('?')[0]}"
        text = f"{where} failed with HTTP {status}: {detail}" if status else f"{where} failed: {detail}"
        return redact(text, self.secrets)


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _explain(response: requests.Response) -> str:
    """Return the provider's own words about an error: title, message, detail, errors."""
    body = _body(response)
    if body is None:
        text = response.text.strip()
        return text[:_DETAIL_LIMIT] if text else response.reason or "no explanation given"
    if not isinstance(body, dict):
        return str(body)[:_DETAIL_LIMIT]
    parts = [str(body[key]) for key in ("title", "message", "detail") if body.get(key)]
    for item in body.get("errors") or []:
        if isinstance(item, dict):
            field = item.get("field") or item.get("name") or ""
            # JSON:API-style errors (ActiveCampaign's 422s) say it in title and detail.
            message = (item.get("message") or item.get("field_message") or item.get("error")
                       or " ".join(str(item[key]) for key in ("title", "detail") if item.get(key)))
            parts.append(f"{field}: {message}" if field else str(message))
    return "; ".join(parts)[:_DETAIL_LIMIT] or response.reason or "no explanation given"


def reply_date_ms(response: requests.Response) -> int | None:
    """Return a reply's Date header in milliseconds since the epoch; None when it has none or it cannot be read."""
    try:
        moment = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return int(moment.timestamp()) * 1000
