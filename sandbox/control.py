"""Control endpoints under `/_sandbox/`, for the demo, the tests and the benchmarks.

They need no credentials and are not counted in the stats. Bodies and replies are JSON;
a malformed body gets a 400 `{"error": "..."}` that names the problem. `<name>` below
is an emulator's name (`hubspot`, `mailchimp`, `activecampaign`: `sandbox.registry`).

GET    /_sandbox/info
    `{<name>: {"base_path": ..., ...}, "limits": {...}}`: where each emulator is served
    and what else it tells (Mailchimp's audience id and datacenter...), the limits in force.
POST   /_sandbox/seed
    `{"hubspot_contacts": N, "mailchimp_members": M, "activecampaign_contacts": A,
    "hostile": false, "random_seed": null, "first_person": null}`: add that many records
    to each emulator (one key per emulator, its `seed_key`; see `sandbox.seed`).
    `hostile: true` adds the shared hostile records to every emulator that takes them; a
    list of names, to those only. `first_person` numbers the people from there (their
    addresses and phones carry the number), so that sandboxes standing for separate
    accounts hold different people; without it, from the sandbox's own counter.
    Replies with each emulator's counts (HubSpot's also lists the contacts it refused:
    `hubspot_refused: [{email, message}]`).
POST   /_sandbox/faults
    `{"provider": <name>|"all", "rate": 0.2, "statuses": [429, 500, 502, 503],
    "latency_ms": 0, "reset_rate": 0.0, "lost_reply_rate": 0.0, "expire_tokens": false,
    "count": null, "retry_after": null, "after_write": false, "random_seed": null}`
    Replace the provider's fault plan. Each request then waits `latency_ms`, and is
    dropped without a reply with probability `reset_rate`, or answered with one of
    `statuses` (in the provider's own shape; 502-504 as a gateway's HTML page) with
    probability `rate`, or carried out and its reply then lost (the connection dropped,
    or a gateway's 504) with probability `lost_reply_rate`. `expire_tokens` answers
    every request with the provider's refusal of expired credentials. `count` caps how
    many faults are injected (latency goes on). `retry_after` adds that Retry-After
    header to injected 429s. `after_write` carries the request out first and injects any
    fault in place of its reply.
GET    /_sandbox/faults       The plans in force, with how many faults each injected.
DELETE /_sandbox/faults       Clear every plan.
GET    /_sandbox/stats
    `{"requests": {<name>: {"POST /crm/v3/objects/contacts/search": n, ...}, ...}, "total": n,
    "writes": n, "statuses": {<name>: {"200": n, "429": n, "reset": n}, ...}}`: every
    request to an emulated API, by route template, whatever its outcome; `writes`
    counts the requests that ask for a change.
POST   /_sandbox/stats/reset  Zero the stats.
GET    /_sandbox/limits
    Every emulator's limits by name: `{"hubspot_rate_limit": 190, "hubspot_search_rate_limit": 5,
    "mailchimp_max_connections": 10, "activecampaign_rate_limit": 5, ...}`
POST   /_sandbox/limits       Change any of them (0 turns it off) until the next reset.
POST   /_sandbox/reset
    Wipe every emulator's data (each keeps what a new account holds: Mailchimp's standard
    merge fields, ActiveCampaign's first list), forget rate-limit history and restore the
    limits the sandbox started with.
GET    /_sandbox/oauth
    The OAuth client and token settings (`sandbox.oauth`), and counts of grants,
    refreshes, rotations and refused refreshes.
POST   /_sandbox/oauth
    `{"client_id", "client_secret", "access_token_lifetime": 1800, "rotate_refresh_tokens": false}`:
    change any of them until the next reset.
POST   /_sandbox/oauth/revoke
    `{"provider": <name>}` (left out: all). Revoke every grant: refreshes are refused and
    API calls with their access tokens get the provider's 401.
METHOD /_sandbox/<name>/<action>
    An emulator's own actions (`EmulatedAPI.control_actions`), documented in its module:
    dumps of its records and what people do in the provider's pages (sign up, confirm,
    edit, restore...).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .errors import json_response
from .faults import parse_plan
from .oauth import OAuthControlError
from .provider import ControlError, parse_json, refuse_unknown_keys

if TYPE_CHECKING:
    from .app import SandboxApp

PREFIX = "/_sandbox"
MAX_SEED = 1_000_000


class Control:
    """Serve the `/_sandbox/` endpoints of one sandbox app."""

    def __init__(self, app: SandboxApp):
        self.app = app
        self.handlers: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "/info"): self.info,
            ("POST", "/seed"): self.seed,
            ("GET", "/faults"): self.get_faults,
            ("POST", "/faults"): self.set_faults,
            ("DELETE", "/faults"): self.clear_faults,
            ("GET", "/stats"): self.get_stats,
            ("POST", "/stats/reset"): self.reset_stats,
            ("GET", "/limits"): self.get_limits,
            ("POST", "/limits"): self.set_limits,
            ("POST", "/reset"): self.reset,
            ("GET", "/oauth"): self.get_oauth,
            ("POST", "/oauth"): self.set_oauth,
            ("POST", "/oauth/revoke"): self.revoke_oauth,
        }
        for api in app.apis:
            for action in api.control_actions:
                self.handlers[(action.method, f"/{api.name}/{action.path}")] = getattr(api, action.handler)

    def dispatch(self, request: Request) -> Response:
        path = request.path[len(PREFIX):].rstrip("/")
        handler = self.handlers.get((request.method, path))
        if handler is None:
            allowed = sorted(method for method, known in self.handlers if known == path)
            if allowed:
                return json_response({"error": f"use {' or '.join(allowed)} on {PREFIX}{path}"}, 405)
            return json_response({"error": f"no control endpoint {PREFIX}{path}"}, 404)
        try:
            return json_response(handler(self._body(request)))
        except ControlError as error:
            return json_response({"error": str(error)}, 400)

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.get_data(cache=True).strip():
            return {}
        try:
            body = parse_json(request)
        except ValueError as error:
            raise ControlError(f"the body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise ControlError("the body must be a JSON object")
        return body

    def info(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**{api.name: api.info() for api in self.app.apis}, "limits": self._limits()}

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = [api.seed_key for api in self.app.apis if api.seed_key]
        refuse_unknown_keys(body, {*keys, "hostile", "random_seed", "first_person"})
        counts = {}
        for name in keys:
            value = body.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise ControlError(f"{name} must be an integer from 0 to {MAX_SEED}")
            counts[name] = value
        names = [api.name for api in self.app.apis]
        hostile = body.get("hostile", False)
        if isinstance(hostile, bool):
            hostile = names if hostile else []
        elif not isinstance(hostile, list) or not all(name in names for name in hostile):
            raise ControlError(f"hostile must be true, false or a list of emulators: {', '.join(names)}")
        random_seed = body.get("random_seed")
        if random_seed is not None and (isinstance(random_seed, bool) or not isinstance(random_seed, int)):
            raise ControlError("random_seed must be an integer or null")
        first_person = body.get("first_person")
        if first_person is not None and (isinstance(first_person, bool) or not isinstance(first_person, int)
                                         or not 1 <= first_person <= 10**12):
            raise ControlError("first_person must be an integer from 1 to 10**12, or null")
        try:
            return self.app.seeder.seed(counts, hostile=hostile, random_seed=random_seed, first_person=first_person)
        except ValueError as error:
            raise ControlError(str(error)) from None

    def get_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"faults": self.app.faults.describe()}

    def set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            providers, plan = parse_plan(body, tuple(api.name for api in self.app.apis))
        except ValueError as error:
            raise ControlError(str(error)) from None
        self.app.faults.configure(providers, plan)
        return {"faults": self.app.faults.describe()}

    def clear_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        self.app.faults.clear()
        return {"faults": {}}

    def get_stats(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset_stats(self, body: dict[str, Any]) -> dict[str, Any]:
        self.app.stats.reset()
        return self.app.stats.snapshot()

    def _limits(self) -> dict[str, int]:
        return {name: value for api in self.app.apis for name, value in api.limits().items()}

    def get_limits(self, body: dict[str, Any]) -> dict[str, int]:
        return self._limits()

    def set_limits(self, body: dict[str, Any]) -> dict[str, int]:
        owners = {name: api for api in self.app.apis for name in api.limits()}
        refuse_unknown_keys(body, set(owners))
        for name, value in body.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ControlError(f"{name} must be a non-negative integer")
        for name, value in body.items():
            owners[name].set_limit(name, value)
        return self._limits()

    def reset(self, body: dict[str, Any]) -> dict[str, Any]:
        self.app.reset()
        return {"reset": True, "limits": self._limits()}

    def get_oauth(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.app.oauth.describe()

    def set_oauth(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.app.oauth.configure(body)
        except OAuthControlError as error:
            raise ControlError(str(error)) from None

    def revoke_oauth(self, body: dict[str, Any]) -> dict[str, Any]:
        refuse_unknown_keys(body, {"provider"})
        try:
            return self.app.oauth.revoke(body.get("provider"))
        except OAuthControlError as error:
            raise ControlError(str(error)) from None
