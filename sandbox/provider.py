"""What every emulated provider API supplies to the sandbox app: routes, auth, limits, error shapes."""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .faults import Fault


@dataclass(frozen=True)
class Route:
    """One endpoint: `template` uses `{name}` placeholders, as the providers' docs write them."""

    method: str
    template: str
    handler: str
    # Whether the request asks for a change (counted as a write in the stats).
    write: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


class EmulatedAPI(ABC):
    """Base of one emulated provider: subclasses list their routes and handle them."""

    name: ClassVar[str]
    prefix: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]

    def __init__(self):
        rules = [
            Rule(re.sub(r"\{(\w+)\}", r"<\1>", route.template), methods=[route.method], endpoint=route)
            for route in self.routes
        ]
        self._url_map = Map(rules, strict_slashes=False, merge_slashes=False)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], int]:
        """Return the route for a request and its path arguments, or None and 404/405."""
        adapter = self._url_map.bind("sandbox", "/")
        try:
            route, arguments = adapter.match(path, method=method)
        except NotFound:
            return None, {}, 404
        except MethodNotAllowed:
            return None, {}, 405
        return route, arguments, 200

    def handle(self, route: Route, request: Request, arguments: dict[str, str]) -> Response:
        return getattr(self, route.handler)(request, **arguments)

    @abstractmethod
    def authenticate(self, request: Request) -> str:
        """Return the account the request's credentials belong to; raise the 401 otherwise."""

    @contextmanager
    def admitted(self, account: str, route: Route | None) -> Iterator[dict[str, str]]:
        """Hold the account's limits for one request to `route` (None: no such route); yield
        headers to add to the reply.

        Raise the provider's 429 when the request is over a limit.
        """
        yield {}

    @abstractmethod
    def fault_response(self, fault: Fault) -> Response:
        """Return the reply the provider sends for an injected fault."""

    @abstractmethod
    def routing_error(self, status: int) -> Response:
        """Return the provider's reply to an unknown path (404) or method (405)."""

    @abstractmethod
    def internal_error(self) -> Response:
        """Return the provider's reply when a handler failed unexpectedly."""

    @abstractmethod
    def json_body(self, request: Request) -> Any:
        """Return the request's JSON body; raise the provider's error when it is not JSON."""


def parse_json(request: Request) -> Any:
    """Decode the body as JSON; raise ValueError with a short reason when it is not."""
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ValueError(f"the body is larger than {request.max_content_length} bytes") from None
    if not data.strip():
        raise ValueError("the request body is empty")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None
