"""The emulated Textline API v1 (a fictional SMS platform), served under `/textline/v1`.

It stands for `https://api.textline.example/v1`. It lives with the tests, not in the
sandbox package, and is served only by a sandbox started with
`SANDBOX_PLUGINS=tests.plugins.textline_emulator:TextlineAPI` (see `sandbox.registry`).

Requests authenticate with `Authorization: Bearer <key>` (option `textline_api_key`); a
missing or wrong key gets a 401. Every error is `{"error": {"code", "message"}}`.

Subscribers are keyed by `phone_number`, in E.164 (`+` and 7 to 15 digits, the first
not 0) and unique. Each has `id` (an integer), `phone_number`, `first_name`,
`last_name`, `sms_status` ("subscribed" or "unsubscribed"), `created_at` and
`updated_at` (UTC, ISO 8601 to the millisecond: `2026-12-04T10:00:00.123Z`).
`updated_at` moves only when a value changes, and no two changes share one.

- `GET /subscribers`: `limit` (1 to 100, 50 by default), `after` (an id: the page holds
  the subscribers with a greater id), `updated_after` (an ISO 8601 time with an offset;
  inclusive) and `phone_number` (exact); ordered by id ascending. The reply is
  `{"subscribers": [...], "next_after": <the page's last id, null when no more match>}`.
  `ids=1,2,3` (at most 100) lists those subscribers instead, unknown ids left out; it
  takes no other parameter but `limit`. Any other parameter, or a value out of bounds,
  is a 400 `invalid_parameter` naming it.
- `GET /subscribers/{id}`: the subscriber; 404 `not_found` for an unknown id.
- `POST /subscribers/upsert`: `{"subscribers": [{phone_number, first_name?, last_name?,
  sms_status?}]}`, 1 to 100 items (else the whole request is a 400 `invalid_request`),
  applied in order, each by its phone number. The reply is 200 `{"results": [...]}`, in
  request order: `{phone_number, id, status: "created"|"updated"|"unchanged",
  subscriber}`, or `{phone_number, error: {code, message}}` for an item refused alone
  (`invalid_phone_number`, `invalid_value`, `unknown_field`, `sms_status_required`).
  A new subscriber needs `sms_status`: nobody is texted without a stated consent; an
  existing one keeps it when left out. Names are text up to 255 characters ("" clears).
- `DELETE /subscribers/{id}`: 204, the subscriber gone for good; 404 for an unknown id.
- `GET /fields`: `{"fields": [{name, label, type, required, options}]}`, the four
  fields above (types `phone`, `text`, `enum`).
- Rate limit: `textline_rate_limit` requests a second (20 by default, 0: off); replies
  carry `RateLimit-Limit` and `RateLimit-Remaining`, and a request over it gets a 429
  `rate_limited` with `Retry-After`.

Control actions (under `/_sandbox/textline/`):
GET  subscribers   `{"subscribers": [...]}`: every subscriber, by id.
POST subscribers   `{phone_number, first_name?, last_name?, sms_status?}`: someone edits
                   the subscriber in Textline's pages (or the person texts STOP), by the
                   upsert's rules; replies the subscriber, 400 with the reason otherwise.
"""
from __future__ import annotations

import hmac
import math
import random
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from sandbox.errors import ProviderError, gateway_page, json_response
from sandbox.faults import Fault
from sandbox.limits import RollingWindowLimit
from sandbox.provider import (
    ControlAction,
    ControlError,
    EmulatedAPI,
    Option,
    Route,
    not_blank,
    not_negative,
    parse_json,
    refuse_unknown_keys,
)
from sandbox.seed import YEAR_MS, Person

if TYPE_CHECKING:
    from sandbox.oauth import OAuthAuthority
    from sandbox.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS textline_subscriber (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    sms_status TEXT NOT NULL CHECK (sms_status IN ('subscribed', 'unsubscribed')),
    -- UTC to the millisecond, in one fixed format: text order is time order.
    updated_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
STATUSES = ("subscribed", "unsubscribed")
NAMES = ("first_name", "last_name")
ITEM_KEYS = frozenset({"phone_number", *NAMES, "sms_status"})
COLUMNS = "id, phone_number, first_name, last_name, sms_status, updated_at, created_at"
DEFAULT_PAGE = 50
MAX_PAGE = 100
MAX_UPSERT = 100
MAX_TEXT = 255
LIST_PARAMETERS = frozenset({"limit", "after", "updated_after", "phone_number", "ids"})
FIELDS = (
    {"name": "phone_number", "label": "Phone number", "type": "phone", "required": True, "options": []},
    {"name": "first_name", "label": "First name", "type": "text", "required": False, "options": []},
    {"name": "last_name", "label": "Last name", "type": "text", "required": False, "options": []},
    {"name": "sms_status", "label": "SMS status", "type": "enum", "required": False, "options": list(STATUSES)},
)
# What people write around the digits of a phone number; seeded phones lose it, and only
# those that are E.164 then are seeded (the rest have no country code).
PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
SEED_STATUS_WEIGHTS = (85, 15)


class TextlineError(ProviderError):
    """An error reply of Textline: `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response({"error": {"code": self.code, "message": self.message}}, self.status,
                             headers=self.headers)


class ItemRefused(Exception):
    """One upsert item refused on its own: the rest of the request goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def iso_ms(ms: int) -> str:
    """Format milliseconds since the epoch as Textline writes times: `2026-12-04T10:00:00.123Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time_ms(value: str) -> int:
    """Read an ISO 8601 time with an offset as milliseconds since the epoch, rounded up (for `>=`).

    Raise ValueError when it has no offset or is not a time."""
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        raise ValueError("it has no UTC offset")
    microseconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    # Stored times are whole milliseconds: `>= 10:00:00.0005` means `>= 10:00:00.001`.
    return -(-microseconds // 1000)


def bad_parameter(message: str) -> TextlineError:
    return TextlineError(400, "invalid_parameter", message)


def invalid_request(message: str) -> TextlineError:
    return TextlineError(400, "invalid_request", message)


def not_found(subscriber_id: str) -> TextlineError:
    return TextlineError(404, "not_found", f"no subscriber with id {subscriber_id}")


class TextlineAPI(EmulatedAPI):
    name = "textline"
    label = "Textline"
    prefix = "/textline/v1"
    options = (
        Option("textline_api_key", "sandbox-textline-key", "the API key Textline accepts as a Bearer token",
               not_blank("Textline API key")),
        Option("textline_rate_limit", 20, "Textline requests allowed per second; 0 turns the limit off",
               not_negative),
    )
    credential = "textline_api_key"
    schema = SCHEMA
    # Seeds nothing unless a seed request names it: other tests' seeds stay as they were.
    seed_key = "textline_subscribers"
    control_actions = (
        ControlAction("GET", "subscribers", "control_subscribers"),
        ControlAction("POST", "subscribers", "control_edit"),
    )
    routes = (
        Route("GET", "/subscribers", "list_subscribers"),
        Route("GET", "/subscribers/{subscriber_id}", "get_subscriber"),
        Route("POST", "/subscribers/upsert", "upsert_subscribers", write=True),
        Route("DELETE", "/subscribers/{subscriber_id}", "delete_subscriber", write=True),
        Route("GET", "/fields", "list_fields"),
    )

    def __init__(self, store: Store, settings: Mapping[str, Any], oauth: OAuthAuthority):
        super().__init__(store, settings, oauth)
        self.key = settings["textline_api_key"]
        self.rate = RollingWindowLimit(settings["textline_rate_limit"], window_seconds=1.0, daily_limit=None,
                                       policy="SECONDLY")
        self.limiters = {"textline_rate_limit": self.rate}
        with store.read() as db:
            (latest,) = db.execute("SELECT MAX(updated_at) FROM textline_subscriber").fetchone()
        if latest:
            # After a restart, changes must still come after the stored ones.
            store.clock.advance_to(parse_time_ms(latest))

    def info(self) -> dict[str, Any]:
        return {"base_path": self.prefix, "stands_for": "https://api.textline.example/v1"}

    # Gateway: credentials, limits, error shapes.

    def authenticate(self, request: Request) -> str:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key or not hmac.compare_digest(key.strip().encode(), self.key.encode()):
            raise TextlineError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>")
        return self.name

    @contextmanager
    def admitted(self, account: str, route: Route | None) -> Iterator[dict[str, str]]:
        admission = self.rate.admit(account)
        headers = {"RateLimit-Limit": str(admission.limit), "RateLimit-Remaining": str(admission.remaining)} \
            if admission.limit else {}
        if not admission.allowed:
            raise self._rate_limited(self.rate.retry_after(account), headers)
        yield headers

    @staticmethod
    def _rate_limited(seconds: float, headers: dict[str, str] | None = None) -> TextlineError:
        return TextlineError(429, "rate_limited", "too many requests; retry later",
                             headers={**(headers or {}), "Retry-After": str(max(1, math.ceil(seconds)))})

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind == "expired_token":
            # An API key does not expire: a revoked one is a wrong one.
            return TextlineError(401, "unauthorized", "the API key was revoked").response()
        if fault.status == 429:
            return self._rate_limited(fault.retry_after or 1).response()
        if fault.status == 500:
            return self.internal_error()
        return gateway_page(fault.status)

    def routing_error(self, status: int) -> Response:
        if status == 405:
            return TextlineError(405, "method_not_allowed", "method not allowed on this path").response()
        return TextlineError(404, "not_found", "no such endpoint").response()

    def internal_error(self) -> Response:
        return TextlineError(500, "internal_error", "an unexpected error occurred").response()

    def json_body(self, request: Request) -> dict[str, Any]:
        try:
            body = parse_json(request)
        except ValueError as error:
            raise invalid_request(f"the body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        return body

    # Subscribers.

    def list_subscribers(self, request: Request) -> Response:
        args = request.args
        unknown = sorted(set(args) - LIST_PARAMETERS)
        if unknown:
            raise bad_parameter(f"unknown parameters: {', '.join(unknown)}")
        limit = self._int_arg(args, "limit", DEFAULT_PAGE)
        if not 1 <= limit <= MAX_PAGE:
            raise bad_parameter(f"limit must be from 1 to {MAX_PAGE}")
        if "ids" in args:
            return self._list_by_ids(args)
        where: list[str] = ["id > ?"]
        params: list[Any] = [self._int_arg(args, "after", 0)]
        if "updated_after" in args:
            try:
                since = parse_time_ms(args["updated_after"])
            except ValueError:
                raise bad_parameter("updated_after must be an ISO 8601 time with a UTC offset") from None
            where.append("updated_at >= ?")
            params.append(iso_ms(since))
        if "phone_number" in args:
            where.append("phone_number = ?")
            params.append(args["phone_number"])
        with self.store.read() as db:
            # One more than the page: whether more match decides `next_after`.
            rows = db.execute(f"SELECT {COLUMNS} FROM textline_subscriber WHERE {' AND '.join(where)} "
                              "ORDER BY id LIMIT ?", [*params, limit + 1]).fetchall()
        page = rows[:limit]
        next_after = page[-1][0] if len(rows) > limit else None
        return json_response({"subscribers": [_subscriber(row) for row in page], "next_after": next_after})

    def _list_by_ids(self, args: MultiDict[str, str]) -> Response:
        others = sorted(set(args) - {"ids", "limit"})
        if others:
            raise bad_parameter(f"ids takes no other parameter but limit; got {', '.join(others)}")
        parts = [part.strip() for part in args["ids"].split(",") if part.strip()]
        if not parts or not all(part.isdigit() for part in parts) or len(parts) > MAX_PAGE:
            raise bad_parameter(f"ids must be 1 to {MAX_PAGE} comma-separated subscriber ids")
        ids = sorted({int(part) for part in parts})
        with self.store.read() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM textline_subscriber WHERE id IN ({', '.join('?' * len(ids))}) "
                              "ORDER BY id", ids).fetchall()
        return json_response({"subscribers": [_subscriber(row) for row in rows], "next_after": None})

    def get_subscriber(self, request: Request, subscriber_id: str) -> Response:
        with self.store.read() as db:
            row = self._row(db, subscriber_id)
        return json_response(_subscriber(row))

    def upsert_subscribers(self, request: Request) -> Response:
        items = self.json_body(request).get("subscribers")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_UPSERT:
            raise invalid_request(f"subscribers must be a list of 1 to {MAX_UPSERT} subscribers")
        results = []
        with self.store.write() as db:
            for item in items:
                phone = item.get("phone_number") if isinstance(item, dict) else None
                try:
                    status, row = self._upsert(db, item)
                except ItemRefused as refusal:
                    results.append({"phone_number": phone, "error": {"code": refusal.code,
                                                                     "message": refusal.message}})
                else:
                    results.append({"phone_number": row[1], "id": row[0], "status": status,
                                    "subscriber": _subscriber(row)})
        return json_response({"results": results})

    def delete_subscriber(self, request: Request, subscriber_id: str) -> Response:
        with self.store.write() as db:
            row = self._row(db, subscriber_id)
            db.execute("DELETE FROM textline_subscriber WHERE id = ?", (row[0],))
        return Response(status=204)

    def list_fields(self, request: Request) -> Response:
        return json_response({"fields": list(FIELDS)})

    # Sandbox control.

    def control_subscribers(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.read() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM textline_subscriber ORDER BY id").fetchall()
        return {"subscribers": [_subscriber(row) for row in rows]}

    def control_edit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create or change the subscriber holding `phone_number`, as someone in Textline's pages would."""
        refuse_unknown_keys(body, ITEM_KEYS)
        try:
            with self.store.write() as db:
                _, row = self._upsert(db, body)
        except ItemRefused as refusal:
            raise ControlError(refusal.message) from None
        return _subscriber(row)

    # Seeding (see `sandbox.seed`).

    def seed(self, db: sqlite3.Connection, rng: random.Random, people: list[Person],
             hostile_records: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the people whose phone is E.164 once punctuation is dropped, mostly subscribed,
        changed at times in the past year (never before a change already made); then the hostile
        records Textline takes, listing the others in `textline_refused` with the reason."""
        now_ms = int(time.time() * 1000)
        start = max(self.store.clock.last_ms + 1, now_ms - YEAR_MS)
        taken = {phone for (phone,) in db.execute("SELECT phone_number FROM textline_subscriber")}
        rows = []
        for person in people:
            phone = PHONE_PUNCTUATION.sub("", person.phone or "")
            if not E164.match(phone) or phone in taken:
                continue
            taken.add(phone)
            status = rng.choices(STATUSES, SEED_STATUS_WEIGHTS)[0]
            rows.append((phone, person.firstname[:MAX_TEXT], person.lastname[:MAX_TEXT], status))
        # Distinct times: no two changes share one.
        times = sorted(rng.sample(range(start, max(now_ms, start + len(rows))), len(rows)))
        db.executemany("INSERT INTO textline_subscriber (phone_number, first_name, last_name, sms_status, "
                       "updated_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       [(*row, iso_ms(changed), iso_ms(changed - rng.randrange(0, YEAR_MS // 2)))
                        for row, changed in zip(rows, times, strict=True)])
        if times:
            self.store.clock.advance_to(times[-1])
        hostile, refused = 0, []
        for record in hostile_records:
            item = {"phone_number": record.get("phone"), "first_name": record.get("firstname"),
                    "last_name": record.get("lastname"), "sms_status": "subscribed"}
            try:
                self._upsert(db, item)
            except ItemRefused as refusal:
                refused.append({"phone_number": record.get("phone"), "message": refusal.message})
            else:
                hostile += 1
        return {"textline_subscribers": len(rows), "textline_hostile_subscribers": hostile,
                "textline_refused": refused}

    # Helpers.

    def _upsert(self, db: sqlite3.Connection, item: Any) -> tuple[str, tuple]:
        """Create or update the subscriber an upsert item names; return its status and row.

        Raise ItemRefused, having written nothing, for an item Textline refuses."""
        given = _checked_item(item)
        phone = given.pop("phone_number")
        existing = db.execute(f"SELECT {COLUMNS} FROM textline_subscriber WHERE phone_number = ?",
                              (phone,)).fetchone()
        if existing is None:
            if "sms_status" not in given:
                raise ItemRefused("sms_status_required", "sms_status is required for a new subscriber")
            now = iso_ms(self.store.clock.tick())
            row = db.execute(f"INSERT INTO textline_subscriber (phone_number, first_name, last_name, sms_status, "
                             f"updated_at, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
                             (phone, given.get("first_name", ""), given.get("last_name", ""), given["sms_status"],
                              now, now)).fetchone()
            return "created", row
        current = dict(zip(("first_name", "last_name", "sms_status"), existing[2:5], strict=True))
        changes = {name: value for name, value in given.items() if current[name] != value}
        if not changes:
            return "unchanged", existing
        assignments = ", ".join(f"{name} = ?" for name in changes)
        row = db.execute(f"UPDATE textline_subscriber SET {assignments}, updated_at = ? WHERE id = ? "
                         f"RETURNING {COLUMNS}",
                         (*changes.values(), iso_ms(self.store.clock.tick()), existing[0])).fetchone()
        return "updated", row

    @staticmethod
    def _row(db: sqlite3.Connection, subscriber_id: str) -> tuple:
        row = db.execute(f"SELECT {COLUMNS} FROM textline_subscriber WHERE id = ?",
                         (int(subscriber_id) if subscriber_id.isdigit() else -1,)).fetchone()
        if row is None:
            raise not_found(subscriber_id)
        return row

    @staticmethod
    def _int_arg(args: MultiDict[str, str], name: str, default: int) -> int:
        raw = args.get(name)
        if raw is None:
            return default
        if not raw.isdigit():
            raise bad_parameter(f"{name} must be a non-negative integer")
        return int(raw)


def _checked_item(item: Any) -> dict[str, str]:
    """Return an upsert item's values, checked; raise ItemRefused naming the first problem."""
    if not isinstance(item, dict):
        raise ItemRefused("invalid_value", "each subscriber must be a JSON object")
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        raise ItemRefused("unknown_field", f"unknown fields: {', '.join(unknown)}")
    phone = item.get("phone_number")
    if not isinstance(phone, str) or not E164.match(phone):
        raise ItemRefused("invalid_phone_number", f"phone_number must be E.164 (+ and 7 to 15 digits), not {phone!r}")
    given = {"phone_number": phone}
    for name in NAMES:
        if name in item:
            value = item[name]
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise ItemRefused("invalid_value", f"{name} must be text of at most {MAX_TEXT} characters")
            given[name] = value
    if "sms_status" in item:
        if item["sms_status"] not in STATUSES:
            raise ItemRefused("invalid_value", f"sms_status must be one of {', '.join(STATUSES)}")
        given["sms_status"] = item["sms_status"]
    return given


def _subscriber(row: tuple) -> dict[str, Any]:
    subscriber_id, phone, first_name, last_name, status, updated_at, created_at = row
    return {"id": subscriber_id, "phone_number": phone, "first_name": first_name, "last_name": last_name,
            "sms_status": status, "updated_at": updated_at, "created_at": created_at}
