"""The sandbox WSGI app: emulated HubSpot under /hubspot, Mailchimp under /mailchimp/3.0,
their OAuth pages and token endpoints (see `sandbox.oauth`), control endpoints under
/_sandbox/ (see `sandbox.control`).

Every provider request goes through the same gateway, in the order the real services
apply it: credentials (the provider's 401), limits (its 429), injected faults, then the
endpoint itself. It is counted in the stats whatever the outcome.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from werkzeug.wrappers import Request, Response

from .control import PREFIX as CONTROL_PREFIX
from .control import Control
from .errors import DropConnection, ProviderError, json_response
from .faults import Fault, FaultInjector
from .hubspot import HubSpotAPI
from .mailchimp import MAX_CONNECTIONS, MailchimpAPI
from .oauth import PATHS as OAUTH_PATHS
from .oauth import OAuthAuthority
from .provider import EmulatedAPI, Route
from .seed import Seeder
from .stats import RequestStats
from .store import Store

DEFAULT_HUBSPOT_TOKEN = "sandbox-hubspot-token"
# A Mailchimp API key ends in "-<datacenter>"; clients take the datacenter from it.
DEFAULT_MAILCHIMP_KEY = "sandbox-mailchimp-key-us1"
DEFAULT_HUBSPOT_RATE_LIMIT = 190
DEFAULT_HUBSPOT_SEARCH_RATE_LIMIT = 5
DATABASE_NAME = "sandbox.sqlite3"
# Mailchimp batches of 500 members with long values run to several megabytes.
MAX_BODY_BYTES = 32 * 1024 * 1024

logger = logging.getLogger("sandbox")


@dataclass(frozen=True)
class SandboxSettings:
    hubspot_token: str = DEFAULT_HUBSPOT_TOKEN
    mailchimp_key: str = DEFAULT_MAILCHIMP_KEY
    hubspot_rate_limit: int = DEFAULT_HUBSPOT_RATE_LIMIT
    hubspot_search_rate_limit: int = DEFAULT_HUBSPOT_SEARCH_RATE_LIMIT
    mailchimp_max_connections: int = MAX_CONNECTIONS
    hostile_file: Path | None = None

    def __post_init__(self):
        if not re.fullmatch(r".+-[a-z]+\d+", self.mailchimp_key):
            raise ValueError("a Mailchimp API key ends in -<datacenter>, for example -us1")
        if not self.hubspot_token.strip():
            raise ValueError("the HubSpot token must not be empty")
        if min(self.hubspot_rate_limit, self.hubspot_search_rate_limit, self.mailchimp_max_connections) < 0:
            raise ValueError("limits must not be negative")

    @property
    def mailchimp_dc(self) -> str:
        return self.mailchimp_key.rsplit("-", 1)[1]


class SandboxApp:
    """The WSGI application of one sandbox, over its own store in `data_dir`."""

    def __init__(self, data_dir: Path, settings: SandboxSettings):
        self.settings = settings
        self.store = Store(data_dir / DATABASE_NAME)
        self.hubspot = HubSpotAPI(self.store, token=settings.hubspot_token, rate_limit=settings.hubspot_rate_limit,
                                  search_rate_limit=settings.hubspot_search_rate_limit)
        self.mailchimp = MailchimpAPI(self.store, api_key=settings.mailchimp_key,
                                      max_connections=settings.mailchimp_max_connections)
        self.apis: tuple[EmulatedAPI, ...] = (self.hubspot, self.mailchimp)
        self.faults = FaultInjector()
        self.stats = RequestStats()
        self.seeder = Seeder(self.store, settings.hostile_file)
        self.oauth = OAuthAuthority(settings.mailchimp_dc)
        self.control = Control(self)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.control.dispatch(request)
        if path.rstrip("/") in OAUTH_PATHS:
            return self.oauth.dispatch(request)
        for api in self.apis:
            if path == api.prefix or path.startswith(api.prefix + "/"):
                return self.serve(api, request, path[len(api.prefix):] or "/")
        return json_response({"error": "the sandbox serves /hubspot, /mailchimp/3.0 and /_sandbox"}, 404)

    def reset(self) -> None:
        """Wipe both providers' data and restore the limits the sandbox started with."""
        with self.store.write() as db:
            self.store.wipe(db)
            self.mailchimp.install_defaults(db)
        self.hubspot.limit.configure(self.settings.hubspot_rate_limit)
        self.hubspot.search_limit.configure(self.settings.hubspot_search_rate_limit)
        self.mailchimp.connections.configure(self.settings.mailchimp_max_connections)
        self.oauth.reset()

    def serve(self, api: EmulatedAPI, request: Request, path: str) -> Response:
        """Answer one request to an emulated API, counting it."""
        route, arguments, routing_status = api.match(request.method, path)
        label = route.label if route else f"{request.method} (no such route)"
        self.stats.count_request(api.name, label, write=bool(route and route.write))
        try:
            response = self._answer(api, request, route, arguments, routing_status)
        except DropConnection:
            self.stats.count_response(api.name, "reset")
            raise
        self.stats.count_response(api.name, response.status_code)
        return response

    def _answer(self, api: EmulatedAPI, request: Request, route: Route | None, arguments: dict[str, str],
                routing_status: int) -> Response:
        try:
            account = self._authenticate(api, request)
            with api.admitted(account, route) as limit_headers:
                latency_ms, fault, after_write = self.faults.draw(api.name)
                if latency_ms:
                    time.sleep(latency_ms / 1000)
                if fault is not None and not after_write:
                    response = self._inject(api, fault)
                else:
                    response = self._handle(api, request, route, arguments, routing_status)
                    if fault is not None:
                        response = self._inject(api, fault)
                response.headers.update(limit_headers)
                return response
        except ProviderError as error:
            return error.response()

    def _authenticate(self, api: EmulatedAPI, request: Request) -> str:
        """Return the account of the request: an OAuth access token issued here, or the API's own credential."""
        live = self.oauth.authenticate(api.name, request)
        if live is None:
            return api.authenticate(request)
        if not live:
            raise self.oauth.expired_error(api.name, request)
        # An OAuth grant is to the sandbox's one account of that provider.
        return self.settings.hubspot_token if api is self.hubspot else self.settings.mailchimp_key

    @staticmethod
    def _handle(api: EmulatedAPI, request: Request, route: Route | None, arguments: dict[str, str],
                routing_status: int) -> Response:
        if route is None:
            return api.routing_error(routing_status)
        try:
            return api.handle(route, request, arguments)
        except ProviderError as error:
            return error.response()
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return api.internal_error()

    @staticmethod
    def _inject(api: EmulatedAPI, fault: Fault) -> Response:
        if fault.kind == "reset":
            raise DropConnection
        return api.fault_response(fault)
