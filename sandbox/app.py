"""The sandbox WSGI app: every emulator of `sandbox.registry` under its prefix, their OAuth
pages and token endpoints (see `sandbox.oauth`), control endpoints under /_sandbox/ (see
`sandbox.control`).

Every provider request goes through the same gateway, in the order the real services
apply it: credentials (the provider's 401 or 403), limits (its 429), injected faults,
then the endpoint itself. It is counted in the stats whatever the outcome.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from .control import PREFIX as CONTROL_PREFIX
from .control import Control
from .errors import DropConnection, ProviderError, json_response
from .faults import Fault, FaultInjector
from .oauth import OAuthAuthority
from .provider import EmulatedAPI, Route
from .registry import EMULATORS
from .seed import Seeder
from .stats import RequestStats
from .store import Store

DATABASE_NAME = "sandbox.sqlite3"
# Mailchimp batches of 500 members with long values run to several megabytes.
MAX_BODY_BYTES = 32 * 1024 * 1024

logger = logging.getLogger("sandbox")


class SandboxSettings(Mapping[str, Any]):
    """The emulators a sandbox serves and their options (`EmulatedAPI.options`) by name, defaults
    filled in; and the file the hostile records are seeded from.

    Raise ValueError naming the problem for an unknown option or a value its option refuses.
    """

    def __init__(self, emulators: Sequence[type[EmulatedAPI]] = EMULATORS, *, hostile_file: Path | None = None,
                 **values: Any):
        options = {option.name: option for api in emulators for option in api.options}
        unknown = sorted(set(values) - set(options))
        if unknown:
            raise ValueError(f"unknown options: {', '.join(unknown)}")
        self._values = {name: values.get(name, option.default) for name, option in options.items()}
        for name, option in options.items():
            value = self._values[name]
            if isinstance(value, bool) or not isinstance(value, option.type):
                raise ValueError(f"{name} must be {'an integer' if option.type is int else 'a string'}")
            problem = option.problem(value)
            if problem:
                raise ValueError(problem)
        self.emulators = tuple(emulators)
        self.hostile_file = hostile_file

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class SandboxApp:
    """The WSGI application of one sandbox, over its own store in `data_dir`."""

    def __init__(self, data_dir: Path, settings: SandboxSettings):
        self.settings = settings
        self.store = Store(data_dir / DATABASE_NAME, [api.schema for api in settings.emulators])
        self.oauth = OAuthAuthority(tuple(api.name for api in settings.emulators if api.oauth_routes))
        self.apis: tuple[EmulatedAPI, ...] = tuple(api(self.store, settings, self.oauth)
                                                   for api in settings.emulators)
        with self.store.write() as db:
            for api in self.apis:
                api.install_defaults(db)
        self.faults = FaultInjector()
        self.stats = RequestStats()
        self.seeder = Seeder(self.store, self.apis, settings.hostile_file)
        self.control = Control(self)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.control.dispatch(request)
        for api in self.apis:
            route, arguments, status = api.match_oauth(request.method, path)
            if route is not None:
                return api.handle(route, request, arguments)
            if status == 405:
                return json_response({"error": f"method {request.method} not allowed on {path}"}, 405)
        for api in self.apis:
            if path == api.prefix or path.startswith(api.prefix + "/"):
                return self.serve(api, request, path[len(api.prefix):] or "/")
        served = ", ".join(api.prefix for api in self.apis)
        return json_response({"error": f"the sandbox serves {served} and {CONTROL_PREFIX}"}, 404)

    def reset(self) -> None:
        """Wipe every emulator's data and restore the limits the sandbox started with."""
        with self.store.write() as db:
            self.store.wipe(db, [table for api in self.apis for table in api.tables()])
            for api in self.apis:
                api.install_defaults(db)
        for api in self.apis:
            api.reset_limits()
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
        # An access token issued here, or else the API's own credential.
        live = self.oauth.authenticate(api.name, request)
        if live is False:
            return api.oauth_expired(self.oauth.seconds_since_expiry(request))
        try:
            account = api.oauth_account() if live else api.authenticate(request)
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
