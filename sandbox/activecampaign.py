"""The emulated ActiveCampaign API v3, served under `/activecampaign/api/3`.

It stands for `https://<account>.api-us1.com/api/3`: a connection's base URL is
`<sandbox>/activecampaign/api/3`. Requests authenticate with the header `Api-Token:
<token>`; a missing or wrong token gets a 403 `{"message": ...}` (AC answers 403, not
401; the exact message is unconfirmed). There is no OAuth for v3.

Behaviour follows ActiveCampaign's public documentation, and where that is silent the
emulator is strict:
- Numbers come back as strings (`"id": "42"`, `"meta": {"total": "7"}`). Contacts are
  unique by email, ignoring letter case; the address is kept as written (trimmed) and
  must be plain ASCII (`sandbox.emails`). Names and phones are limited to 255
  characters; longer values are a 422 (unconfirmed: AC's limit is not documented).
- Error bodies have no common schema, as AC's do not: validation errors are 422
  `{"errors": [{title, detail, code, source: {pointer}}]}` (a duplicate email:
  "Email address already exists in the system.", code `duplicate`; a malformed one:
  "Contact Email Address is not valid.", code `email_invalid`); missing records are 404
  `{"message": "No Result found for Subscriber with id N"}`; other refusals are
  `{"message": ...}`. An unknown path is a 404 `{"message": "Not Found"}`.
- Dates: `cdate` and `udate` are in the account's time zone with its offset
  (`2026-12-04T10:00:00-06:00`, option `activecampaign_timezone`, America/Chicago by
  default, so the offset moves with daylight saving time), to the second. Many changes
  share a second. `filters[updated_after]` is inclusive and `filters[updated_before]`
  exclusive (likewise `created_after`/`created_before`): a reader that resumes from the
  last `udate` it saw, inclusive, re-reads that second and misses nothing. Filter dates
  may carry an offset, or be written as AC writes them without one (`2026-12-04
  10:00:00`, or a bare date: midnight), read in the account's time zone; anything else
  is a 400. (AC documents the filters but not their bounds: inclusive-exclusive is the
  choice made here.)
- `udate` moves on every change of the contact's own data: email, names, phone, custom
  field values and list status. Tags do not move it (unconfirmed; the harder case for a
  delta reader). A write that changes nothing leaves it alone.
- `GET /contacts`: `limit` (default 20; over 100 is clamped to 100, as AC does),
  `offset`, `ids` (`ids[]=1&ids[]=2` as AC documents; `ids=1,2` as clients send it is
  taken too, unconfirmed), `email`, `search`, `listid`, `status` (of the membership in
  `listid`, or in any list without it; -1 for any), `id_greater`, the date filters and
  `orders[id|cdate|udate|email]=ASC|DESC` (id ascending by default). Keyset paging by
  `id_greater` with `orders[id]=ASC` runs on the primary key. Other parameters are
  ignored, as AC ignores those it does not know.
- `search` matches "the contact names, organization, phone or email" (AC's words): the
  given text anywhere in the first name, the last name, both together ("Ada Lovelace"),
  the address or the phone, ignoring letter case. Phones are matched as written, not by
  their digits: "+14155550100" does not find "+1 415 555 0100" (unconfirmed; AC does not
  say it normalises them). Contacts have no organization here.
- `include=contactLists,fieldValues,contactTags` (any of the three, comma-separated)
  side-loads the page's list memberships, field values and tags as top-level arrays
  beside `contacts`, each item naming its `contact`; without `include` there are none.
  `GET /contacts/{id}` always carries all three, as AC's "Retrieve a contact" does. Any
  other name in `include` is a 400: AC side-loads more (`contactLists.list`,
  `organization`...), which the sandbox does not emulate.
- Lists: one exists from the start (id 1, "Newsletter"); list statuses written are 1
  (subscribed) and 2 (unsubscribed).
- Custom fields: "Company" (text, `%COMPANY%`) and "Birthday" (date, `%BIRTHDAY%`) exist
  from the start, on every list. Date values are `YYYY-MM-DD` and must be real dates.
  A field created with `POST /fields` is on no list until `POST /fieldRels {fieldRel:
  {field, relid}}` relates it to a list, or to every list with relid 0 (201 with the
  relation; a relation that exists already answers 200 with it; an unknown field or list
  is a 404). `GET /fields` side-loads the relations as `fieldRels`. A value for a field on
  no list is refused, wherever it is given (contact writes, `/fieldValues`, bulk import:
  a 422 with code `field_not_related`). AC documents only that such a field is not shown
  in its pages; whether its API refuses or stores the value is unconfirmed: the sandbox
  refuses it, so that a client which forgets the relation fails its tests rather than
  creating a field nobody can see. Any one relation will do: which lists the contact is
  on does not matter.
  `POST /fieldValues` creates only: a contact's second value for one field is a 422
  (use `PUT /fieldValues/{id}`); whether AC refuses it is unconfirmed.
- Bulk import (`POST /import/bulk_import`): at most 250 contacts and 400,000 bytes; each
  needs an `email` (else the whole request is a 400 `{success: 0, message,
  failureReasons}`). The reply is `{success: 1, queued_contacts: N, batchId}`; the import
  is applied by the first request to this API at least `activecampaign_import_delay_ms`
  after it was queued (the control dump applies due imports too). Until then
  `GET /import/info?batchId=` says `waiting`, then `completed` with `success` (ids of the
  contacts it created) and `failure` (emails of those it could not import: a malformed
  email, a value too long, an unknown field or list id, an invalid date), as AC
  documents. A contact that fails does not stop the others. It fires no webhooks; the
  `callback` is accepted and never called (the sandbox makes no outbound requests). The
  bulk importer has its own budgets: 100 requests a minute with several contacts, 20
  with one.
- Rate limit: `activecampaign_rate_limit` requests per second per account (5 by
  default); every reply carries `RateLimit-Limit` and `RateLimit-Remaining`, and a
  request over the limit gets a 429 with `Retry-After` (whole seconds) and
  `{"message": ...}`.
- `DELETE /contacts/{id}` deletes the contact for good, with its list memberships,
  tags and field values.

Control actions (under `/_sandbox/activecampaign/`):
GET  contacts
    `{"contacts": [{id, email, firstName, lastName, phone, cdate, udate, lists: [{list,
    status}], tags: [names], fieldValues: {perstag: value}}], "imports": [{batchId,
    status, queued, success, failure}]}` (applies due imports first).
POST contacts
    `{"email": "...", "firstName", "lastName", "phone", "fieldValues": {"COMPANY": "..."},
    "lists": {"1": 2}}`: the person signs up, or someone edits the contact in AC's pages
    (or the person unsubscribes through a link: list status 2). Creates the contact when
    no contact holds the address. Every change moves `udate`. Replies the contact as
    the dump shows it; 400 for what AC would refuse.
POST import-delay
    `{"ms": N}`: how long bulk imports wait before they are applied, those queued already
    included, until the next reset (which restores `activecampaign_import_delay_ms`).
"""
from __future__ import annotations

import hmac
import json
import math
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from .emails import email_problem
from .errors import ProviderError, gateway_page, json_response
from .faults import Fault
from .limits import RollingWindowLimit
from .provider import (
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
from .seed import YEAR_MS, Person
from .store import Store, lookup

if TYPE_CHECKING:
    from .oauth import OAuthAuthority

SCHEMA = """
CREATE TABLE IF NOT EXISTS activecampaign_contact (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    -- The lowercased email: AC's uniqueness key.
    email_key TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    -- Epoch seconds.
    cdate INTEGER NOT NULL,
    udate INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS activecampaign_contact_udate ON activecampaign_contact (udate, id);

CREATE TABLE IF NOT EXISTS activecampaign_list (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    stringid TEXT NOT NULL,
    cdate INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS activecampaign_contact_list (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact INTEGER NOT NULL,
    list INTEGER NOT NULL,
    status INTEGER NOT NULL,
    sdate INTEGER NOT NULL,
    udate INTEGER NOT NULL,
    UNIQUE (contact, list)
);
CREATE INDEX IF NOT EXISTS activecampaign_contact_list_list ON activecampaign_contact_list (list, status, contact);

CREATE TABLE IF NOT EXISTS activecampaign_tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL,
    tag_key TEXT NOT NULL UNIQUE,
    tag_type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    cdate INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS activecampaign_contact_tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    cdate INTEGER NOT NULL,
    UNIQUE (contact, tag)
);

CREATE TABLE IF NOT EXISTS activecampaign_field (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    perstag TEXT NOT NULL UNIQUE,
    descript TEXT NOT NULL DEFAULT '',
    defval TEXT NOT NULL DEFAULT '',
    ordernum INTEGER NOT NULL,
    cdate INTEGER NOT NULL,
    udate INTEGER NOT NULL
);

-- Which lists a custom field is on (relid 0: every list); a field on none takes no values.
CREATE TABLE IF NOT EXISTS activecampaign_field_rel (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    field INTEGER NOT NULL,
    relid INTEGER NOT NULL,
    cdate INTEGER NOT NULL,
    UNIQUE (field, relid)
);

CREATE TABLE IF NOT EXISTS activecampaign_field_value (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact INTEGER NOT NULL,
    field INTEGER NOT NULL,
    value TEXT NOT NULL,
    cdate INTEGER NOT NULL,
    udate INTEGER NOT NULL,
    UNIQUE (contact, field)
);

CREATE TABLE IF NOT EXISTS activecampaign_import (
    batch_id TEXT PRIMARY KEY,
    contacts TEXT NOT NULL,
    queued REAL NOT NULL,
    status TEXT NOT NULL,
    success TEXT NOT NULL DEFAULT '[]',
    failure TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS activecampaign_import_waiting ON activecampaign_import (status, queued);
"""

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_TEXT = 255
MAX_IMPORT = 250
MAX_IMPORT_BYTES = 400_000
LIST_SUBSCRIBED, LIST_UNSUBSCRIBED = 1, 2
LIST_STATUSES = {0: "unconfirmed", 1: "active", 2: "unsubscribed", 3: "bounced"}
DEFAULT_LISTS = ((1, "Newsletter", "newsletter"),)
# (id, title, type, perstag)
DEFAULT_FIELDS = ((1, "Company", "text", "COMPANY"), (2, "Birthday", "date", "BIRTHDAY"))
FIELD_TYPES = ("text", "textarea", "date", "datetime", "dropdown", "multiselect", "radio", "checkbox", "hidden")
TAG_TYPES = ("contact", "template")
ORDERS = {"id": "id", "cdate": "cdate", "udate": "udate", "email": "email_key"}


def changes_are_few(changed: int, *, limit: int, contacts: int) -> bool:
    """Return whether a page in id order of `changed` contacts, of `contacts`, is cheaper read through the time index.

    Through the time index a page reads every changed contact and sorts them by id: a
    read of all the pages costs about changed**2 / limit rows. Along the ids it reads
    contacts until a page of changed ones is found: all the pages together, about every
    contact once. A quiet delta read (nothing changed) so costs one index probe, not a
    scan of the account.
    """
    return changed * changed < limit * max(contacts, 1)


def contacts_page_query(columns: str, clause: str, order: str, *, through: str | None = None) -> str:
    """Return the list endpoint's page query (parameters: the clause's, then limit and offset).

    `through` fixes how a time filter in id order is read: "changes" through the
    (udate, id) index, "ids" along the primary key; None leaves it to SQLite
    (tests/sandbox/test_activecampaign_plans.py).
    """
    index = {"changes": "INDEXED BY activecampaign_contact_udate", "ids": "NOT INDEXED", None: ""}[through]
    return f"SELECT {columns} FROM activecampaign_contact c {index} {clause} ORDER BY {order} LIMIT ? OFFSET ?"
# What `include=` side-loads with contacts: the contact's list memberships, tags and field values.
SIDELOADS = ("contactLists", "contactTags", "fieldValues")
# What `search=` looks in: the names (each, and both together), the address and the phone.
SEARCHED = ("c.first_name", "c.last_name", "c.first_name || ' ' || c.last_name", "c.email", "c.phone")
ALL_LISTS = 0
CONTACT_COLUMNS = "id, email, first_name, last_name, phone, cdate, udate"
BAD_TOKEN = "No Result found for Subscriber with id 0"
SEED_TAGS = ("customer", "webinar-2024", "VIP", "newsletter-signup", "Kunde")
SEED_LIST_STATUSES = (LIST_SUBSCRIBED, LIST_UNSUBSCRIBED, None)
SEED_LIST_WEIGHTS = (82, 13, 5)
HOSTILE_KEYS = {"email": "email", "firstname": "firstName", "lastname": "lastName", "phone": "phone"}
HOSTILE_FIELDS = {"birthday": "BIRTHDAY"}


class ActiveCampaignError(ProviderError):
    """An error reply of ActiveCampaign: the body as given (its shapes differ by endpoint)."""

    def __init__(self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None):
        super().__init__(json.dumps(body))
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(self.body, self.status, headers=self.headers)


def message_error(status: int, message: str) -> ActiveCampaignError:
    """Return AC's `{"message": ...}` error."""
    return ActiveCampaignError(status, {"message": message})


def not_found(kind: str, identifier: Any) -> ActiveCampaignError:
    return message_error(404, f"No Result found for {kind} with id {identifier}")


def field_error(title: str, code: str, pointer: str, detail: str = "") -> dict[str, Any]:
    return {"title": title, "detail": detail, "code": code, "source": {"pointer": pointer}}


def unprocessable(*errors: dict[str, Any]) -> ActiveCampaignError:
    """Return AC's 422 `{"errors": [...]}`."""
    return ActiveCampaignError(422, {"errors": list(errors)})


def duplicate_email() -> ActiveCampaignError:
    return unprocessable(field_error("Email address already exists in the system.", "duplicate",
                                     "/data/attributes/email"))


def _timezone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} for activecampaign_timezone (use an IANA name such as America/Chicago)"
    return None


class ActiveCampaignAPI(EmulatedAPI):
    name = "activecampaign"
    label = "ActiveCampaign"
    prefix = "/activecampaign/api/3"
    options = (
        Option("activecampaign_token", "sandbox-activecampaign-token", "the Api-Token ActiveCampaign accepts",
               not_blank("ActiveCampaign token")),
        Option("activecampaign_rate_limit", 5, "ActiveCampaign requests allowed per second per account; 0 turns "
                                               "the limit off", not_negative),
        Option("activecampaign_bulk_import_rate_limit", 100, "ActiveCampaign bulk imports of several contacts "
                                                             "allowed per minute; 0 turns the limit off",
               not_negative),
        Option("activecampaign_bulk_import_single_rate_limit", 20, "ActiveCampaign bulk imports of one contact "
                                                                   "allowed per minute; 0 turns the limit off",
               not_negative),
        Option("activecampaign_import_delay_ms", 500, "how long a bulk import waits before a later request "
                                                      "applies it", not_negative),
        Option("activecampaign_timezone", "America/Chicago", "the account's time zone, in which dates are written",
               _timezone_problem),
    )
    credential = "activecampaign_token"
    schema = SCHEMA
    seed_key = "activecampaign_contacts"
    control_actions = (
        ControlAction("GET", "contacts", "control_contacts"),
        ControlAction("POST", "contacts", "control_edit"),
        ControlAction("POST", "import-delay", "control_import_delay"),
    )
    routes = (
        Route("GET", "/contacts", "list_contacts"),
        Route("POST", "/contacts", "create_contact", write=True),
        Route("GET", "/contacts/{contact_id}", "get_contact"),
        Route("PUT", "/contacts/{contact_id}", "update_contact", write=True),
        Route("DELETE", "/contacts/{contact_id}", "delete_contact", write=True),
        Route("POST", "/contact/sync", "sync_contact", write=True),
        Route("GET", "/contacts/{contact_id}/contactLists", "list_contact_lists"),
        Route("GET", "/contacts/{contact_id}/contactTags", "list_contact_tags"),
        Route("GET", "/contacts/{contact_id}/fieldValues", "list_contact_field_values"),
        Route("POST", "/import/bulk_import", "bulk_import", write=True),
        Route("GET", "/import/info", "import_info"),
        Route("GET", "/lists", "list_lists"),
        Route("POST", "/contactLists", "set_contact_list", write=True),
        Route("GET", "/tags", "list_tags"),
        Route("POST", "/tags", "create_tag", write=True),
        Route("POST", "/contactTags", "add_contact_tag", write=True),
        Route("DELETE", "/contactTags/{contact_tag_id}", "remove_contact_tag", write=True),
        Route("GET", "/fields", "list_fields"),
        Route("POST", "/fields", "create_field", write=True),
        Route("POST", "/fieldRels", "create_field_rel", write=True),
        Route("POST", "/fieldValues", "create_field_value", write=True),
        Route("PUT", "/fieldValues/{field_value_id}", "update_field_value", write=True),
    )

    def __init__(self, store: Store, settings: Mapping[str, Any], oauth: OAuthAuthority):
        super().__init__(store, settings, oauth)
        self.token = settings["activecampaign_token"]
        self.zone = ZoneInfo(settings["activecampaign_timezone"])
        self.rate = RollingWindowLimit(settings["activecampaign_rate_limit"], window_seconds=1.0, daily_limit=None,
                                       policy="SECONDLY")
        self.bulk = RollingWindowLimit(settings["activecampaign_bulk_import_rate_limit"], window_seconds=60.0,
                                       daily_limit=None, policy="MINUTELY")
        self.bulk_single = RollingWindowLimit(settings["activecampaign_bulk_import_single_rate_limit"],
                                              window_seconds=60.0, daily_limit=None, policy="MINUTELY")
        self.limiters = {"activecampaign_rate_limit": self.rate,
                         "activecampaign_bulk_import_rate_limit": self.bulk,
                         "activecampaign_bulk_import_single_rate_limit": self.bulk_single}
        self.import_delay = settings["activecampaign_import_delay_ms"] / 1000
        store.add_function("activecampaign_contains", 2, _contains)

    def install_defaults(self, db: sqlite3.Connection) -> None:
        """Give the account its first list and standard custom fields when it lacks them."""
        now = int(time.time())
        db.executemany("INSERT OR IGNORE INTO activecampaign_list (id, name, stringid, cdate) VALUES (?, ?, ?, ?)",
                       [(list_id, name, stringid, now) for list_id, name, stringid in DEFAULT_LISTS])
        db.executemany(
            "INSERT OR IGNORE INTO activecampaign_field (id, title, type, perstag, ordernum, cdate, udate) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(field_id, title, kind, perstag, field_id, now, now) for field_id, title, kind, perstag in DEFAULT_FIELDS])
        # The standard fields are on every list, as a new account's are.
        db.executemany("INSERT OR IGNORE INTO activecampaign_field_rel (field, relid, cdate) VALUES (?, ?, ?)",
                       [(field_id, ALL_LISTS, now) for field_id, *_ in DEFAULT_FIELDS])

    # Gateway: credentials, limits, error shapes.

    def authenticate(self, request: Request) -> str:
        token = request.headers.get("Api-Token", "").strip()
        if not token or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise message_error(403, BAD_TOKEN)
        # The account, not the key: every key of an account shares its budget.
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
    def _rate_limited(seconds: float, headers: dict[str, str] | None = None) -> ActiveCampaignError:
        return ActiveCampaignError(429, {"message": "Too Many Requests"},
                                   headers={**(headers or {}), "Retry-After": str(max(1, math.ceil(seconds)))})

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind == "expired_token":
            # An API key does not expire: a revoked one is a bad one.
            return message_error(403, BAD_TOKEN).response()
        if fault.status == 429:
            return self._rate_limited(fault.retry_after or 1).response()
        if fault.status == 500:
            return self.internal_error()
        return gateway_page(fault.status)

    def routing_error(self, status: int) -> Response:
        if status == 405:
            return message_error(405, "Method Not Allowed").response()
        return message_error(404, "Not Found").response()

    def internal_error(self) -> Response:
        return message_error(500, "An unexpected error occurred.").response()

    def json_body(self, request: Request) -> dict[str, Any]:
        try:
            body = parse_json(request)
        except ValueError as error:
            raise message_error(400, f"The request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise message_error(400, "The request body must be a JSON object.")
        return body

    def handle(self, route: Route, request: Request, arguments: dict[str, str]) -> Response:
        self.apply_due_imports()
        return super().handle(route, request, arguments)

    def info(self) -> dict[str, Any]:
        return {"base_path": self.prefix, "stands_for": "https://<account>.api-us1.com/api/3"}

    # Contacts: reads.

    def list_contacts(self, request: Request) -> Response:
        args = request.args
        limit = min(self._int_arg(args.get("limit"), "limit", DEFAULT_PAGE), MAX_PAGE) or DEFAULT_PAGE
        offset = self._int_arg(args.get("offset"), "offset", 0)
        sideloads = self._sideloads(args)
        where: list[str] = []
        params: list[Any] = []
        ids = self._ids_arg(args)
        if ids:
            where.append(f"c.id IN ({', '.join('?' * len(ids))})")
            params += ids
        if args.get("email"):
            where.append("c.email_key = ?")
            params.append(args["email"].strip().lower())
        search = args.get("search", "").strip()
        if search:
            where.append("(" + " OR ".join(f"activecampaign_contains({column}, ?)" for column in SEARCHED) + ")")
            params += [search] * len(SEARCHED)
        if args.get("id_greater"):
            where.append("c.id > ?")
            params.append(self._int_arg(args["id_greater"], "id_greater", 0))
        for name, column, operator in (("updated_after", "udate", ">="), ("updated_before", "udate", "<"),
                                       ("created_after", "cdate", ">="), ("created_before", "cdate", "<")):
            raw = args.get(f"filters[{name}]")
            if raw:
                where.append(f"c.{column} {operator} ?")
                params.append(self._filter_time(raw, f"filters[{name}]"))
        status = args.get("status", "-1")
        if status not in ("-1", *map(str, LIST_STATUSES)):
            raise message_error(400, "status must be -1, 0, 1, 2 or 3")
        list_id = args.get("listid")
        if list_id or status != "-1":
            membership = ["l.contact = c.id"]
            if list_id:
                membership.append("l.list = ?")
                params.append(self._int_arg(list_id, "listid", 0))
            if status != "-1":
                membership.append("l.status = ?")
                params.append(int(status))
            where.append(f"EXISTS (SELECT 1 FROM activecampaign_contact_list l WHERE {' AND '.join(membership)})")
        order = []
        for name, column in ORDERS.items():
            direction = args.get(f"orders[{name}]")
            if direction is not None:
                if direction.upper() not in ("ASC", "DESC"):
                    raise message_error(400, f"orders[{name}] must be ASC or DESC")
                order.append(f"c.{column} {direction.upper()}")
        if not any(item.startswith("c.id ") for item in order):
            order.append("c.id ASC")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order_clause = ", ".join(order)
        # A time filter in id order (Syncapp's delta read) is read one of two ways; the
        # count, read from the time index, says which (contacts_page_query).
        by_time = (any(args.get(f"filters[{name}]") for name in ("updated_after", "updated_before"))
                   and not ids and not args.get("email") and not search and order_clause in ("c.id ASC", "c.id DESC"))
        with self.store.read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM activecampaign_contact c {clause}", params).fetchone()
            through = None
            if by_time:
                (last_id,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM activecampaign_contact").fetchone()
                through = "changes" if changes_are_few(total, limit=limit, contacts=last_id) else "ids"
            rows = db.execute(contacts_page_query(self._columns("c"), clause, order_clause, through=through),
                              [*params, limit, offset]).fetchall()
            included = {name: [item for row in rows for item in self._sideload(db, name, row[0])]
                        for name in sideloads}
        return json_response({"scoreValues": [], **included,
                              "contacts": [self._contact_json(row, request) for row in rows],
                              "meta": {"total": str(total), "page_input": {"limit": limit, "offset": offset}}})

    def get_contact(self, request: Request, contact_id: str) -> Response:
        # One contact reads with all three side-loads whatever `include` asks, as AC's
        # "Retrieve a contact" does; a name it does not know is still refused.
        self._sideloads(request.args)
        with self.store.read() as db:
            row = self._contact_row(db, contact_id)
            body = {
                "contactLists": self._memberships(db, row[0]),
                "contactTags": self._contact_tags(db, row[0]),
                "fieldValues": self._field_values(db, row[0]),
                "contact": self._contact_json(row, request),
            }
        return json_response(body)

    def list_contact_lists(self, request: Request, contact_id: str) -> Response:
        with self.store.read() as db:
            row = self._contact_row(db, contact_id)
            return json_response({"contactLists": self._memberships(db, row[0])})

    def list_contact_tags(self, request: Request, contact_id: str) -> Response:
        with self.store.read() as db:
            row = self._contact_row(db, contact_id)
            return json_response({"contactTags": self._contact_tags(db, row[0])})

    def list_contact_field_values(self, request: Request, contact_id: str) -> Response:
        with self.store.read() as db:
            row = self._contact_row(db, contact_id)
            return json_response({"fieldValues": self._field_values(db, row[0])})

    # Contacts: writes.

    def create_contact(self, request: Request) -> Response:
        given = self._contact_input(self.json_body(request))
        with self.store.write() as db:
            if self._find_by_email(db, given["email"]) is not None:
                raise duplicate_email()
            contact_id = self._insert(db, given, int(time.time()))
            return self._contact_reply(db, request, contact_id, 201)

    def sync_contact(self, request: Request) -> Response:
        given = self._contact_input(self.json_body(request))
        with self.store.write() as db:
            existing = self._find_by_email(db, given["email"])
            now = int(time.time())
            if existing is None:
                return self._contact_reply(db, request, self._insert(db, given, now), 201)
            # The address found the contact: in another letter case it is the same address,
            # and the spelling the contact holds stays (nothing changed, `udate` stays too).
            self._update(db, existing, {**given, "email": existing[1]}, now)
            return self._contact_reply(db, request, existing[0], 200)

    def update_contact(self, request: Request, contact_id: str) -> Response:
        given = self._contact_input(self.json_body(request), require_email=False)
        with self.store.write() as db:
            row = self._contact_row(db, contact_id)
            if "email" in given:
                holder = self._find_by_email(db, given["email"])
                if holder is not None and holder[0] != row[0]:
                    raise duplicate_email()
            self._update(db, row, given, int(time.time()))
            return self._contact_reply(db, request, row[0], 200)

    def delete_contact(self, request: Request, contact_id: str) -> Response:
        with self.store.write() as db:
            row = self._contact_row(db, contact_id)
            for table in ("activecampaign_contact_list", "activecampaign_contact_tag", "activecampaign_field_value"):
                db.execute(f"DELETE FROM {table} WHERE contact = ?", (row[0],))
            db.execute("DELETE FROM activecampaign_contact WHERE id = ?", (row[0],))
        return json_response({})

    # Lists.

    def list_lists(self, request: Request) -> Response:
        with self.store.read() as db:
            rows = db.execute("SELECT id, name, stringid, cdate FROM activecampaign_list ORDER BY id").fetchall()
        lists = [{"id": str(list_id), "name": name, "stringid": stringid, "cdate": self._local(cdate),
                  "sender_url": "", "sender_reminder": "", "send_last_broadcast": "0"}
                 for list_id, name, stringid, cdate in rows]
        return json_response({"lists": lists, "meta": {"total": str(len(lists))}})

    def set_contact_list(self, request: Request) -> Response:
        item = self._wrapped(self.json_body(request), "contactList")
        status = self._int_value(item.get("status"), "contactList", "status")
        if status not in (LIST_SUBSCRIBED, LIST_UNSUBSCRIBED):
            raise unprocessable(field_error("Status must be 1 (subscribed) or 2 (unsubscribed).", "invalid",
                                            "/data/attributes/status"))
        contact_id = self._int_value(item.get("contact"), "contactList", "contact")
        list_id = self._int_value(item.get("list"), "contactList", "list")
        with self.store.write() as db:
            row = self._contact_row(db, str(contact_id))
            self._require_list(db, list_id)
            self._set_list_status(db, contact_id, list_id, status, int(time.time()))
            membership = next(m for m in self._memberships(db, contact_id) if m["list"] == str(list_id))
            contact = self._contact_json(self._contact_row(db, str(row[0])), request)
        return json_response({"contacts": [contact], "contactList": membership}, 201)

    # Tags.

    def list_tags(self, request: Request) -> Response:
        with self.store.read() as db:
            rows = db.execute("SELECT t.id, t.tag, t.tag_type, t.description, t.cdate, "
                              "(SELECT COUNT(*) FROM activecampaign_contact_tag ct WHERE ct.tag = t.id) "
                              "FROM activecampaign_tag t ORDER BY t.id").fetchall()
        tags = [self._tag_json(row) for row in rows]
        return json_response({"tags": tags, "meta": {"total": str(len(tags))}})

    def create_tag(self, request: Request) -> Response:
        item = self._wrapped(self.json_body(request), "tag")
        name, tag_type = item.get("tag"), item.get("tagType", "contact")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
            raise unprocessable(field_error("Tag name is required and at most 255 characters.", "field_missing",
                                            "/data/attributes/tag"))
        if tag_type not in TAG_TYPES:
            raise unprocessable(field_error("tagType must be contact or template.", "invalid",
                                            "/data/attributes/tagType"))
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM activecampaign_tag WHERE tag_key = ?", (name.strip().lower(),)).fetchone():
                raise unprocessable(field_error("Tag already exists.", "duplicate", "/data/attributes/tag"))
            tag_id = self._insert_tag(db, name.strip(), tag_type, str(item.get("description") or ""))
            row = db.execute("SELECT id, tag, tag_type, description, cdate, 0 FROM activecampaign_tag WHERE id = ?",
                             (tag_id,)).fetchone()
        return json_response({"tag": self._tag_json(row)}, 201)

    def add_contact_tag(self, request: Request) -> Response:
        item = self._wrapped(self.json_body(request), "contactTag")
        contact_id = self._int_value(item.get("contact"), "contactTag", "contact")
        tag_id = self._int_value(item.get("tag"), "contactTag", "tag")
        with self.store.write() as db:
            self._contact_row(db, str(contact_id))
            if db.execute("SELECT 1 FROM activecampaign_tag WHERE id = ?", (tag_id,)).fetchone() is None:
                raise not_found("Tag", tag_id)
            existing = db.execute("SELECT id FROM activecampaign_contact_tag WHERE contact = ? AND tag = ?",
                                  (contact_id, tag_id)).fetchone()
            if existing is None:
                db.execute("INSERT INTO activecampaign_contact_tag (contact, tag, cdate) VALUES (?, ?, ?)",
                           (contact_id, tag_id, int(time.time())))
            [tagged] = [tag for tag in self._contact_tags(db, contact_id) if tag["tag"] == str(tag_id)]
        # Tagging a contact twice changes nothing and answers with the tag it has.
        return json_response({"contactTag": tagged}, 200 if existing else 201)

    def remove_contact_tag(self, request: Request, contact_tag_id: str) -> Response:
        with self.store.write() as db:
            deleted = db.execute("DELETE FROM activecampaign_contact_tag WHERE id = ?",
                                 (int(contact_tag_id) if contact_tag_id.isdigit() else -1,)).rowcount
        if not deleted:
            raise not_found("ContactTag", contact_tag_id)
        return json_response({})

    # Custom fields.

    def list_fields(self, request: Request) -> Response:
        with self.store.read() as db:
            rows = db.execute("SELECT id, title, type, perstag, descript, defval, ordernum, cdate, udate "
                              "FROM activecampaign_field ORDER BY ordernum, id").fetchall()
            relations = db.execute("SELECT id, field, relid, cdate FROM activecampaign_field_rel "
                                   "ORDER BY id").fetchall()
        rels_of: dict[int, list[str]] = {}
        for rel_id, field_id, _, _ in relations:
            rels_of.setdefault(field_id, []).append(str(rel_id))
        fields = [self._field_json(row, rels_of.get(row[0], [])) for row in rows]
        return json_response({"fieldOptions": [], "fieldRels": [self._field_rel_json(row) for row in relations],
                              "fields": fields, "meta": {"total": str(len(fields))}})

    def create_field(self, request: Request) -> Response:
        item = self._wrapped(self.json_body(request), "field")
        title, kind = item.get("title"), item.get("type")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TEXT:
            raise unprocessable(field_error("Field title is required.", "field_missing", "/data/attributes/title"))
        if kind not in FIELD_TYPES:
            raise unprocessable(field_error(f"Field type must be one of {', '.join(FIELD_TYPES)}.", "invalid",
                                            "/data/attributes/type"))
        perstag = item.get("perstag") or re.sub(r"[^A-Z0-9]+", "_", title.upper()).strip("_")
        if not isinstance(perstag, str) or not re.fullmatch(r"[A-Z0-9_]{1,64}", perstag):
            raise unprocessable(field_error("Personalization tag must be capital letters, digits and _.", "invalid",
                                            "/data/attributes/perstag"))
        now = int(time.time())
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM activecampaign_field WHERE perstag = ?", (perstag,)).fetchone():
                raise unprocessable(field_error("Personalization tag already exists.", "duplicate",
                                                "/data/attributes/perstag"))
            (field_id,) = db.execute(
                "INSERT INTO activecampaign_field (title, type, perstag, descript, defval, ordernum, cdate, udate) "
                "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(ordernum), 0) + 1 FROM activecampaign_field), ?, ?) "
                "RETURNING id",
                (title.strip(), kind, perstag, str(item.get("descript") or ""), str(item.get("defval") or ""), now,
                 now),
            ).fetchone()
            row = db.execute("SELECT id, title, type, perstag, descript, defval, ordernum, cdate, udate "
                             "FROM activecampaign_field WHERE id = ?", (field_id,)).fetchone()
        return json_response({"field": self._field_json(row, [])}, 201)

    def create_field_rel(self, request: Request) -> Response:
        """Put a custom field on a list, or on every list (relid 0); until then it takes no values."""
        item = self._wrapped(self.json_body(request), "fieldRel")
        field_id = self._int_value(item.get("field"), "fieldRel", "field")
        relid = self._int_value(item.get("relid"), "fieldRel", "relid")
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM activecampaign_field WHERE id = ?", (field_id,)).fetchone() is None:
                raise not_found("Field", field_id)
            if relid != ALL_LISTS:
                self._require_list(db, relid)
            existing = db.execute("SELECT id, field, relid, cdate FROM activecampaign_field_rel "
                                  "WHERE field = ? AND relid = ?", (field_id, relid)).fetchone()
            row = existing or db.execute("INSERT INTO activecampaign_field_rel (field, relid, cdate) VALUES (?, ?, ?) "
                                         "RETURNING id, field, relid, cdate",
                                         (field_id, relid, int(time.time()))).fetchone()
        # As AC's example reply: the field and list echoed as sent. Relating a field to a list
        # it is on already changes nothing and answers with that relation.
        rel_id, _, _, cdate = row
        return json_response({"fieldRel": {"relid": item["relid"], "field": item["field"], "cdate": self._local(cdate),
                                           "links": [], "id": str(rel_id)}}, 200 if existing else 201)

    def create_field_value(self, request: Request) -> Response:
        item = self._wrapped(self.json_body(request), "fieldValue")
        contact_id = self._int_value(item.get("contact"), "fieldValue", "contact")
        field_id = self._int_value(item.get("field"), "fieldValue", "field")
        with self.store.write() as db:
            self._contact_row(db, str(contact_id))
            value = self._checked_value(db, field_id, item.get("value"), "/data/attributes/value")
            if db.execute("SELECT 1 FROM activecampaign_field_value WHERE contact = ? AND field = ?",
                          (contact_id, field_id)).fetchone():
                raise unprocessable(field_error("A value for this field already exists: update it instead.",
                                                "duplicate", "/data/attributes/field"))
            self._set_field_values(db, contact_id, {field_id: value}, int(time.time()))
            [stored] = [fv for fv in self._field_values(db, contact_id) if fv["field"] == str(field_id)]
        return json_response({"fieldValue": stored}, 201)

    def update_field_value(self, request: Request, field_value_id: str) -> Response:
        item = self._wrapped(self.json_body(request), "fieldValue")
        with self.store.write() as db:
            found = db.execute("SELECT contact, field FROM activecampaign_field_value WHERE id = ?",
                               (int(field_value_id) if field_value_id.isdigit() else -1,)).fetchone()
            if found is None:
                raise not_found("FieldValue", field_value_id)
            contact_id, field_id = found
            value = self._checked_value(db, field_id, item.get("value"), "/data/attributes/value")
            self._set_field_values(db, contact_id, {field_id: value}, int(time.time()))
            [stored] = [fv for fv in self._field_values(db, contact_id) if fv["field"] == str(field_id)]
        return json_response({"fieldValue": stored})

    # Bulk import.

    def bulk_import(self, request: Request) -> Response:
        if len(request.get_data(cache=True)) > MAX_IMPORT_BYTES:
            raise ActiveCampaignError(413, {"success": 0, "message": f"The payload is larger than "
                                                                      f"{MAX_IMPORT_BYTES} bytes."})
        body = self.json_body(request)
        contacts = body.get("contacts")
        if not isinstance(contacts, list) or not contacts:
            raise ActiveCampaignError(400, {"success": 0, "message": "'contacts' is a required field."})
        if len(contacts) > MAX_IMPORT:
            raise ActiveCampaignError(400, {"success": 0, "message": f"A bulk import takes at most {MAX_IMPORT} "
                                                                     f"contacts; {len(contacts)} were given."})
        reasons = [{"contact": index, "failureReasons": ["'email' is a required field."]}
                   for index, contact in enumerate(contacts)
                   if not isinstance(contact, dict) or not isinstance(contact.get("email"), str)
                   or not contact["email"].strip()]
        if reasons:
            raise ActiveCampaignError(400, {"success": 0, "message": "Some contacts are missing required data.",
                                            "failureReasons": reasons})
        budget = self.bulk_single if len(contacts) == 1 else self.bulk
        if not budget.admit(self.name).allowed:
            raise self._rate_limited(budget.retry_after(self.name))
        batch_id = str(uuid.uuid4())
        now = time.time()
        with self.store.write() as db:
            db.execute("INSERT INTO activecampaign_import (batch_id, contacts, queued, status) "
                       "VALUES (?, ?, ?, 'waiting')", (batch_id, json.dumps(contacts, ensure_ascii=False), now))
        return json_response({"success": 1, "queued_contacts": len(contacts), "batchId": batch_id})

    def import_info(self, request: Request) -> Response:
        batch_id = request.args.get("batchId", "")
        if not batch_id:
            raise ActiveCampaignError(400, {"success": 0, "message": "'batchId' is a required field."})
        with self.store.read() as db:
            row = db.execute("SELECT status, success, failure FROM activecampaign_import WHERE batch_id = ?",
                             (batch_id,)).fetchone()
        if row is None:
            raise message_error(404, f"No Result found for Import with id {batch_id}")
        status, success, failure = row
        return json_response({"status": status, "success": json.loads(success),
                              "failure": [entry["email"] for entry in json.loads(failure)]})

    def apply_due_imports(self) -> None:
        """Apply every queued import whose delay is over, in the order they were queued."""
        due = time.time() - self.import_delay
        with self.store.read() as db:
            if db.execute("SELECT 1 FROM activecampaign_import WHERE status = 'waiting' AND queued <= ? LIMIT 1",
                          (due,)).fetchone() is None:
                return
        with self.store.write() as db:
            batches = db.execute("SELECT batch_id, contacts FROM activecampaign_import WHERE status = 'waiting' "
                                 "AND queued <= ? ORDER BY queued", (due,)).fetchall()
            for batch_id, contacts in batches:
                success, failure = [], []
                for contact in json.loads(contacts):
                    try:
                        created = self._import_one(db, contact, int(time.time()))
                    except ActiveCampaignError as error:
                        failure.append({"email": contact["email"], "failureReasons": _reasons(error)})
                    else:
                        if created is not None:
                            success.append(str(created))
                db.execute("UPDATE activecampaign_import SET status = 'completed', success = ?, failure = ? "
                           "WHERE batch_id = ?", (json.dumps(success), json.dumps(failure, ensure_ascii=False),
                                                  batch_id))

    def _import_one(self, db: sqlite3.Connection, contact: dict[str, Any], now: int) -> int | None:
        """Create or update one imported contact; return its id when created. Raise the error
        that makes it a failure (nothing of it is written then)."""
        given = self._contact_input({"contact": {
            "email": contact["email"], "firstName": contact.get("first_name"), "lastName": contact.get("last_name"),
            "phone": contact.get("phone"),
            "fieldValues": [{"field": field.get("id") if isinstance(field, dict) else None,
                             "value": field.get("value") if isinstance(field, dict) else None}
                            for field in contact.get("fields") or []],
        }})
        values = {field_id: self._checked_value(db, field_id, value, "/fields")
                  for field_id, value in given.pop("fieldValues", {}).items()}
        lists = {}
        for key, status in (("subscribe", LIST_SUBSCRIBED), ("unsubscribe", LIST_UNSUBSCRIBED)):
            for entry in contact.get(key) or []:
                list_id = entry.get("listid") if isinstance(entry, dict) else None
                if not str(list_id).isdigit() or db.execute("SELECT 1 FROM activecampaign_list WHERE id = ?",
                                                            (int(list_id),)).fetchone() is None:
                    raise not_found("List", list_id)
                lists[int(list_id)] = status
        tags = contact.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
            raise unprocessable(field_error("tags must be a list of tag names.", "invalid", "/tags"))
        existing = self._find_by_email(db, given["email"])
        if existing is None:
            contact_id, created = self._insert(db, given, now), True
        else:
            contact_id, created = existing[0], False
            self._update(db, existing, given, now)
        self._set_field_values(db, contact_id, values, now)
        for list_id, status in lists.items():
            self._set_list_status(db, contact_id, list_id, status, now)
        for name in tags:
            tag_id = self._tag_id(db, name.strip())
            db.execute("INSERT OR IGNORE INTO activecampaign_contact_tag (contact, tag, cdate) VALUES (?, ?, ?)",
                       (contact_id, tag_id, now))
        return contact_id if created else None

    # Sandbox control: what people do in AC's pages, and a dump for the tests.

    def control_contacts(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every contact with its list statuses, tags and field values (by perstag); the imports."""
        self.apply_due_imports()
        with self.store.read() as db:
            rows = db.execute(f"SELECT {CONTACT_COLUMNS} FROM activecampaign_contact ORDER BY id").fetchall()
            contacts = [self._dump(db, row) for row in rows]
            imports = [{"batchId": batch_id, "status": status, "queued": self._local(int(queued)),
                        "success": json.loads(success), "failure": json.loads(failure)}
                       for batch_id, status, queued, success, failure in db.execute(
                           "SELECT batch_id, status, queued, success, failure FROM activecampaign_import "
                           "ORDER BY queued")]
        return {"contacts": contacts, "imports": imports}

    def control_import_delay(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"ms": N}`: how long queued imports wait from now on, those queued already included."""
        refuse_unknown_keys(body, {"ms"})
        ms = body.get("ms")
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ControlError("ms must be a non-negative integer")
        self.import_delay = ms / 1000
        return {"ms": ms}

    def reset_limits(self) -> None:
        super().reset_limits()
        self.import_delay = self.settings["activecampaign_import_delay_ms"] / 1000

    def control_edit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create or change the contact holding `email` as the person (signing up, unsubscribing
        through a link) or a user in AC's pages would; every change moves `udate`."""
        refuse_unknown_keys(body, {"email", "firstName", "lastName", "phone", "fieldValues", "lists"})
        field_values, lists = body.get("fieldValues") or {}, body.get("lists") or {}
        if not isinstance(field_values, dict) or not isinstance(lists, dict):
            raise ControlError("fieldValues and lists must be objects: {perstag: value}, {list id: status}")
        try:
            given = self._contact_input({"contact": {k: body.get(k) for k in ("email", "firstName", "lastName",
                                                                                 "phone")}})
            now = int(time.time())
            with self.store.write() as db:
                fields = dict(db.execute("SELECT perstag, id FROM activecampaign_field"))
                unknown = sorted(set(field_values) - set(fields))
                if unknown:
                    raise ControlError(f"no custom fields with the personalization tags {', '.join(unknown)}")
                values = {fields[tag]: self._checked_value(db, fields[tag], value, f"/fieldValues/{tag}")
                          for tag, value in field_values.items()}
                statuses = {}
                for list_id, status in lists.items():
                    if not str(list_id).isdigit() or status not in (LIST_SUBSCRIBED, LIST_UNSUBSCRIBED):
                        raise ControlError("lists maps list ids to 1 (subscribed) or 2 (unsubscribed)")
                    self._require_list(db, int(list_id))
                    statuses[int(list_id)] = status
                existing = self._find_by_email(db, given["email"])
                if existing is None:
                    contact_id = self._insert(db, given, now)
                else:
                    contact_id = existing[0]
                    self._update(db, existing, given, now)
                self._set_field_values(db, contact_id, values, now)
                for list_id, status in statuses.items():
                    self._set_list_status(db, contact_id, list_id, status, now)
                return self._dump(db, self._contact_row(db, str(contact_id)))
        except ActiveCampaignError as error:
            raise ControlError("; ".join(_reasons(error))) from None

    def _dump(self, db: sqlite3.Connection, row: tuple) -> dict[str, Any]:
        contact_id, email, first_name, last_name, phone, cdate, udate = row
        return {
            "id": str(contact_id), "email": email, "firstName": first_name, "lastName": last_name, "phone": phone,
            "cdate": self._local(cdate), "udate": self._local(udate),
            "lists": [{"list": m["list"], "status": int(m["status"])} for m in self._memberships(db, contact_id)],
            "tags": [name for (name,) in db.execute(
                "SELECT t.tag FROM activecampaign_contact_tag ct JOIN activecampaign_tag t ON t.id = ct.tag "
                "WHERE ct.contact = ? ORDER BY ct.id", (contact_id,))],
            "fieldValues": dict(db.execute(
                "SELECT f.perstag, v.value FROM activecampaign_field_value v JOIN activecampaign_field f "
                "ON f.id = v.field WHERE v.contact = ? ORDER BY f.id", (contact_id,))),
        }

    # Seeding (see `sandbox.seed`).

    def seed(self, db: sqlite3.Connection, rng: random.Random, people: list[Person],
             hostile_records: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the people as contacts in the first list (mostly subscribed, some unsubscribed, a
        few in none), with their company, tags and 5% of the addresses in other letter case,
        changed at times in the past year (never before a change already made); then the
        hostile records. AC holds only what its API accepts: a record it would refuse (a
        malformed or taken address, a value too long, an impossible date) is listed in
        `activecampaign_refused` with the reason."""
        now = int(time.time())
        (latest,) = db.execute("SELECT COALESCE(MAX(udate), 0) FROM activecampaign_contact").fetchone()
        start = max(latest, now - YEAR_MS // 1000)
        taken = {key for (key,) in lookup(db, "SELECT email_key FROM activecampaign_contact WHERE email_key IN "
                                              "({marks})", sorted({p.email.lower() for p in people}))}
        tag_ids = {name: self._tag_id(db, name) for name in SEED_TAGS} if people else {}
        rows, memberships, tags, companies = [], [], [], []
        for person in people:
            if person.email.lower() in taken:
                continue
            taken.add(person.email.lower())
            udate = rng.randint(start, now)
            cdate = udate - rng.randrange(0, YEAR_MS // 2000)
            email = person.email.title() if rng.random() < 0.05 else person.email
            rows.append((email, email.lower(), person.firstname[:MAX_TEXT], person.lastname[:MAX_TEXT],
                         (person.phone or "")[:MAX_TEXT], cdate, udate))
            memberships.append(rng.choices(SEED_LIST_STATUSES, SEED_LIST_WEIGHTS)[0])
            tags.append(rng.sample(SEED_TAGS, rng.choice((0, 0, 1, 2))))
            companies.append(person.company)
        ids = [db.execute("INSERT INTO activecampaign_contact (email, email_key, first_name, last_name, phone, cdate, "
                          "udate) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id", row).fetchone()[0] for row in rows]
        db.executemany("INSERT INTO activecampaign_contact_list (contact, list, status, sdate, udate) "
                       "VALUES (?, 1, ?, ?, ?)",
                       [(contact_id, status, row[5], row[6])
                        for contact_id, status, row in zip(ids, memberships, rows, strict=True) if status])
        db.executemany("INSERT INTO activecampaign_contact_tag (contact, tag, cdate) VALUES (?, ?, ?)",
                       [(contact_id, tag_ids[name], row[5])
                        for contact_id, names, row in zip(ids, tags, rows, strict=True) for name in names])
        company_field = dict(db.execute("SELECT perstag, id FROM activecampaign_field")).get("COMPANY")
        if company_field is not None:
            db.executemany("INSERT INTO activecampaign_field_value (contact, field, value, cdate, udate) "
                           "VALUES (?, ?, ?, ?, ?)",
                           [(contact_id, company_field, company, row[5], row[6])
                            for contact_id, company, row in zip(ids, companies, rows, strict=True) if company])
        hostile, refused = 0, []
        for record in hostile_records:
            try:
                self._seed_hostile(db, record, now)
            except ActiveCampaignError as error:
                refused.append({"email": record.get("email"), "message": "; ".join(_reasons(error))})
            else:
                hostile += 1
        return {"activecampaign_contacts": len(ids), "activecampaign_hostile_contacts": hostile,
                "activecampaign_refused": refused}

    def _seed_hostile(self, db: sqlite3.Connection, record: dict[str, Any], now: int) -> None:
        given = self._contact_input({"contact": {key: record.get(name) for name, key in HOSTILE_KEYS.items()}})
        if self._find_by_email(db, given["email"]) is not None:
            raise duplicate_email()
        fields = dict(db.execute("SELECT perstag, id FROM activecampaign_field"))
        values = {fields[tag]: self._checked_value(db, fields[tag], record[name], f"/fieldValues/{tag}")
                  for name, tag in HOSTILE_FIELDS.items() if record.get(name) is not None and tag in fields}
        self._set_field_values(db, self._insert(db, given, now), values, now)

    # Helpers: parsing.

    def _contact_input(self, body: dict[str, Any], *, require_email: bool = True) -> dict[str, Any]:
        """Return the checked `{email, firstName, lastName, phone, fieldValues: {field id: value}}`
        of a `{"contact": {...}}` body (only what it gives); raise AC's 422 otherwise."""
        item = self._wrapped(body, "contact")
        given: dict[str, Any] = {}
        email = item.get("email")
        if email is not None or require_email:
            if not isinstance(email, str) or not email.strip():
                raise unprocessable(field_error("Contact Email Address is not valid.", "email_invalid",
                                                "/data/attributes/email"))
            if email_problem(email.strip()):
                raise unprocessable({**field_error("Contact Email Address is not valid.", "email_invalid",
                                                   "/data/attributes/email"), "error": "must_be_valid_email_address"})
            given["email"] = email.strip()
        for name in ("firstName", "lastName", "phone"):
            value = item.get(name)
            if value is None:
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise unprocessable(field_error(f"{name} must be a string.", "invalid", f"/data/attributes/{name}"))
            if len(str(value)) > MAX_TEXT:
                raise unprocessable(field_error(f"{name} is longer than {MAX_TEXT} characters.", "too_long",
                                                f"/data/attributes/{name}"))
            given[name] = str(value)
        field_values = item.get("fieldValues")
        if field_values is not None:
            if not isinstance(field_values, list) or not all(isinstance(fv, dict) for fv in field_values):
                raise unprocessable(field_error("fieldValues must be a list of {field, value}.", "invalid",
                                                "/data/attributes/fieldValues"))
            given["fieldValues"] = {}
            for fv in field_values:
                field_id = str(fv.get("field", ""))
                if not field_id.isdigit():
                    raise unprocessable(field_error("A field value needs the field's id.", "invalid",
                                                    "/data/attributes/fieldValues"))
                given["fieldValues"][int(field_id)] = fv.get("value")
        return given

    @staticmethod
    def _wrapped(body: dict[str, Any], key: str) -> dict[str, Any]:
        item = body.get(key)
        if not isinstance(item, dict):
            raise unprocessable(field_error(f"The request body needs a '{key}' object.", "field_missing",
                                            f"/data/attributes/{key}"))
        return item

    @staticmethod
    def _int_value(raw: Any, key: str, name: str) -> int:
        if isinstance(raw, bool) or not str(raw).strip().isdigit():
            raise unprocessable(field_error(f"{key}.{name} must be an id.", "invalid", f"/data/attributes/{name}"))
        return int(str(raw).strip())

    @staticmethod
    def _ids_arg(args: MultiDict[str, str]) -> list[int]:
        """Return the contact ids asked for: `ids[]=1&ids[]=2` as AC documents, or `ids=1,2`."""
        parts = [part.strip() for raw in (*args.getlist("ids[]"), *args.getlist("ids"))
                 for part in raw.split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            raise message_error(400, "ids must be contact ids: ids[]=1&ids[]=2, or ids=1,2")
        return [int(part) for part in parts]

    @staticmethod
    def _sideloads(args: MultiDict[str, str]) -> list[str]:
        """Return what `include=` asks to side-load, in the order asked; refuse a name not emulated."""
        names = list(dict.fromkeys(name.strip() for name in args.get("include", "").split(",") if name.strip()))
        unknown = [name for name in names if name not in SIDELOADS]
        if unknown:
            raise message_error(400, f"include {', '.join(unknown)} is not served by the sandbox; it side-loads "
                                     f"{', '.join(SIDELOADS)}")
        return names

    @staticmethod
    def _int_arg(raw: str | None, name: str, default: int) -> int:
        if raw is None or raw == "":
            return default
        if not raw.strip().isdigit():
            raise message_error(400, f"{name} must be a non-negative integer")
        return int(raw)

    def _filter_time(self, raw: str, name: str) -> int:
        """Read a filter date as epoch seconds: with an offset, or in the account's time zone."""
        text = raw.strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                moment = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text[:11] else text)
        except ValueError:
            raise message_error(400, f"{name} must be a date such as 2026-12-04T10:00:00-06:00 or "
                                     f"2026-12-04 10:00:00, got {raw!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return int(moment.timestamp())

    def _checked_value(self, db: sqlite3.Connection, field_id: int, value: Any, pointer: str) -> str:
        """Return a custom field value as stored; raise AC's 404/422 for an unknown field or a bad value."""
        found = db.execute("SELECT type FROM activecampaign_field WHERE id = ?", (field_id,)).fetchone()
        if found is None:
            raise not_found("Field", field_id)
        if db.execute("SELECT 1 FROM activecampaign_field_rel WHERE field = ? LIMIT 1", (field_id,)).fetchone() is None:
            raise unprocessable(field_error(f"Field {field_id} is on no list: relate it to a list (or to every list, "
                                            "relid 0) with POST /fieldRels before giving it values.",
                                            "field_not_related", pointer))
        if value is None or isinstance(value, (dict, list, bool)):
            raise unprocessable(field_error("A field value must be a string.", "invalid", pointer))
        value = str(value)
        if found[0] == "date" and value:
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                raise unprocessable(field_error(f"{value!r} is not a valid date (YYYY-MM-DD).", "invalid",
                                                pointer)) from None
        return value

    # Helpers: storage.

    @staticmethod
    def _columns(alias: str) -> str:
        return ", ".join(f"{alias}.{column.strip()}" for column in CONTACT_COLUMNS.split(","))

    @staticmethod
    def _contact_row(db: sqlite3.Connection, contact_id: str) -> tuple:
        row = db.execute(f"SELECT {CONTACT_COLUMNS} FROM activecampaign_contact WHERE id = ?",
                         (int(contact_id) if contact_id.isdigit() else -1,)).fetchone()
        if row is None:
            raise not_found("Subscriber", contact_id)
        return row

    @staticmethod
    def _find_by_email(db: sqlite3.Connection, email: str) -> tuple | None:
        return db.execute(f"SELECT {CONTACT_COLUMNS} FROM activecampaign_contact WHERE email_key = ?",
                          (email.strip().lower(),)).fetchone()

    @staticmethod
    def _require_list(db: sqlite3.Connection, list_id: int) -> None:
        if db.execute("SELECT 1 FROM activecampaign_list WHERE id = ?", (list_id,)).fetchone() is None:
            raise not_found("List", list_id)

    def _insert(self, db: sqlite3.Connection, given: dict[str, Any], now: int) -> int:
        (contact_id,) = db.execute(
            "INSERT INTO activecampaign_contact (email, email_key, first_name, last_name, phone, cdate, udate) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (given["email"], given["email"].lower(), given.get("firstName", ""), given.get("lastName", ""),
             given.get("phone", ""), now, now),
        ).fetchone()
        values = {field_id: self._checked_value(db, field_id, value, "/data/attributes/fieldValues")
                  for field_id, value in given.get("fieldValues", {}).items()}
        self._set_field_values(db, contact_id, values, now)
        return contact_id

    def _update(self, db: sqlite3.Connection, row: tuple, given: dict[str, Any], now: int) -> None:
        """Apply the given attributes and field values; move `udate` when anything changed."""
        contact_id, email, first_name, last_name, phone, _, _ = row
        current = {"email": email, "firstName": first_name, "lastName": last_name, "phone": phone}
        updated = {**current, **{name: given[name] for name in current if name in given}}
        values = {field_id: self._checked_value(db, field_id, value, "/data/attributes/fieldValues")
                  for field_id, value in given.get("fieldValues", {}).items()}
        if updated != current:
            db.execute("UPDATE activecampaign_contact SET email = ?, email_key = ?, first_name = ?, last_name = ?, "
                       "phone = ?, udate = ? WHERE id = ?",
                       (updated["email"], updated["email"].lower(), updated["firstName"], updated["lastName"],
                        updated["phone"], now, contact_id))
        self._set_field_values(db, contact_id, values, now)

    @staticmethod
    def _touch(db: sqlite3.Connection, contact_id: int, now: int) -> None:
        db.execute("UPDATE activecampaign_contact SET udate = ? WHERE id = ?", (now, contact_id))

    def _set_field_values(self, db: sqlite3.Connection, contact_id: int, values: dict[int, str], now: int) -> None:
        changed = False
        for field_id, value in values.items():
            current = db.execute("SELECT value FROM activecampaign_field_value WHERE contact = ? AND field = ?",
                                 (contact_id, field_id)).fetchone()
            if current is None:
                db.execute("INSERT INTO activecampaign_field_value (contact, field, value, cdate, udate) "
                           "VALUES (?, ?, ?, ?, ?)", (contact_id, field_id, value, now, now))
                changed = True
            elif current[0] != value:
                db.execute("UPDATE activecampaign_field_value SET value = ?, udate = ? WHERE contact = ? AND field = ?",
                           (value, now, contact_id, field_id))
                changed = True
        if changed:
            self._touch(db, contact_id, now)

    def _set_list_status(self, db: sqlite3.Connection, contact_id: int, list_id: int, status: int, now: int) -> None:
        current = db.execute("SELECT status FROM activecampaign_contact_list WHERE contact = ? AND list = ?",
                             (contact_id, list_id)).fetchone()
        if current is not None and current[0] == status:
            return
        db.execute("INSERT INTO activecampaign_contact_list (contact, list, status, sdate, udate) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (contact, list) DO UPDATE SET status = excluded.status, "
                   "udate = excluded.udate", (contact_id, list_id, status, now, now))
        self._touch(db, contact_id, now)

    @staticmethod
    def _insert_tag(db: sqlite3.Connection, name: str, tag_type: str, description: str) -> int:
        (tag_id,) = db.execute("INSERT INTO activecampaign_tag (tag, tag_key, tag_type, description, cdate) "
                               "VALUES (?, ?, ?, ?, ?) RETURNING id",
                               (name, name.lower(), tag_type, description, int(time.time()))).fetchone()
        return tag_id

    def _tag_id(self, db: sqlite3.Connection, name: str) -> int:
        """Return the id of the tag of this name (any letter case), creating it as a contact tag."""
        found = db.execute("SELECT id FROM activecampaign_tag WHERE tag_key = ?", (name.lower(),)).fetchone()
        return found[0] if found else self._insert_tag(db, name, "contact", "")

    # Helpers: replies.

    def _local(self, seconds: int) -> str:
        """Format epoch seconds as AC does: local time with the account's offset."""
        return datetime.fromtimestamp(seconds, self.zone).isoformat()

    def _contact_json(self, row: tuple, request: Request) -> dict[str, Any]:
        contact_id, email, first_name, last_name, phone, cdate, udate = row
        base = f"{request.host_url}{self.prefix.lstrip('/')}/contacts/{contact_id}"
        utc = {name: datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")
               for name, moment in (("created", cdate), ("updated", udate))}
        _, _, domain = email.rpartition("@")
        return {
            "cdate": self._local(cdate), "email": email, "phone": phone, "firstName": first_name,
            "lastName": last_name, "orgid": "0", "orgname": "", "segmentio_id": "", "bounced_hard": "0",
            "bounced_soft": "0", "bounced_date": None, "ip": "0", "ua": None, "hash": uuid.uuid5(
                uuid.NAMESPACE_URL, f"activecampaign:{contact_id}").hex, "socialdata_lastcheck": None,
            "email_local": "", "email_domain": domain, "sentcnt": "0", "rating_tstamp": None, "gravatar": "0",
            "deleted": "0", "anonymized": "0", "adate": None, "udate": self._local(udate), "edate": None,
            "deleted_at": None, "created_utc_timestamp": utc["created"], "updated_utc_timestamp": utc["updated"],
            "created_timestamp": utc["created"], "updated_timestamp": utc["updated"],
            "links": {name: f"{base}/{name}" for name in ("contactLists", "contactTags", "fieldValues")},
            "id": str(contact_id), "organization": None,
        }

    def _contact_reply(self, db: sqlite3.Connection, request: Request, contact_id: int, status: int) -> Response:
        row = self._contact_row(db, str(contact_id))
        return json_response({"fieldValues": self._field_values(db, contact_id),
                              "contact": self._contact_json(row, request)}, status)

    def _memberships(self, db: sqlite3.Connection, contact_id: int) -> list[dict[str, Any]]:
        return [{"contact": str(contact_id), "list": str(list_id), "status": str(status), "sdate": self._local(sdate),
                 "udate": self._local(udate), "id": str(membership_id)}
                for membership_id, list_id, status, sdate, udate in db.execute(
                    "SELECT id, list, status, sdate, udate FROM activecampaign_contact_list WHERE contact = ? "
                    "ORDER BY list", (contact_id,))]

    def _contact_tags(self, db: sqlite3.Connection, contact_id: int) -> list[dict[str, Any]]:
        return [{"contact": str(contact_id), "tag": str(tag_id), "cdate": self._local(cdate),
                 "id": str(contact_tag_id)}
                for contact_tag_id, tag_id, cdate in db.execute(
                    "SELECT id, tag, cdate FROM activecampaign_contact_tag WHERE contact = ? ORDER BY id",
                    (contact_id,))]

    def _field_values(self, db: sqlite3.Connection, contact_id: int) -> list[dict[str, Any]]:
        return [{"contact": str(contact_id), "field": str(field_id), "value": value, "cdate": self._local(cdate),
                 "udate": self._local(udate), "id": str(value_id), "owner": str(contact_id)}
                for value_id, field_id, value, cdate, udate in db.execute(
                    "SELECT id, field, value, cdate, udate FROM activecampaign_field_value WHERE contact = ? "
                    "ORDER BY field", (contact_id,))]

    def _sideload(self, db: sqlite3.Connection, name: str, contact_id: int) -> list[dict[str, Any]]:
        """Return one contact's items of a side-load (`SIDELOADS`)."""
        if name == "contactLists":
            return self._memberships(db, contact_id)
        if name == "contactTags":
            return self._contact_tags(db, contact_id)
        return self._field_values(db, contact_id)

    def _tag_json(self, row: tuple) -> dict[str, Any]:
        tag_id, name, tag_type, description, cdate, count = row
        return {"tagType": tag_type, "tag": name, "description": description, "cdate": self._local(cdate),
                "subscriber_count": str(count), "id": str(tag_id)}

    def _field_rel_json(self, row: tuple) -> dict[str, Any]:
        rel_id, field_id, relid, cdate = row
        return {"field": str(field_id), "relid": str(relid), "dispstyle": "", "cdate": self._local(cdate),
                "links": [], "id": str(rel_id)}

    def _field_json(self, row: tuple, relations: list[str]) -> dict[str, Any]:
        field_id, title, kind, perstag, descript, defval, ordernum, cdate, udate = row
        return {"title": title, "descript": descript, "type": kind, "isrequired": "0", "perstag": perstag,
                "defval": defval, "show_in_list": "0", "rows": "0", "cols": "0", "visible": "1", "service": "",
                "ordernum": str(ordernum), "cdate": self._local(cdate), "udate": self._local(udate),
                "options": [], "relations": relations, "id": str(field_id)}


def _contains(text: str | None, part: str) -> bool:
    """Return whether `part` is in `text`, ignoring letter case (what `search=` matches)."""
    return text is not None and part.casefold() in text.casefold()


def _reasons(error: ActiveCampaignError) -> list[str]:
    """Return the human reasons of an AC error body, whichever its shape."""
    if "errors" in error.body:
        return [item["title"] for item in error.body["errors"]]
    return [error.body.get("message", "refused")]
