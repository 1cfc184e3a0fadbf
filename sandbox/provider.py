"""The plug-in interface of the sandbox: what one emulated provider API supplies.

An emulator is a subclass of `EmulatedAPI` in a module of its own (`sandbox/hubspot.py`,
`sandbox/mailchimp.py`, `sandbox/activecampaign.py`), listed once in
`sandbox.registry.EMULATORS`. The app, the store, the seeder, the control endpoints, the
fault injector, the command and the launcher only iterate that registry. An emulator
declares:

- `name` (the key of its faults, stats, control actions and seed counts), `label` (how
  pages name it), `prefix` (where its API is served) and `routes`;
- `options`: its settings, each a `manage.py sandbox` flag and a `SandboxSettings` entry;
  `credential` names the one a client authenticates with;
- `schema`: its `CREATE TABLE` statements, run by the store at start; every table it
  creates is wiped by a reset, after which `install_defaults` puts back what a new
  account holds;
- `limiters`: its rate or connection limits, each also an option of the same name
  (the value a reset restores), read and changed through `/_sandbox/limits`;
- `seed_key` and `seed()`: how many records `POST /_sandbox/seed` asks of it, and how it
  writes them from the shared synthetic people and the hostile records;
- `control_actions`: its own endpoints under `/_sandbox/<name>/`;
- `oauth_routes`, `oauth_account()` and `oauth_expired()` when it stands in for an OAuth
  server (see `sandbox.oauth`);
- its gateway behaviour: `authenticate`, `admitted`, `fault_response`, `routing_error`,
  `internal_error`, `json_body`, in the provider's own shapes.
"""
from __future__ import annotations

import json
import random
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .faults import Fault

if TYPE_CHECKING:
    from .oauth import OAuthAuthority
    from .seed import Person
    from .store import Store

_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)


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


@dataclass(frozen=True)
class Option:
    """One setting of an emulator: the flag `--<name with dashes>` of `manage.py sandbox`.

    Its type is its default's (str or int). `problem` returns why a value is refused, or
    None; a refused value stops the command with that reason.
    """

    name: str
    default: str | int
    help: str
    problem: Callable[[Any], str | None] = lambda value: None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def type(self) -> type:
        return type(self.default)


def not_negative(value: int) -> str | None:
    """The `problem` of a limit option: limits are counts, 0 turning the limit off."""
    return "limits must not be negative" if value < 0 else None


def not_blank(label: str) -> Callable[[str], str | None]:
    """Return the `problem` of a credential option that must not be empty."""
    return lambda value: None if value.strip() else f"the {label} must not be empty"


@dataclass(frozen=True)
class ControlAction:
    """One provider-specific control endpoint, `METHOD /_sandbox/<emulator name>/<path>`.

    `handler` names a method of the emulator taking the request's JSON object (`{}` when
    the body is empty) and returning a JSON-ready reply; it raises ControlError for a
    request it cannot carry out (a 400).
    """

    method: str
    path: str
    handler: str


class ControlError(Exception):
    """A control request the sandbox cannot carry out (answered with a 400)."""


def refuse_unknown_keys(body: Mapping[str, Any], known: set[str] | frozenset[str]) -> None:
    """Raise ControlError naming the keys of a control body that are not in `known`."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ControlError(f"unknown keys: {', '.join(unknown)}")


class Limiter(Protocol):
    """A limit an emulator enforces (`sandbox.limits`): its current value, and how to change it."""

    limit: int

    def configure(self, limit: int) -> None: ...


class EmulatedAPI(ABC):
    """Base of one emulated provider: subclasses declare what the module docstring lists."""

    name: ClassVar[str]
    label: ClassVar[str]
    prefix: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]
    options: ClassVar[tuple[Option, ...]] = ()
    credential: ClassVar[str | None] = None
    schema: ClassVar[str] = ""
    seed_key: ClassVar[str | None] = None
    control_actions: ClassVar[tuple[ControlAction, ...]] = ()
    # Paths outside `prefix` too: an OAuth server lives on another host of the provider.
    oauth_routes: ClassVar[tuple[Route, ...]] = ()

    def __init__(self, store: Store, settings: Mapping[str, Any], oauth: OAuthAuthority):
        self.store = store
        self.settings = settings
        self.oauth = oauth
        self.limiters: dict[str, Limiter] = {}
        self._url_map = self._map(self.routes)
        self._oauth_map = self._map(self.oauth_routes)

    @classmethod
    def tables(cls) -> tuple[str, ...]:
        """Return the tables `schema` creates: all of them are wiped by a reset."""
        return tuple(_TABLE.findall(cls.schema))

    @staticmethod
    def _map(routes: tuple[Route, ...]) -> Map:
        rules = [Rule(re.sub(r"\{(\w+)\}", r"<\1>", route.template), methods=[route.method], endpoint=route)
                 for route in routes]
        return Map(rules, strict_slashes=False, merge_slashes=False)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], int]:
        """Return the route for a request and its path arguments, or None and 404/405."""
        return self._match(self._url_map, method, path)

    def match_oauth(self, method: str, path: str) -> tuple[Route | None, dict[str, str], int]:
        """Return the OAuth route for a request's full path, or None and 404/405."""
        return self._match(self._oauth_map, method, path)

    @staticmethod
    def _match(url_map: Map, method: str, path: str) -> tuple[Route | None, dict[str, str], int]:
        adapter = url_map.bind("sandbox", "/")
        try:
            route, arguments = adapter.match(path, method=method)
        except NotFound:
            return None, {}, 404
        except MethodNotAllowed:
            return None, {}, 405
        return route, arguments, 200

    def handle(self, route: Route, request: Request, arguments: dict[str, str]) -> Response:
        return getattr(self, route.handler)(request, **arguments)

    # Storage, seeding, limits: what the registry-driven parts of the sandbox call.

    def install_defaults(self, db: sqlite3.Connection) -> None:
        """Give the account what a new one holds (standard fields, a first list); called at every
        start and after each wipe, so it adds only what is missing.

        The default does nothing, on purpose: an emulator whose new account holds nothing
        (HubSpot's) need not override it."""
        return None

    def seed(self, db: sqlite3.Connection, rng: random.Random, people: list[Person],
             hostile_records: list[dict[str, Any]]) -> dict[str, Any]:
        """Write `people` (as many as `seed_key` asked for) and the hostile records, if it takes
        them; return the counts for the seed reply, keys named after the emulator."""
        return {}

    def info(self) -> dict[str, Any]:
        """Return what `GET /_sandbox/info` tells about this emulator."""
        return {"base_path": self.prefix}

    def limits(self) -> dict[str, int]:
        return {name: limiter.limit for name, limiter in self.limiters.items()}

    def set_limit(self, name: str, value: int) -> None:
        self.limiters[name].configure(value)

    def reset_limits(self) -> None:
        """Restore every limit to the value the sandbox started with, forgetting past requests (and
        any other setting a control action changed)."""
        for name, limiter in self.limiters.items():
            limiter.configure(self.settings[name])

    # OAuth, for emulators with `oauth_routes`.

    def oauth_account(self) -> str:
        """Return the account an access token issued by the sandbox's OAuth server stands for:
        the sandbox has one account per provider, the one `credential` opens."""
        return self.settings[self.credential]

    def oauth_authorize(self, request: Request) -> Response:
        """Show the approval screen, or carry out the person's decision: the handler of an
        emulator's authorize routes (GET and POST)."""
        return self.oauth.authorize(request, self.name, self.label)

    def oauth_expired(self, seconds_ago: int) -> Response:
        """Return the provider's 401 for an access token that expired `seconds_ago` (or whose
        grant was revoked)."""
        return self.fault_response(Fault("expired_token", 401))

    # The gateway, in the provider's own shapes.

    @abstractmethod
    def authenticate(self, request: Request) -> str:
        """Return the account the request's credentials belong to; raise the provider's refusal otherwise."""

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
