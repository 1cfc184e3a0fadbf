"""The emulated Mailchimp Marketing API v3, served under `/mailchimp/3.0`.

It stands for `https://<dc>.api.mailchimp.com/3.0`. No path here contains the word
"server": the official SDK replaces it in every URL. One audience exists from the start,
with the id `LIST_ID` below; audiences cannot be created.

Behaviour follows Mailchimp's public documentation, and where that is silent the
emulator is strict:
- Members are keyed by the MD5 of the lowercased email (a path may also name the
  email itself). Addresses are trimmed and must be plain ASCII; malformed ones are
  refused with "Invalid Resource". The reserved example domains are accepted (the real
  service calls them fake) so that tests can use them.
- `last_changed` (ISO 8601, seconds, `+00:00`) moves forward on every change of a
  member and never repeats for that member; a write that changes nothing keeps it.
  `since_last_changed` and `before_last_changed` are exclusive bounds.
- Unknown merge tags, text over 255 characters, NUL characters, and values a merge
  field's type refuses (phone, birthday `MM/DD`, date, number, zip, address, url,
  dropdown choices) are "Invalid Resource" errors.
- Merge fields can be added, changed (`PATCH`: name, tag, options, form settings; never
  the type) and deleted (`DELETE`, 204, with every member's value in the field).
  Text fields report `options.size` (255 unless given), the signup form's field
  length; any text value is still limited to 255 characters.
- Archived members (`DELETE`) read back with status `archived` and are listed; writing
  them again brings them back. Permanently deleted ones are gone, and their address is
  refused from then on ("Forgotten Email Not Subscribed").
- Batch subscribe (`POST /lists/{list_id}`): at most 500 members; every member gets its
  own outcome in a 200 reply. Every member needs a `status` (one of the written
  statuses); a missing or unknown one refuses the whole call with "Invalid Resource"
  naming `members.item:N.status`, as Mailchimp does for an empty status. The batch
  member schema has no `status_if_new` (only the single-member `PUT` has it): sources
  disagree on whether Mailchimp ignores it there, so the emulator refuses it the same
  way, and no client can come to rely on it. Without `update_existing` an existing
  member is an `ERROR_CONTACT_EXISTS` error and is left untouched; with it, the
  member's `status` is applied to existing members too, re-subscribing those who opted
  out, as Mailchimp documents ("update_existing: Whether this batch operation will
  change existing members' subscription status"), except where the member is in a
  compliance state (below): that member gets its own error. With `sync_tags` a member's
  `tags` replace its tags, otherwise they are added.
- Compliance state: a member who unsubscribed or was cleaned cannot be set back to
  `subscribed` by `PUT`, `PATCH` or a batch (400 "Member In Compliance State": the
  address "is in a compliance state due to unsubscribe, bounce, or compliance review
  and cannot be subscribed", as Mailchimp answers). An unsubscribed member may be set
  to `pending`, which in Mailchimp emails the person a confirmation link; a cleaned one
  may not (strict: Mailchimp's documentation does not say). Sources disagree on what a
  batch with `update_existing` does there (refuse, or ignore the status): the emulator
  refuses, member by member. A control endpoint stands for the person confirming.
- `timestamp_opt` is set when a member becomes subscribed (unless the request gives
  one). `contact_id` and `unique_email_id` stay when the address changes; `id` (the
  hash of the address) changes with it.
- Batch operations (`POST /batches`, `{operations: [{method, path, params?, body,
  operation_id}]}`, `body` a string of JSON): only the member routes
  (`/lists/{list_id}/members...`) are taken, each operation carried out by that
  route's own handler, as if it had come alone. The emulator is strict where Mailchimp
  does not say: every operation needs an `operation_id`, unique in the batch, and a
  `body` string for POST, PUT and PATCH; at most 1,000 operations (Mailchimp documents no
  maximum: unconfirmed); anything else refuses the whole batch with "Invalid Resource"
  naming `operations.item:N.<field>`, before any operation runs. The operations run
  when the batch is submitted; the reply says `pending`, and `GET /batches/{batch_id}`
  says `started` until the batch delay (an option, and a control action) is over, then
  `finished` with `finished_operations`, `errored_operations` (replies of 400 and above)
  and `response_body_url`. That URL stands for an S3 presigned URL: signed, valid 10
  minutes (unconfirmed), fetched without the API key (one sent with it is refused, as S3
  refuses a second credential), counted in the stats but not in the connection limit.
  It serves a gzipped tar of JSON files, each a list of `{status_code, operation_id,
  response}`, `response` the operation's reply body as a string (a problem JSON for an
  error). `GET /batches` lists them, newest first.
- At most 10 requests per API key may be in flight at once; more get a 429.

OAuth (stands for https://login.mailchimp.com/oauth2/...): `GET|POST
/mailchimp-login/oauth2/authorize` is the approval screen (`sandbox.oauth`); `POST
/mailchimp-login/oauth2/token` answers `{access_token, expires_in: 0, scope: null}` (the
token never expires; there is no refresh token); `GET /mailchimp-login/oauth2/metadata`
with `Authorization: OAuth <token>` answers `{dc, api_endpoint, login_url, accountname}`.

Control actions (under `/_sandbox/mailchimp/`):
POST confirm   `{"email": ...}`: the person clicks the confirmation link of a pending member,
               who becomes subscribed with a new `timestamp_opt`; 400 when none is pending.
GET  members   `{"members": [{id, email_address, status, merge_fields, tags (names),
               last_changed, archived, contact_id, ...}], "forgotten": [subscriber hashes]}`
POST members   `{"email_address": ..., "status": "subscribed", "merge_fields": {}}`: the person
               signs up on a Mailchimp form, which a permanently deleted address may. Replies
               the member as the dump shows it; 400 for a malformed address, one already a
               member, or refused merge fields.
POST batch-delay `{"milliseconds": N}`: batches submitted from then on read as started for N ms
               before they are finished (0 at start, unless the option says otherwise; a
               reset restores it).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import random
import re
import secrets
import sqlite3
import tarfile
import time
import uuid
from base64 import b64decode
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from .emails import email_problem
from .emails import subscriber_hash as hash_email
from .errors import ProviderError, gateway_page, json_response
from .faults import Fault
from .limits import ConcurrencyLimit
from .provider import (
    ControlAction,
    ControlError,
    EmulatedAPI,
    Option,
    Route,
    not_negative,
    parse_json,
    refuse_unknown_keys,
)
from .seed import YEAR_MS, Person
from .store import Store

if TYPE_CHECKING:
    from .oauth import OAuthAuthority

logger = logging.getLogger("sandbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS mailchimp_member (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id TEXT NOT NULL,
    id TEXT NOT NULL,
    email_address TEXT NOT NULL,
    unique_email_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    status TEXT NOT NULL,
    email_type TEXT NOT NULL DEFAULT 'html',
    merge_fields TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    language TEXT NOT NULL DEFAULT '',
    vip INTEGER NOT NULL DEFAULT 0,
    ip_signup TEXT NOT NULL DEFAULT '',
    timestamp_signup TEXT NOT NULL DEFAULT '',
    ip_opt TEXT NOT NULL DEFAULT '',
    timestamp_opt TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'API - Generic',
    last_changed INTEGER NOT NULL,
    UNIQUE (list_id, id)
);
CREATE INDEX IF NOT EXISTS mailchimp_member_changed ON mailchimp_member (list_id, last_changed, seq);
-- The list's default order (no sort_field): without it SQLite sorts the whole list per page.
CREATE INDEX IF NOT EXISTS mailchimp_member_list ON mailchimp_member (list_id, seq);
CREATE INDEX IF NOT EXISTS mailchimp_member_status ON mailchimp_member (list_id, status, seq);

CREATE TABLE IF NOT EXISTS mailchimp_forgotten (
    list_id TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (list_id, id)
);

CREATE TABLE IF NOT EXISTS mailchimp_merge_field (
    list_id TEXT NOT NULL,
    merge_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    required INTEGER NOT NULL DEFAULT 0,
    default_value TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 1,
    display_order INTEGER NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    help_text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (list_id, merge_id),
    UNIQUE (list_id, tag)
);

CREATE TABLE IF NOT EXISTS mailchimp_tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (list_id, name)
);

CREATE TABLE IF NOT EXISTS mailchimp_batch (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    submitted_ms INTEGER NOT NULL,
    delay_ms INTEGER NOT NULL,
    total INTEGER NOT NULL,
    errored INTEGER NOT NULL,
    results TEXT NOT NULL
);
"""

LIST_ID = "a1b2c3d4e5"
LIST_NAME = "Syncapp Sandbox Audience"
LIST_CREATED = "2020-01-06T09:00:00+00:00"
MAX_CONNECTIONS = 10
MAX_BATCH = 500
MAX_PAGE = 1000
MAX_TEXT = 255
MAX_TAG_NAME = 100
# Operations one `POST /batches` takes. Mailchimp documents no maximum (unconfirmed): the
# emulator refuses more than twice a batch subscribe's members.
MAX_BATCH_OPERATIONS = 1000
BATCH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BATCH_OPERATION_KEYS = frozenset({"method", "path", "params", "body", "operation_id"})
# The routes a batch operation may name: the member routes, and no other.
BATCH_ROUTES = "/lists/{list_id}/members"
# Results per JSON file of a batch's archive (how Mailchimp splits them is unconfirmed).
RESULTS_PER_FILE = 100
# How long a results URL works, like the S3 presigned URL it stands for (unconfirmed).
RESULTS_URL_SECONDS = 600
WRITABLE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
READABLE_STATUSES = (*WRITABLE_STATUSES, "archived")
MERGE_FIELD_TYPES = ("text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown",
                     "birthday", "zip")
DEFAULT_MERGE_FIELDS = (
    # (tag, name, type, options)
    ("FNAME", "First Name", "text", {"size": 25}),
    ("LNAME", "Last Name", "text", {"size": 25}),
    ("ADDRESS", "Address", "address", {"default_country": 164}),
    ("PHONE", "Phone Number", "phone", {"phone_format": "none"}),
    ("BIRTHDAY", "Birthday", "birthday", {"date_format": "MM/DD"}),
    ("COMPANY", "Company", "text", {"size": 25}),
)
# What a merge field PATCH may change (the type is fixed at creation).
MERGE_FIELD_EDITABLE = frozenset({"tag", "name", "required", "default_value", "public", "display_order", "options",
                                  "help_text"})
# The size Mailchimp gives a text field created without one.
DEFAULT_TEXT_SIZE = 255
ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
MEMBER_COLUMNS = (
    "seq", "id", "email_address", "unique_email_id", "contact_id", "status", "email_type", "merge_fields",
    "tags", "language", "vip", "ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt", "source",
    "last_changed",
)
SELECT_MEMBER = f"SELECT {', '.join(MEMBER_COLUMNS)} FROM mailchimp_member"


def members_page_queries(conditions: list[str], order: str) -> tuple[str, str]:
    """Return the list endpoint's count and page queries (parameters: the conditions', then count and offset).

    Each is served by an index on (list_id, ...) in the order asked for: a page costs its
    offset and its rows, never a sort of the list (tests/sandbox/test_mailchimp_plans.py).
    """
    where = " AND ".join(conditions)
    return (f"SELECT COUNT(*) FROM mailchimp_member WHERE {where}",
            f"{SELECT_MEMBER} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?")
SELECT_BATCH = "SELECT id, submitted_ms, delay_ms, total, errored, results FROM mailchimp_batch"
SORT_FIELDS = {"last_changed": "last_changed", "timestamp_opt": "timestamp_opt",
               "timestamp_signup": "timestamp_signup"}
_PHONE = re.compile(r"^\+?[\d\s().\-/]+(\s*(ext\.?|x)\s*\d+)?$", re.IGNORECASE)
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_TAG = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")
MAILCHIMP_ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
# A Mailchimp API key ends in "-<datacenter>"; clients take the datacenter from it.
_API_KEY = re.compile(r".+-[a-z]+\d+")
MAILCHIMP_ACCOUNT_NAME = "Sandbox Audience Co"
SEED_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
SEED_STATUS_WEIGHTS = (80, 8, 3, 3, 2, 4)
SEED_TAG_NAMES = ("Newsletter", "VIP", "Webinar 2024", "Kunden", "Clients fidèles", "顾客")


class MailchimpError(ProviderError):
    """An error reply in Mailchimp's `application/problem+json` shape."""

    def __init__(self, status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": MAILCHIMP_ERROR_DOCS,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": str(uuid.uuid4()),
        }
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status, content_type="application/problem+json")


def mailchimp_invalid(detail: str, errors: list[dict[str, str]] | None = None) -> MailchimpError:
    """Return Mailchimp's 400 "Invalid Resource" error."""
    return MailchimpError(400, "Invalid Resource", detail, errors=errors)


def mailchimp_field_errors(errors: list[dict[str, str]]) -> MailchimpError:
    """Return the "Invalid Resource" error that lists field-level problems."""
    return mailchimp_invalid(
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        errors,
    )


def iso_seconds(epoch_seconds: int) -> str:
    """Format a time as Mailchimp does: `2024-05-01T12:30:00+00:00`."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat(timespec="seconds")


def parse_iso(value: str, name: str) -> int:
    """Read an ISO 8601 query value as epoch seconds; raise a 400 naming `name` otherwise."""
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise mailchimp_invalid(f"The value {value!r} for {name} is not a valid ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def project(document: Any, fields: list[list[str]] | None, exclude: list[list[str]] | None) -> Any:
    """Apply Mailchimp's `fields` / `exclude_fields` (dotted paths) to a reply."""
    if fields:
        document = _keep(document, fields)
    if exclude:
        document = _drop(document, exclude)
    return document


def _keep(document: Any, paths: list[list[str]]) -> Any:
    if isinstance(document, list):
        return [_keep(item, paths) for item in document]
    if not isinstance(document, dict):
        return document
    kept = {}
    for key, value in document.items():
        tails = [path[1:] for path in paths if path[0] == key]
        if not tails:
            continue
        kept[key] = value if any(not tail for tail in tails) else _keep(value, tails)
    return kept


def _drop(document: Any, paths: list[list[str]]) -> Any:
    if isinstance(document, list):
        return [_drop(item, paths) for item in document]
    if not isinstance(document, dict):
        return document
    result = {}
    for key, value in document.items():
        tails = [path[1:] for path in paths if path[0] == key]
        if any(not tail for tail in tails):
            continue
        result[key] = _drop(value, tails) if tails else value
    return result


def _field_paths(raw: str | None) -> list[list[str]] | None:
    if not raw:
        return None
    return [part.strip().split(".") for part in raw.split(",") if part.strip()]


@dataclass
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str
    required: bool = False
    default_value: str = ""
    public: bool = True
    display_order: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    help_text: str = ""

    def to_json(self, list_id: str) -> dict[str, Any]:
        return {
            "merge_id": self.merge_id, "tag": self.tag, "name": self.name, "type": self.type,
            "required": self.required, "default_value": self.default_value, "public": self.public,
            "display_order": self.display_order, "options": self.options, "help_text": self.help_text,
            "list_id": list_id,
        }

    def problem(self, value: Any) -> str | None:
        """Return why `value` does not fit this field, or None."""
        if self.type == "address":
            if not isinstance(value, dict):
                return "An address must be an object with addr1, city, state and zip"
            unknown = set(value) - set(ADDRESS_PARTS)
            if unknown:
                return f"Unknown address parts: {', '.join(sorted(unknown))}"
            if any(not isinstance(value.get(part, ""), str) for part in ADDRESS_PARTS):
                return "Address parts must be strings"
            if any(not value.get(part, "").strip() for part in ADDRESS_REQUIRED):
                return "Please enter a complete address: addr1, city, state and zip are required"
            if any("\x00" in part or len(part) > MAX_TEXT for part in value.values()):
                return f"Address parts must be at most {MAX_TEXT} characters, without NUL characters"
            return None
        if not isinstance(value, str):
            return "Value must be a string"
        if "\x00" in value:
            return "Value must not contain NUL characters"
        if len(value) > MAX_TEXT:
            return f"Value must be at most {MAX_TEXT} characters"
        if self.type == "phone":
            if not _PHONE.match(value) or sum(char.isdigit() for char in value) < 6:
                return "Please enter a valid phone number"
        elif self.type == "birthday":
            if not _valid_date(value, "%m/%d", leap_year=True):
                return "Please enter a valid birthday (MM/DD)"
        elif self.type == "date":
            if not (_valid_date(value, "%Y-%m-%d") or _valid_date(value, "%m/%d/%Y")):
                return "Please enter a valid date"
        elif self.type == "number":
            try:
                float(value)
            except ValueError:
                return "Please enter a number"
        elif self.type == "zip":
            if not _ZIP.match(value):
                return "Please enter a valid US zip code"
        elif self.type in ("url", "imageurl") and not re.match(r"^https?://\S+$", value):
            return "Please enter a valid URL"
        elif self.type in ("dropdown", "radio") and value not in self.options.get("choices", []):
            return "Value must be one of the field's choices"
        return None


def _valid_date(value: str, pattern: str, *, leap_year: bool = False) -> bool:
    try:
        # A birthday has no year: read it in a leap year so 02/29 is a valid day.
        datetime.strptime(f"{value}/2000" if leap_year else value, f"{pattern}/%Y" if leap_year else pattern)
    except ValueError:
        return False
    return True


@dataclass
class MemberInput:
    """The member fields a request asks to write, validated; None means "not given"."""

    email: str | None = None
    status: str | None = None
    status_if_new: str | None = None
    merge_fields: dict[str, Any] | None = None
    tags: list[str] | None = None
    email_type: str | None = None
    language: str | None = None
    vip: bool | None = None
    ip_signup: str | None = None
    timestamp_signup: str | None = None
    ip_opt: str | None = None
    timestamp_opt: str | None = None


class Member:
    """One stored member, decoded."""

    def __init__(self, row: tuple | None = None):
        if row is None:
            return
        values = dict(zip(MEMBER_COLUMNS, row, strict=True))
        self.seq: int | None = values["seq"]
        self.id: str = values["id"]
        self.email_address: str = values["email_address"]
        self.unique_email_id: str = values["unique_email_id"]
        self.contact_id: str = values["contact_id"]
        self.status: str = values["status"]
        self.email_type: str = values["email_type"]
        self.merge_fields: dict[str, Any] = json.loads(values["merge_fields"])
        self.tags: list[dict[str, Any]] = json.loads(values["tags"])
        self.language: str = values["language"]
        self.vip: bool = bool(values["vip"])
        self.ip_signup: str = values["ip_signup"]
        self.timestamp_signup: str = values["timestamp_signup"]
        self.ip_opt: str = values["ip_opt"]
        self.timestamp_opt: str = values["timestamp_opt"]
        self.source: str = values["source"]
        self.last_changed: int = values["last_changed"]

    @classmethod
    def new(cls, email: str, now: int) -> Member:
        member = cls()
        member.seq = None
        member.id = hash_email(email)
        member.email_address = email
        member.unique_email_id = secrets.token_hex(5)
        member.contact_id = secrets.token_hex(16)
        member.status = ""
        member.email_type = "html"
        member.merge_fields = {}
        member.tags = []
        member.language = ""
        member.vip = False
        member.ip_signup = member.ip_opt = member.timestamp_opt = ""
        member.timestamp_signup = ""
        member.source = "API - Generic"
        member.last_changed = now
        return member

    def state(self) -> tuple:
        """Return the values a change is judged on."""
        return (self.id, self.email_address, self.status, self.email_type,
                json.dumps(self.merge_fields, sort_keys=True), json.dumps([tag["name"] for tag in self.tags]),
                self.language, self.vip, self.ip_signup, self.timestamp_signup, self.ip_opt, self.timestamp_opt)

    def row(self) -> tuple:
        return (self.seq, self.id, self.email_address, self.unique_email_id, self.contact_id, self.status,
                self.email_type, json.dumps(self.merge_fields, ensure_ascii=False),
                json.dumps(self.tags, ensure_ascii=False), self.language, int(self.vip), self.ip_signup,
                self.timestamp_signup, self.ip_opt, self.timestamp_opt, self.source, self.last_changed)

    def to_json(self, list_id: str, merge_fields: list[MergeField], base_url: str) -> dict[str, Any]:
        values = {definition.tag: self.merge_fields.get(definition.tag, "") for definition in merge_fields}
        first, last = str(values.get("FNAME", "")), str(values.get("LNAME", ""))
        href = f"{base_url}lists/{list_id}/members/{self.id}"
        return {
            "id": self.id,
            "email_address": self.email_address,
            "unique_email_id": self.unique_email_id,
            "contact_id": self.contact_id,
            "full_name": f"{first} {last}".strip(),
            "web_id": self.seq,
            "email_type": self.email_type,
            "status": self.status,
            "consents_to_one_to_one_messaging": True,
            "merge_fields": values,
            "interests": {},
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": self.ip_signup,
            "timestamp_signup": self.timestamp_signup,
            "ip_opt": self.ip_opt,
            "timestamp_opt": self.timestamp_opt,
            "member_rating": 2,
            "last_changed": iso_seconds(self.last_changed),
            "language": self.language,
            "vip": self.vip,
            "email_client": "",
            "location": {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "",
                         "timezone": "", "region": ""},
            "source": self.source,
            "tags_count": len(self.tags),
            "tags": [{"id": tag["id"], "name": tag["name"]} for tag in self.tags],
            "list_id": list_id,
            "_links": [{"rel": "self", "href": href, "method": "GET"},
                       {"rel": "upsert", "href": href, "method": "PUT"},
                       {"rel": "delete", "href": href, "method": "DELETE"}],
        }


def _key_problem(key: str) -> str | None:
    if not _API_KEY.fullmatch(key):
        return "a Mailchimp API key ends in -<datacenter>, for example -us1"
    return None


class MailchimpAPI(EmulatedAPI):
    name = "mailchimp"
    label = "Mailchimp"
    prefix = "/mailchimp/3.0"
    options = (
        Option("mailchimp_key", "sandbox-mailchimp-key-us1", "the API key Mailchimp accepts, ending in -<dc>",
               _key_problem),
        Option("mailchimp_max_connections", MAX_CONNECTIONS, "Mailchimp requests in flight per key; 0 turns the "
                                                             "limit off", not_negative),
        Option("mailchimp_batch_delay_ms", 0, "milliseconds a batch operation reads as started before it is "
                                              "finished", not_negative),
    )
    credential = "mailchimp_key"
    schema = SCHEMA
    seed_key = "mailchimp_members"
    control_actions = (
        ControlAction("POST", "confirm", "control_confirm"),
        ControlAction("GET", "members", "control_members"),
        ControlAction("POST", "members", "control_signup"),
        ControlAction("POST", "batch-delay", "control_batch_delay"),
    )
    # Stands for https://login.mailchimp.com/oauth2/...
    oauth_routes = (
        Route("GET", "/mailchimp-login/oauth2/authorize", "oauth_authorize"),
        Route("POST", "/mailchimp-login/oauth2/authorize", "oauth_authorize"),
        Route("POST", "/mailchimp-login/oauth2/token", "oauth_token"),
        Route("GET", "/mailchimp-login/oauth2/metadata", "oauth_metadata"),
    )
    routes = (
        Route("GET", "/ping", "ping"),
        Route("GET", "/lists", "list_lists"),
        Route("GET", "/lists/{list_id}", "get_list"),
        Route("POST", "/lists/{list_id}", "batch_subscribe", write=True),
        Route("GET", "/lists/{list_id}/members", "list_members"),
        Route("POST", "/lists/{list_id}/members", "add_member", write=True),
        Route("GET", "/lists/{list_id}/members/{subscriber_hash}", "get_member"),
        Route("PUT", "/lists/{list_id}/members/{subscriber_hash}", "set_member", write=True),
        Route("PATCH", "/lists/{list_id}/members/{subscriber_hash}", "update_member", write=True),
        Route("DELETE", "/lists/{list_id}/members/{subscriber_hash}", "archive_member", write=True),
        Route("POST", "/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent", "delete_permanent",
              write=True),
        Route("GET", "/lists/{list_id}/members/{subscriber_hash}/tags", "list_member_tags"),
        Route("POST", "/lists/{list_id}/members/{subscriber_hash}/tags", "update_member_tags", write=True),
        Route("GET", "/lists/{list_id}/merge-fields", "list_merge_fields"),
        Route("POST", "/lists/{list_id}/merge-fields", "add_merge_field", write=True),
        Route("GET", "/lists/{list_id}/merge-fields/{merge_id}", "get_merge_field"),
        Route("PATCH", "/lists/{list_id}/merge-fields/{merge_id}", "update_merge_field", write=True),
        Route("DELETE", "/lists/{list_id}/merge-fields/{merge_id}", "delete_merge_field", write=True),
        Route("POST", "/batches", "start_batch", write=True),
        Route("GET", "/batches", "list_batches"),
        Route("GET", "/batches/{batch_id}", "get_batch"),
        # Stands for the S3 presigned URL of a finished batch's results (`response_body_url`).
        Route("GET", "/batch-results/{batch_id}", "batch_results"),
    )

    def __init__(self, store: Store, settings: Mapping[str, Any], oauth: OAuthAuthority):
        super().__init__(store, settings, oauth)
        self.api_key = settings["mailchimp_key"]
        self.dc = self.api_key.rsplit("-", 1)[1]
        self.connections = ConcurrencyLimit(settings["mailchimp_max_connections"])
        self.limiters = {"mailchimp_max_connections": self.connections}
        self.batch_delay_ms = settings["mailchimp_batch_delay_ms"]

    def reset_limits(self) -> None:
        super().reset_limits()
        self.batch_delay_ms = self.settings["mailchimp_batch_delay_ms"]

    def info(self) -> dict[str, Any]:
        return {"base_path": self.prefix, "list_id": LIST_ID, "dc": self.dc,
                "stands_for": f"https://{self.dc}.api.mailchimp.com/3.0"}

    def install_defaults(self, db: sqlite3.Connection) -> None:
        """Give the audience its standard merge fields when it has none (first start, after a reset)."""
        (count,) = db.execute("SELECT COUNT(*) FROM mailchimp_merge_field WHERE list_id = ?", (LIST_ID,)).fetchone()
        if count:
            return
        db.executemany(
            "INSERT INTO mailchimp_merge_field (list_id, merge_id, tag, name, type, display_order, options) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(LIST_ID, index, tag, name, kind, index, json.dumps(options))
             for index, (tag, name, kind, options) in enumerate(DEFAULT_MERGE_FIELDS, start=1)],
        )

    # Gateway: credentials, limits, error shapes.

    def authenticate(self, request: Request) -> str:
        if request.path.startswith(f"{self.prefix}/batch-results/"):
            # A presigned URL is its own credential: `batch_results` checks it.
            return self.api_key
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not header:
            raise MailchimpError(401, "API Key Missing", "Your request did not include an API key.")
        key = ""
        if scheme.lower() == "basic":
            try:
                key = b64decode(credential.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                key = ""
        elif scheme.lower() in ("bearer", "apikey"):
            key = credential.strip()
        if not key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise MailchimpError(401, "API Key Invalid",
                                 "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        return self.api_key

    @contextmanager
    def admitted(self, account: str, route: Route | None) -> Iterator[dict[str, str]]:
        if route is not None and route.handler == "batch_results":
            # Served by S3, not by the API: Mailchimp's connection limit does not apply.
            yield {}
            return
        if not self.connections.acquire(account):
            raise MailchimpError(429, "Too Many Requests",
                                 f"You have exceeded the limit of {self.connections.limit} simultaneous connections.")
        try:
            yield {}
        finally:
            self.connections.release(account)

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind == "expired_token":
            return MailchimpError(401, "API Key Invalid",
                                  "Your API key may be invalid, or you've attempted to access the wrong "
                                  "datacenter.").response()
        if fault.status == 429:
            response = MailchimpError(429, "Too Many Requests",
                                      "You have exceeded the limit of 10 simultaneous connections.").response()
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
            return response
        if fault.status == 500:
            return self.internal_error()
        return gateway_page(fault.status)

    def routing_error(self, status: int) -> Response:
        if status == 405:
            return MailchimpError(405, "Method Not Allowed",
                                  "The requested method and resource are not compatible.").response()
        return self._not_found().response()

    def internal_error(self) -> Response:
        return MailchimpError(500, "Internal Server Error",
                              "An unexpected internal error has occurred. Please contact Support for more "
                              "information.").response()

    def json_body(self, request: Request) -> dict[str, Any]:
        try:
            body = parse_json(request)
        except ValueError:
            raise MailchimpError(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.") from None
        if not isinstance(body, dict):
            raise mailchimp_invalid("The request body must be a JSON object.")
        return body

    # Lists.

    def ping(self, request: Request) -> Response:
        return json_response({"health_status": "Everything's Chimpy!"})

    def list_lists(self, request: Request) -> Response:
        with self.store.read() as db:
            audience = self._list_json(db, request)
        body = {"lists": [audience], "total_items": 1,
                "constraints": {"may_create": False, "max_instances": 1, "current_total_instances": 1},
                "_links": [{"rel": "self", "href": f"{self._base(request)}lists", "method": "GET"}]}
        return self._reply(request, body)

    def get_list(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        with self.store.read() as db:
            return self._reply(request, self._list_json(db, request))

    # Members: reads.

    def list_members(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        args = request.args
        count = self._int_arg(args.get("count"), "count", default=10, maximum=MAX_PAGE)
        offset = self._int_arg(args.get("offset"), "offset", default=0)
        conditions, params = ["list_id = ?"], [list_id]
        if args.get("status"):
            if args["status"] not in READABLE_STATUSES:
                raise mailchimp_invalid(f"status must be one of: {', '.join(READABLE_STATUSES)}")
            conditions.append("status = ?")
            params.append(args["status"])
        if args.get("since_last_changed"):
            conditions.append("last_changed > ?")
            params.append(parse_iso(args["since_last_changed"], "since_last_changed"))
        if args.get("before_last_changed"):
            conditions.append("last_changed < ?")
            params.append(parse_iso(args["before_last_changed"], "before_last_changed"))
        if args.get("email_type"):
            conditions.append("email_type = ?")
            params.append(args["email_type"])
        if args.get("unique_email_id"):
            conditions.append("unique_email_id = ?")
            params.append(args["unique_email_id"])
        if (args.get("vip_only") or "").lower() == "true":
            conditions.append("vip = 1")
        order = "seq"
        if args.get("sort_field"):
            if args["sort_field"] not in SORT_FIELDS:
                raise mailchimp_invalid(f"sort_field must be one of: {', '.join(SORT_FIELDS)}")
            direction = (args.get("sort_dir") or "ASC").upper()
            if direction not in ("ASC", "DESC"):
                raise mailchimp_invalid("sort_dir must be ASC or DESC")
            order = f"{SORT_FIELDS[args['sort_field']]} {direction}, seq {direction}"
        count_sql, page_sql = members_page_queries(conditions, order)
        with self.store.read() as db:
            (total,) = db.execute(count_sql, params).fetchone()
            rows = db.execute(page_sql, [*params, count, offset]).fetchall()
            merge_fields = self._merge_fields(db, list_id)
        base = self._base(request)
        body = {
            "members": [Member(row).to_json(list_id, merge_fields, base) for row in rows],
            "list_id": list_id,
            "total_items": total,
            "_links": [{"rel": "self", "href": f"{base}lists/{list_id}/members", "method": "GET"},
                       {"rel": "create", "href": f"{base}lists/{list_id}/members", "method": "POST"}],
        }
        return self._reply(request, body)

    def get_member(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        with self.store.read() as db:
            member = self._member(db, list_id, self._hash(subscriber_hash))
            if member is None:
                raise self._not_found()
            return self._reply(request, member.to_json(list_id, self._merge_fields(db, list_id), self._base(request)))

    def list_member_tags(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        with self.store.read() as db:
            member = self._member(db, list_id, self._hash(subscriber_hash))
        if member is None:
            raise self._not_found()
        tags = [{"id": tag["id"], "name": tag["name"], "date_added": tag.get("date_added", "")} for tag in member.tags]
        return self._reply(request, {"tags": tags, "total_items": len(tags), "_links": []})

    def list_merge_fields(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        count = self._int_arg(request.args.get("count"), "count", default=10, maximum=MAX_PAGE)
        offset = self._int_arg(request.args.get("offset"), "offset", default=0)
        with self.store.read() as db:
            merge_fields = self._merge_fields(db, list_id)
        if request.args.get("type"):
            merge_fields = [f for f in merge_fields if f.type == request.args["type"]]
        if request.args.get("required"):
            wanted = request.args["required"].lower() == "true"
            merge_fields = [f for f in merge_fields if f.required == wanted]
        body = {"merge_fields": [f.to_json(list_id) for f in merge_fields[offset:offset + count]],
                "list_id": list_id, "total_items": len(merge_fields), "_links": []}
        return self._reply(request, body)

    def get_merge_field(self, request: Request, list_id: str, merge_id: str) -> Response:
        self._check_list(list_id)
        with self.store.read() as db:
            merge_fields = self._merge_fields(db, list_id)
        for merge_field in merge_fields:
            if str(merge_field.merge_id) == merge_id:
                return self._reply(request, merge_field.to_json(list_id))
        raise self._not_found()

    # Members: writes.

    def add_member(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        member_input = self._member_input(body, allow_tags=True, allow_status_if_new=False)
        if member_input.email is None:
            raise mailchimp_field_errors([{"field": "email_address", "message": "This value should not be blank."}])
        if member_input.status is None:
            raise mailchimp_field_errors([{"field": "status", "message": "This value should not be blank."}])
        skip_merge_validation = self._flag(request.args.get("skip_merge_validation"))
        with self.store.write() as db:
            member, _, _ = self._write_members(db, list_id, [(hash_email(member_input.email), member_input)],
                                               mode="create", skip_merge_validation=skip_merge_validation)[0]
            return self._member_reply(db, request, list_id, member)

    def set_member(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        member_input = self._member_input(body, allow_tags=False)
        member_hash = self._hash(subscriber_hash)
        if member_input.email is not None and hash_email(member_input.email) != member_hash:
            raise mailchimp_invalid("The email address does not match the subscriber hash in the URL.")
        skip_merge_validation = self._flag(request.args.get("skip_merge_validation"))
        with self.store.write() as db:
            member, _, _ = self._write_members(db, list_id, [(member_hash, member_input)], mode="put",
                                               skip_merge_validation=skip_merge_validation)[0]
            return self._member_reply(db, request, list_id, member)

    def update_member(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        member_input = self._member_input(body, allow_tags=False)
        skip_merge_validation = self._flag(request.args.get("skip_merge_validation"))
        with self.store.write() as db:
            member, _, _ = self._write_members(db, list_id, [(self._hash(subscriber_hash), member_input)],
                                               mode="patch", skip_merge_validation=skip_merge_validation)[0]
            return self._member_reply(db, request, list_id, member)

    def archive_member(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        with self.store.write() as db:
            member = self._member(db, list_id, self._hash(subscriber_hash))
            if member is None:
                raise self._not_found()
            if member.status != "archived":
                member.status = "archived"
                self._save(db, list_id, [], changed=[member])
        return Response(status=204)

    def delete_permanent(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        member_hash = self._hash(subscriber_hash)
        with self.store.write() as db:
            if self._member(db, list_id, member_hash) is None:
                raise self._not_found()
            db.execute("DELETE FROM mailchimp_member WHERE list_id = ? AND id = ?", (list_id, member_hash))
            db.execute("INSERT OR IGNORE INTO mailchimp_forgotten (list_id, id) VALUES (?, ?)", (list_id, member_hash))
        return Response(status=204)

    def update_member_tags(self, request: Request, list_id: str, subscriber_hash: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        tags = body.get("tags")
        if not isinstance(tags, list) or not all(isinstance(tag, dict) for tag in tags):
            raise mailchimp_field_errors([{"field": "tags", "message": "Tags must be a list of {name, status}."}])
        changes = []
        for tag in tags:
            name, status = tag.get("name"), tag.get("status")
            problem = self._tag_problem(name)
            if problem:
                raise mailchimp_field_errors([{"field": "tags.name", "message": problem}])
            if status not in ("active", "inactive"):
                raise mailchimp_field_errors([{"field": "tags.status",
                                               "message": "Status must be active or inactive."}])
            changes.append((name.strip(), status == "active"))
        with self.store.write() as db:
            member = self._member(db, list_id, self._hash(subscriber_hash))
            if member is None:
                raise self._not_found()
            before = member.state()
            for name, active in changes:
                self._set_tag(db, list_id, member, name, active, self._tag_cache(db, list_id))
            if member.state() != before:
                self._save(db, list_id, [], changed=[member])
        return Response(status=204)

    def batch_subscribe(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        members = body.get("members")
        if not isinstance(members, list):
            raise mailchimp_field_errors([{"field": "members", "message": "This value should be of type array."}])
        if len(members) > MAX_BATCH:
            raise mailchimp_field_errors([{"field": "members",
                                           "message": f"This collection should contain {MAX_BATCH} elements or less."}])
        update_existing = body.get("update_existing", False)
        sync_tags = body.get("sync_tags", False)
        if not isinstance(update_existing, bool) or not isinstance(sync_tags, bool):
            raise mailchimp_invalid("update_existing and sync_tags must be true or false.")
        self._check_batch_statuses(members)
        skip_merge_validation = self._flag(request.args.get("skip_merge_validation"))
        skip_duplicate_check = self._flag(request.args.get("skip_duplicate_check"))
        errors, planned, seen = [], [], set()
        for item in members:
            email = item.get("email_address") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict):
                    raise mailchimp_invalid("Every member must be an object.")
                member_input = self._member_input(item, allow_tags=True, allow_status_if_new=False)
                if member_input.email is None:
                    raise mailchimp_field_errors([{"field": "email_address",
                                                   "message": "This value should not be blank."}])
                member_hash = hash_email(member_input.email)
                if member_hash in seen:
                    if skip_duplicate_check:
                        continue
                    raise mailchimp_invalid(f"{member_input.email} was included more than once in this request.")
                seen.add(member_hash)
                planned.append((member_hash, member_input))
            except MailchimpError as error:
                errors.append(self._batch_error(email, error))
        base = self._base(request)
        with self.store.write() as db:
            outcomes = self._write_members(db, list_id, planned, mode="batch", update_existing=update_existing,
                                           sync_tags=sync_tags, skip_merge_validation=skip_merge_validation)
            merge_fields = self._merge_fields(db, list_id)
        new_members, updated_members = [], []
        for (_, member_input), (member, created, error) in zip(planned, outcomes, strict=True):
            if error is not None:
                errors.append(self._batch_error(member_input.email, error))
            elif created:
                new_members.append(member.to_json(list_id, merge_fields, base))
            else:
                updated_members.append(member.to_json(list_id, merge_fields, base))
        return json_response({
            "new_members": new_members,
            "updated_members": updated_members,
            "errors": errors,
            "total_created": len(new_members),
            "total_updated": len(updated_members),
            "error_count": len(errors),
            "_links": [{"rel": "self", "href": f"{base}lists/{list_id}", "method": "GET"}],
        })

    @staticmethod
    def _check_batch_statuses(members: list[Any]) -> None:
        """Refuse a batch whose members lack a valid `status` or carry `status_if_new`.

        These are schema errors, so the whole call is refused before any member is
        written, with the field path Mailchimp uses (`members.item:0.status`).
        """
        problems = []
        for index, item in enumerate(members):
            if not isinstance(item, dict):
                continue
            if "status_if_new" in item:
                problems.append({"field": f"members.item:{index}.status_if_new",
                                 "message": "status_if_new is not a property of a batch member: send status "
                                            "(with update_existing it applies to existing members too)."})
            if item.get("status") not in WRITABLE_STATUSES:
                problems.append({"field": f"members.item:{index}.status",
                                 "message": "Data presented is not one of the accepted values: "
                                            f"{', '.join(WRITABLE_STATUSES)}."})
        if problems:
            raise mailchimp_field_errors(problems)

    # Batch operations: many member requests in one call, carried out by the single routes.

    def start_batch(self, request: Request) -> Response:
        """Run the operations through the member routes' own handlers; reply the batch, pending."""
        body = self.json_body(request)
        unknown = sorted(set(body) - {"operations"})
        operations = body.get("operations")
        if unknown:
            raise mailchimp_field_errors([{"field": key, "message": "This field is not part of a batch request."}
                                          for key in unknown])
        if not isinstance(operations, list) or not operations:
            raise mailchimp_field_errors([{"field": "operations",
                                           "message": "This value should be a non-empty array of operations."}])
        if len(operations) > MAX_BATCH_OPERATIONS:
            raise mailchimp_field_errors([{"field": "operations", "message":
                                           f"This collection should contain {MAX_BATCH_OPERATIONS} elements or less."}])
        problems: list[dict[str, str]] = []
        planned = [self._batch_operation(index, item, problems) for index, item in enumerate(operations)]
        seen: set[str] = set()
        for index, operation in enumerate(planned):
            if operation is None:
                continue
            if operation.operation_id in seen:
                # Results are matched to operations by this id (strict: Mailchimp does not say).
                problems.append({"field": f"operations.item:{index}.operation_id",
                                 "message": "Every operation_id must be unique within the batch."})
            seen.add(operation.operation_id)
        if problems:
            raise mailchimp_field_errors(problems)
        results = [self._run_operation(request, operation) for operation in planned if operation is not None]
        row = (uuid.uuid4().hex[:10], int(time.time() * 1000), self.batch_delay_ms, len(results),
               sum(1 for result in results if result["status_code"] >= 400), json.dumps(results))
        with self.store.write() as db:
            db.execute("INSERT INTO mailchimp_batch (id, submitted_ms, delay_ms, total, errored, results) "
                       "VALUES (?, ?, ?, ?, ?, ?)", row)
        return json_response(self._batch_json(request, row, polled=False))

    def list_batches(self, request: Request) -> Response:
        count = self._int_arg(request.args.get("count"), "count", default=10, maximum=MAX_PAGE)
        offset = self._int_arg(request.args.get("offset"), "offset", default=0)
        with self.store.read() as db:
            rows = db.execute(f"{SELECT_BATCH} ORDER BY seq DESC LIMIT ? OFFSET ?", (count, offset)).fetchall()
            (total,) = db.execute("SELECT COUNT(*) FROM mailchimp_batch").fetchone()
        body = {"batches": [self._batch_json(request, row, polled=True) for row in rows], "total_items": total,
                "_links": [{"rel": "self", "href": f"{self._base(request)}batches", "method": "GET"}]}
        return self._reply(request, body)

    def get_batch(self, request: Request, batch_id: str) -> Response:
        with self.store.read() as db:
            row = self._batch_row(db, batch_id)
        if row is None:
            raise self._not_found()
        return self._reply(request, self._batch_json(request, row, polled=True))

    def batch_results(self, request: Request, batch_id: str) -> Response:
        """Serve a finished batch's results as S3 serves a presigned object: the URL is the credential."""
        if request.headers.get("Authorization"):
            # S3 refuses a second credential beside the presigned query.
            return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                                     "query parameter, Signature query string parameter or the "
                                                     "Authorization header should be specified")
        expires = request.args.get("Expires", "")
        signature = request.args.get("Signature", "")
        if not hmac.compare_digest(signature.encode(), self._results_signature(batch_id, expires).encode()):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                                                           "the signature you provided.")
        if not expires.isdigit() or int(expires) < time.time():
            return _s3_error(403, "AccessDenied", "Request has expired")
        with self.store.read() as db:
            row = self._batch_row(db, batch_id)
        if row is None or not _finished(row):
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(_results_archive(batch_id, json.loads(row[5])), content_type="application/x-gzip")

    def _batch_operation(self, index: int, item: Any, problems: list[dict[str, str]]) -> BatchOperation | None:
        """Return one operation checked against the member routes; add its problems to `problems`."""
        where = f"operations.item:{index}"
        if not isinstance(item, dict):
            problems.append({"field": where, "message": "Every operation must be an object."})
            return None
        found = len(problems)
        for key in sorted(set(item) - BATCH_OPERATION_KEYS):
            problems.append({"field": f"{where}.{key}", "message": "This field is not part of an operation."})
        method, path, body = item.get("method"), item.get("path"), item.get("body")
        operation_id, params = item.get("operation_id"), item.get("params", {})
        if method not in BATCH_METHODS:
            accepted = ", ".join(BATCH_METHODS)
            problems.append({"field": f"{where}.method",
                             "message": f"Data presented is not one of the accepted values: {accepted}."})
        if not isinstance(path, str) or not path.startswith("/") or "?" in path:
            problems.append({"field": f"{where}.path", "message": "The path must be a relative API path."})
        if method in ("POST", "PUT", "PATCH") and not isinstance(body, str):
            problems.append({"field": f"{where}.body", "message": "The body must be a string containing JSON."})
        elif body is not None and not isinstance(body, str):
            problems.append({"field": f"{where}.body", "message": "The body must be a string containing JSON."})
        if not isinstance(operation_id, str) or not operation_id.strip():
            problems.append({"field": f"{where}.operation_id", "message": "This value should not be blank."})
        if not isinstance(params, dict) or not all(isinstance(value, (str, int, float, bool))
                                                   for value in params.values()):
            problems.append({"field": f"{where}.params", "message": "params must be an object of plain values."})
        if len(problems) > found:
            return None
        route, arguments, status = self.match(str(method), str(path))
        if route is None or not route.template.startswith(BATCH_ROUTES):
            message = (f"{method} is not allowed on {path}." if status == 405
                       else f"{method} {path} is not a member route: a batch here takes {BATCH_ROUTES} routes only.")
            problems.append({"field": f"{where}.path", "message": message})
            return None
        return BatchOperation(route, arguments, str(method), str(path), body or "", params, str(operation_id))

    def _run_operation(self, request: Request, operation: BatchOperation) -> dict[str, Any]:
        """Answer one operation with the route's own handler, as if it had come alone."""
        builder = EnvironBuilder(
            path=self.prefix + operation.path, base_url=request.host_url, method=operation.method,
            data=operation.body.encode("utf-8") if operation.body else None,
            content_type="application/json" if operation.body else None,
            query_string={key: str(value) for key, value in operation.params.items()},
        )
        try:
            single = Request(builder.get_environ())
        finally:
            builder.close()
        try:
            response = self.handle(operation.route, single, operation.arguments)
        except ProviderError as error:
            response = error.response()
        except Exception:
            logger.exception("batch operation %s %s failed", operation.method, operation.path)
            response = self.internal_error()
        return {"status_code": response.status_code, "operation_id": operation.operation_id,
                "response": response.get_data(as_text=True)}

    @staticmethod
    def _batch_row(db: sqlite3.Connection, batch_id: str) -> tuple | None:
        return db.execute(f"{SELECT_BATCH} WHERE id = ?", (batch_id,)).fetchone()

    def _batch_json(self, request: Request, row: tuple, *, polled: bool) -> dict[str, Any]:
        """Return a batch as Mailchimp shows it: pending when submitted, started until its delay is over."""
        batch_id, submitted_ms, _, total, errored, _ = row[:6]
        finished = polled and _finished(row)
        status = "finished" if finished else "started" if polled else "pending"
        url = ""
        if finished:
            expires = str(int(time.time()) + RESULTS_URL_SECONDS)
            url = (f"{self._base(request)}batch-results/{batch_id}?Expires={expires}"
                   f"&Signature={self._results_signature(batch_id, expires)}")
        return {
            "id": batch_id,
            "status": status,
            "total_operations": total,
            "finished_operations": total if finished else 0,
            "errored_operations": errored if finished else 0,
            "submitted_at": iso_seconds(submitted_ms // 1000),
            "completed_at": iso_seconds((submitted_ms + row[2]) // 1000) if finished else "",
            "response_body_url": url,
            "_links": [{"rel": "self", "href": f"{self._base(request)}batches/{batch_id}", "method": "GET"}],
        }

    def _results_signature(self, batch_id: str, expires: str) -> str:
        return hmac.new(self.api_key.encode(), f"{batch_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def add_merge_field(self, request: Request, list_id: str) -> Response:
        self._check_list(list_id)
        body = self.json_body(request)
        name, kind, tag = body.get("name"), body.get("type"), body.get("tag")
        problems = self._merge_field_problems(body)
        if "name" not in body:
            problems.append({"field": "name", "message": "A name of 1 to 100 characters is required."})
        if kind not in MERGE_FIELD_TYPES:
            problems.append({"field": "type", "message": f"Type must be one of: {', '.join(MERGE_FIELD_TYPES)}."})
        if problems:
            raise mailchimp_field_errors(problems)
        options = body.get("options", {})
        display_order = body.get("display_order")
        if kind == "text":
            # Mailchimp reports the text field's size on every text field.
            options = {"size": DEFAULT_TEXT_SIZE, **options}
        with self.store.write() as db:
            existing = self._merge_fields(db, list_id)
            merge_id = max((f.merge_id for f in existing), default=0) + 1
            tag = tag or f"MMERGE{merge_id}"
            if any(f.tag == tag for f in existing):
                raise mailchimp_invalid(f'A Merge Field with the tag "{tag}" already exists for this list.')
            merge_field = MergeField(
                merge_id=merge_id, tag=tag, name=name.strip(), type=kind,
                required=body.get("required", False), default_value=body.get("default_value", ""),
                public=body.get("public", True), display_order=display_order or merge_id,
                options=options, help_text=body.get("help_text", ""),
            )
            db.execute(
                "INSERT INTO mailchimp_merge_field (list_id, merge_id, tag, name, type, required, default_value, "
                "public, display_order, options, help_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (list_id, merge_field.merge_id, merge_field.tag, merge_field.name, merge_field.type,
                 int(merge_field.required), merge_field.default_value, int(merge_field.public),
                 merge_field.display_order, json.dumps(options), merge_field.help_text),
            )
        return json_response(merge_field.to_json(list_id))

    def update_merge_field(self, request: Request, list_id: str, merge_id: str) -> Response:
        """Change a merge field's name, tag, options and form settings; its type cannot change.

        A new tag carries the members' values with it, as renaming a field does in Mailchimp.
        """
        self._check_list(list_id)
        body = self.json_body(request)
        problems = self._merge_field_problems(body)
        if "type" in body:
            problems.append({"field": "type", "message": "The type of a merge field cannot be changed."})
        unknown = sorted(set(body) - MERGE_FIELD_EDITABLE - {"type"})
        if unknown:
            problems.append({"field": unknown[0], "message": f"{unknown[0]} is not a merge field property."})
        if problems:
            raise mailchimp_field_errors(problems)
        with self.store.write() as db:
            merge_field = self._merge_field(db, list_id, merge_id)
            old_tag = merge_field.tag
            new_tag = body.get("tag", old_tag)
            if new_tag != old_tag and any(f.tag == new_tag for f in self._merge_fields(db, list_id)):
                raise mailchimp_invalid(f'A Merge Field with the tag "{new_tag}" already exists for this list.')
            if "options" in body and merge_field.type in ("radio", "dropdown") and not isinstance(
                    body["options"].get("choices", []), list):
                raise mailchimp_field_errors([{"field": "options.choices", "message": "Choices must be a list."}])
            merge_field.tag = new_tag
            if "name" in body:
                merge_field.name = body["name"].strip()
            if "options" in body:
                merge_field.options = {**merge_field.options, **body["options"]}
            for key in ("required", "public", "default_value", "help_text", "display_order"):
                if key in body:
                    setattr(merge_field, key, body[key])
            db.execute(
                "UPDATE mailchimp_merge_field SET tag = ?, name = ?, required = ?, default_value = ?, public = ?, "
                "display_order = ?, options = ?, help_text = ? WHERE list_id = ? AND merge_id = ?",
                (merge_field.tag, merge_field.name, int(merge_field.required), merge_field.default_value,
                 int(merge_field.public), merge_field.display_order, json.dumps(merge_field.options),
                 merge_field.help_text, list_id, merge_field.merge_id),
            )
            if new_tag != old_tag:
                db.execute(
                    "UPDATE mailchimp_member SET merge_fields = json_remove(json_set(merge_fields, ?, "
                    "json_extract(merge_fields, ?)), ?) "
                    "WHERE list_id = ? AND json_extract(merge_fields, ?) IS NOT NULL",
                    (f"$.{new_tag}", f"$.{old_tag}", f"$.{old_tag}", list_id, f"$.{old_tag}"),
                )
        return json_response(merge_field.to_json(list_id))

    def delete_merge_field(self, request: Request, list_id: str, merge_id: str) -> Response:
        """Delete a merge field and every member's value in it (204)."""
        self._check_list(list_id)
        with self.store.write() as db:
            merge_field = self._merge_field(db, list_id, merge_id)
            db.execute("DELETE FROM mailchimp_merge_field WHERE list_id = ? AND merge_id = ?",
                       (list_id, merge_field.merge_id))
            db.execute(
                "UPDATE mailchimp_member SET merge_fields = json_remove(merge_fields, ?) "
                "WHERE list_id = ? AND json_extract(merge_fields, ?) IS NOT NULL",
                (f"$.{merge_field.tag}", list_id, f"$.{merge_field.tag}"),
            )
        return Response(status=204)

    def _merge_field(self, db: sqlite3.Connection, list_id: str, merge_id: str) -> MergeField:
        for merge_field in self._merge_fields(db, list_id):
            if str(merge_field.merge_id) == merge_id:
                return merge_field
        raise self._not_found()

    @staticmethod
    def _merge_field_problems(body: dict[str, Any]) -> list[dict[str, str]]:
        """Return what is wrong with the merge field properties `body` gives (creating or changing)."""
        problems = []
        name, tag = body.get("name"), body.get("tag")
        if "name" in body and (not isinstance(name, str) or not name.strip() or len(name) > 100 or "\x00" in name):
            problems.append({"field": "name", "message": "A name of 1 to 100 characters is required."})
        if tag is not None and (not isinstance(tag, str) or not _TAG.match(tag)):
            problems.append({"field": "tag", "message": "A tag is 1 to 10 capital letters, digits or underscores, "
                                                        "starting with a letter."})
        options = body.get("options", {})
        if not isinstance(options, dict):
            problems.append({"field": "options", "message": "Options must be an object."})
        elif "size" in options and (isinstance(options["size"], bool) or not isinstance(options["size"], int)
                                    or not 1 <= options["size"] <= MAX_TEXT):
            problems.append({"field": "options.size", "message": f"size must be an integer from 1 to {MAX_TEXT}."})
        for key in ("required", "public"):
            if not isinstance(body.get(key, False), bool):
                problems.append({"field": key, "message": f"{key} must be true or false."})
        for key in ("default_value", "help_text"):
            if not isinstance(body.get(key, ""), str):
                problems.append({"field": key, "message": f"{key} must be a string."})
        display_order = body.get("display_order")
        if display_order is not None and (isinstance(display_order, bool) or not isinstance(display_order, int)):
            problems.append({"field": "display_order", "message": "display_order must be an integer."})
        return problems

    # Sandbox control.

    def confirm(self, email: str) -> Member:
        """Confirm a pending member's opt-in, as the person does by clicking Mailchimp's confirmation link.

        Raise ValueError when no such member is pending.
        """
        with self.store.write() as db:
            member = self._member(db, LIST_ID, self._hash(email))
            if member is None or member.status != "pending":
                raise ValueError(f"{email} is not a pending member of the audience")
            member.status = "subscribed"
            member.timestamp_opt = iso_seconds(int(time.time()))
            self._save(db, LIST_ID, [], changed=[member])
            return member

    def signup(self, email: str, status: str, merge_fields: Any) -> Member:
        """Add a member the way the person's own signup form does, forgotten addresses included.

        Mailchimp refuses to re-import an address deleted permanently ("Forgotten Email
        Not Subscribed"); the person can still sign up again themselves on a Mailchimp
        form, which ends the address's forgotten state. This stands for that (the
        deletion tests' "a system that holds the person again"). Raise ValueError when
        the address is malformed or already a member, MailchimpError for merge fields
        the audience refuses.
        """
        email = email.strip()
        problem = email_problem(email)
        if problem:
            raise ValueError(f"{email!r} is not an address Mailchimp accepts: {problem}")
        if status not in WRITABLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(WRITABLE_STATUSES)}")
        if merge_fields is not None and not isinstance(merge_fields, dict):
            raise ValueError("merge_fields must be an object")
        member_hash = hash_email(email)
        now = int(time.time())
        with self.store.write() as db:
            if self._member(db, LIST_ID, member_hash) is not None:
                raise ValueError(f"{email} is already a member of the audience")
            db.execute("DELETE FROM mailchimp_forgotten WHERE list_id = ? AND id = ?", (LIST_ID, member_hash))
            member = Member.new(email, now)
            member.status = status
            member.source = "Hosted Signup Form"
            if status == "subscribed":
                member.timestamp_opt = iso_seconds(now)
            definitions = {f.tag: f for f in self._merge_fields(db, LIST_ID)}
            self._apply_merge_fields(member, merge_fields, definitions, require=False)
            self._save(db, LIST_ID, [member], changed=[], now=now)
            return member

    def control_confirm(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"email": "..."}`: the person clicks the confirmation link of a pending membership."""
        refuse_unknown_keys(body, {"email"})
        if not isinstance(body.get("email"), str) or not body["email"].strip():
            raise ControlError("email must name a member")
        try:
            return _member_dump(self.confirm(body["email"]))
        except ValueError as error:
            raise ControlError(str(error)) from None

    def control_signup(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"email_address": "...", "status": "subscribed", "merge_fields": {}}`: the person signs up
        on a Mailchimp form, which a permanently deleted address may."""
        refuse_unknown_keys(body, {"email_address", "status", "merge_fields"})
        if not isinstance(body.get("email_address"), str) or not body["email_address"].strip():
            raise ControlError("email_address must name the person signing up")
        try:
            member = self.signup(body["email_address"], body.get("status", "subscribed"), body.get("merge_fields"))
        except ValueError as error:
            raise ControlError(str(error)) from None
        except MailchimpError as error:
            problems = [f"{item['field']}: {item['message']}" for item in error.errors or []]
            raise ControlError("; ".join([f"{error.title}: {error.detail}", *problems])) from None
        return _member_dump(member)

    def control_members(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every stored member, archived ones included, and the forgotten subscriber hashes."""
        with self.store.read() as db:
            rows = db.execute(f"{SELECT_MEMBER} WHERE list_id = ? ORDER BY seq", (LIST_ID,)).fetchall()
            forgotten = [row[0] for row in db.execute(
                "SELECT id FROM mailchimp_forgotten WHERE list_id = ? ORDER BY id", (LIST_ID,))]
        return {"members": [_member_dump(Member(row)) for row in rows], "forgotten": forgotten}

    def control_batch_delay(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"milliseconds": N}`: how long batches submitted from now on read as started; a reset restores it."""
        refuse_unknown_keys(body, {"milliseconds"})
        milliseconds = body.get("milliseconds")
        if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
            raise ControlError("milliseconds must be a non-negative integer")
        self.batch_delay_ms = milliseconds
        return {"milliseconds": milliseconds}

    # OAuth (stands for https://login.mailchimp.com/oauth2/...): tokens never expire, no refresh token.

    def oauth_token(self, request: Request) -> Response:
        """Reply `{access_token, expires_in: 0, scope: null}`."""
        if not self.oauth.client_ok(request):
            return json_response({"error": "invalid_client", "error_description": "Invalid client credentials"}, 401)
        if request.form.get("grant_type") != "authorization_code":
            return json_response({"error": "unsupported_grant_type"}, 400)
        grant, error = self.oauth.exchange_code(request, self.name, refreshable=False)
        if error:
            return json_response({"error": "invalid_grant", "error_description": error}, 400)
        return json_response(self.oauth.issue(grant, expires=False))

    def oauth_metadata(self, request: Request) -> Response:
        """`Authorization: OAuth <token>` → `{dc, api_endpoint, login_url, accountname}`."""
        if not self.oauth.authenticate(self.name, request):
            return MailchimpError(401, "Invalid Token", "The OAuth token is invalid or was revoked.").response()
        root = request.host_url.rstrip("/")
        return json_response({
            "dc": self.dc,
            "role": "owner",
            "accountname": MAILCHIMP_ACCOUNT_NAME,
            "api_endpoint": f"{root}/mailchimp",
            "login_url": f"{root}/mailchimp-login",
        })

    def oauth_expired(self, seconds_ago: int) -> Response:
        return MailchimpError(401, "API Key Invalid", "Your OAuth token is invalid or was revoked.").response()

    # Seeding (see `sandbox.seed`).

    def seed(self, db: sqlite3.Connection, rng: random.Random, people: list[Person],
             hostile_records: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the people as members with every status, merge fields and tags, 5% of the
        addresses in other letter case. Mailchimp only ever holds valid addresses, so none are
        malformed, and it takes none of the hostile records."""
        if not people:
            return {"mailchimp_members": 0}
        tag_ids = {}
        for name in SEED_TAG_NAMES:
            db.execute("INSERT OR IGNORE INTO mailchimp_tag (list_id, name) VALUES (?, ?)", (LIST_ID, name))
            (tag_ids[name],) = db.execute("SELECT id FROM mailchimp_tag WHERE list_id = ? AND name = ?",
                                          (LIST_ID, name)).fetchone()
        forgotten = {row[0] for row in db.execute("SELECT id FROM mailchimp_forgotten WHERE list_id = ?", (LIST_ID,))}
        phone_field = MergeField(merge_id=0, tag="PHONE", name="Phone Number", type="phone")
        now = int(time.time())
        rows, seen = [], set()
        for person in people:
            email = person.email.title() if rng.random() < 0.05 else person.email
            member_hash = hash_email(email)
            if member_hash in forgotten or member_hash in seen:
                continue
            seen.add(member_hash)
            status = rng.choices(SEED_STATUSES, SEED_STATUS_WEIGHTS)[0]
            last_changed = now - rng.randrange(60, YEAR_MS // 1000)
            signed_up = iso_seconds(last_changed - rng.randrange(0, YEAR_MS // 1000))
            merge_fields = {"FNAME": person.firstname, "LNAME": person.lastname}
            if person.company:
                merge_fields["COMPANY"] = person.company
            # Mailchimp validates phones on the way in, so seeded members only hold ones it accepts.
            if person.phone and phone_field.problem(person.phone) is None:
                merge_fields["PHONE"] = person.phone
            tags = [{"id": tag_ids[name], "name": name, "date_added": signed_up}
                    for name in rng.sample(SEED_TAG_NAMES, rng.choice((0, 0, 1, 2)))]
            values = {
                "seq": None, "id": member_hash, "email_address": email, "unique_email_id": secrets.token_hex(5),
                "contact_id": secrets.token_hex(16), "status": status, "email_type": "html",
                "merge_fields": json.dumps(merge_fields, ensure_ascii=False),
                "tags": json.dumps(tags, ensure_ascii=False), "language": "", "vip": int(rng.random() < 0.02),
                "ip_signup": "", "timestamp_signup": signed_up, "ip_opt": "",
                "timestamp_opt": signed_up if status != "pending" else "", "source": "Import",
                "last_changed": last_changed,
            }
            rows.append((LIST_ID, *(values[column] for column in MEMBER_COLUMNS)))
        cursor = db.executemany(
            f"INSERT OR IGNORE INTO mailchimp_member (list_id, {', '.join(MEMBER_COLUMNS)}) "
            f"VALUES (?, {', '.join('?' * len(MEMBER_COLUMNS))})",
            rows,
        )
        return {"mailchimp_members": cursor.rowcount}

    # The member write path shared by POST, PUT, PATCH and batch subscribe.

    def _write_members(self, db: sqlite3.Connection, list_id: str, planned: list[tuple[str, MemberInput]], *,
                       mode: str, update_existing: bool = True, sync_tags: bool = False,
                       skip_merge_validation: bool = False) -> list[tuple[Member | None, bool, MailchimpError | None]]:
        """Create or update members; return (member, created, error) per input.

        `mode` is create (POST), put, patch or batch. Single-member modes raise their
        error; batch reports it in the outcome instead.
        """
        hashes = [member_hash for member_hash, _ in planned]
        existing = self._members(db, list_id, hashes)
        forgotten = self._forgotten(db, list_id, hashes)
        merge_fields = {f.tag: f for f in self._merge_fields(db, list_id)}
        tag_cache = self._tag_cache(db, list_id)
        now = int(time.time())
        outcomes: list[tuple[Member | None, bool, MailchimpError | None]] = []
        inserted, changed = [], []
        for member_hash, member_input in planned:
            try:
                member, created = self._plan_member(
                    db, list_id, member_hash, member_input, existing.get(member_hash), member_hash in forgotten,
                    merge_fields, tag_cache, now, mode=mode, update_existing=update_existing, sync_tags=sync_tags,
                    skip_merge_validation=skip_merge_validation,
                )
            except MailchimpError as error:
                if mode != "batch":
                    raise
                outcomes.append((None, False, error))
                continue
            if member.seq is None:
                inserted.append(member)
            elif member.state() != existing[member_hash].state():
                changed.append(member)
            outcomes.append((member, created, None))
        self._save(db, list_id, inserted, changed=changed, now=now)
        return outcomes

    def _plan_member(self, db: sqlite3.Connection, list_id: str, member_hash: str, member_input: MemberInput,
                     current: Member | None, forgotten: bool, merge_fields: dict[str, MergeField],
                     tag_cache: dict[str, int], now: int, *, mode: str, update_existing: bool, sync_tags: bool,
                     skip_merge_validation: bool) -> tuple[Member, bool]:
        """Return the member as it will be after this input, and whether it is new (or re-added)."""
        if current is None and forgotten:
            email = member_input.email or member_hash
            raise MailchimpError(400, "Forgotten Email Not Subscribed",
                                 f"{email} was permanently deleted and cannot be re-imported. The contact must "
                                 "re-subscribe to get back on the list.")
        if current is None and mode == "patch":
            raise self._not_found()
        returning = current is None or current.status == "archived"
        if not returning and mode == "create":
            raise MailchimpError(400, "Member Exists",
                                 f"{current.email_address} is already a list member. Use PUT to insert or update "
                                 "list members.")
        if not returning and mode == "batch" and not update_existing:
            raise MailchimpError(400, "Member Exists",
                                 f"{current.email_address} is already a list member, do you want to update? please "
                                 "provide update_existing:true in the request body")
        if returning:
            # PUT names the status of a new member in status_if_new alone; `status` is for existing ones.
            status = member_input.status_if_new
            if status is None and not (mode == "put" and current is None):
                status = member_input.status
            if current is None and member_input.email is None:
                raise mailchimp_field_errors([{"field": "email_address", "message": "This value should not be blank."}])
            if status is None:
                raise mailchimp_field_errors([{"field": "status_if_new" if mode == "put" else "status",
                                               "message": "This value should not be blank."}])
            member = Member.new(member_input.email, now) if current is None else self._copy(current)
            member.status = status
        else:
            member = self._copy(current)
            if member_input.status is not None:
                self._refuse_compliance_state(current, member_input.status)
                member.status = member_input.status
        if member_input.email is not None and member_input.email.lower() != member.email_address.lower():
            new_hash = hash_email(member_input.email)
            if self._member(db, list_id, new_hash) is not None:
                raise MailchimpError(400, "Member Exists", f"{member_input.email} is already a list member.")
            if self._forgotten(db, list_id, [new_hash]):
                raise MailchimpError(400, "Forgotten Email Not Subscribed",
                                     f"{member_input.email} was permanently deleted and cannot be re-imported.")
            member.id = new_hash
        if member_input.email is not None:
            member.email_address = member_input.email
        self._apply_merge_fields(member, member_input.merge_fields, merge_fields,
                                 require=returning and not skip_merge_validation)
        for name in ("email_type", "language", "vip", "ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt"):
            value = getattr(member_input, name)
            if value is not None:
                setattr(member, name, value)
        if member.status == "subscribed" and (current is None or current.status != "subscribed") \
                and member_input.timestamp_opt is None:
            # The opt-in the person (or the account, for them) just made.
            member.timestamp_opt = iso_seconds(now)
        if member_input.tags is not None:
            if sync_tags:
                member.tags = []
            for name in member_input.tags:
                self._set_tag(db, list_id, member, name, True, tag_cache)
        return member, returning

    @staticmethod
    def _refuse_compliance_state(current: Member, status: str) -> None:
        """Refuse to subscribe a member who unsubscribed or bounced: only the person can come back.

        An unsubscribed member may be set to pending (Mailchimp then asks them to
        confirm); a cleaned (bouncing) one may not be offered even that.
        """
        refused = {"unsubscribed": ("subscribed",), "cleaned": ("subscribed", "pending")}.get(current.status, ())
        if status in refused:
            raise MailchimpError(400, "Member In Compliance State",
                                 f"{current.email_address} is in a compliance state due to unsubscribe, bounce, or "
                                 "compliance review and cannot be subscribed.")

    @staticmethod
    def _apply_merge_fields(member: Member, given: dict[str, Any] | None, definitions: dict[str, MergeField], *,
                            require: bool) -> None:
        problems = []
        for tag, value in (given or {}).items():
            definition = definitions.get(tag)
            if definition is None:
                problems.append({"field": tag, "message": "This merge field does not exist in the audience."})
                continue
            if value == "" or value is None:
                member.merge_fields.pop(tag, None)
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and definition.type != "address":
                value = str(value)
            problem = definition.problem(value)
            if problem:
                problems.append({"field": tag, "message": problem})
                continue
            member.merge_fields[tag] = value
        if require:
            for definition in definitions.values():
                if definition.required and not member.merge_fields.get(definition.tag):
                    problems.append({"field": definition.tag, "message": "Please enter a value"})
        if problems:
            raise mailchimp_invalid("Your merge fields were invalid.", problems)

    def _save(self, db: sqlite3.Connection, list_id: str, inserted: list[Member], *, changed: list[Member],
              now: int | None = None) -> None:
        """Store new members and changed ones; every change moves the member's `last_changed` forward."""
        now = int(time.time()) if now is None else now
        if inserted:
            (last_seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM mailchimp_member").fetchone()
            for offset, member in enumerate(inserted, start=1):
                member.seq = last_seq + offset
                member.last_changed = now
            db.executemany(
                f"INSERT INTO mailchimp_member (list_id, {', '.join(MEMBER_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(MEMBER_COLUMNS))})",
                [(list_id, *member.row()) for member in inserted],
            )
        if changed:
            for member in changed:
                member.last_changed = max(now, member.last_changed + 1)
            assignments = ", ".join(f"{column} = ?" for column in MEMBER_COLUMNS[1:])
            db.executemany(
                f"UPDATE mailchimp_member SET {assignments} WHERE seq = ?",
                [(*member.row()[1:], member.seq) for member in changed],
            )

    # Helpers.

    def _member_input(self, body: dict[str, Any], *, allow_tags: bool,
                      allow_status_if_new: bool = True) -> MemberInput:
        """Validate the member fields of a request body; raise "Invalid Resource" on any problem."""
        member_input = MemberInput()
        problems = []
        email = body.get("email_address")
        if email is not None:
            if not isinstance(email, str):
                problems.append({"field": "email_address", "message": "This value should be of type string."})
            else:
                email = email.strip()
                problem = email_problem(email)
                if "\x00" in email or problem == "contains non-ASCII characters":
                    detail = f"{email} looks fake or invalid, please enter a real email address."
                    raise mailchimp_invalid(detail, [{"field": "email_address", "message": detail}])
                if problem:
                    raise mailchimp_invalid("Please provide a valid email address.",
                                            [{"field": "email_address", "message": f"The address {problem}."}])
                member_input.email = email
        for name in ("status", "status_if_new"):
            value = body.get(name)
            if value is None or (name == "status_if_new" and not allow_status_if_new):
                continue
            if value not in WRITABLE_STATUSES:
                problems.append({"field": name, "message": f"Status must be one of: {', '.join(WRITABLE_STATUSES)}."})
            else:
                setattr(member_input, name, value)
        merge_fields = body.get("merge_fields")
        if merge_fields is not None:
            if not isinstance(merge_fields, dict):
                problems.append({"field": "merge_fields", "message": "Merge fields must be an object."})
            else:
                member_input.merge_fields = merge_fields
        if body.get("email_type") is not None:
            if body["email_type"] not in ("html", "text"):
                problems.append({"field": "email_type", "message": "Email type must be html or text."})
            else:
                member_input.email_type = body["email_type"]
        if body.get("vip") is not None:
            if not isinstance(body["vip"], bool):
                problems.append({"field": "vip", "message": "VIP must be true or false."})
            else:
                member_input.vip = body["vip"]
        for name in ("language", "ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt"):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or "\x00" in value or len(value) > 64:
                problems.append({"field": name, "message": "This value should be a short string."})
            else:
                setattr(member_input, name, value)
        if allow_tags and body.get("tags") is not None:
            tags = body["tags"]
            if not isinstance(tags, list):
                problems.append({"field": "tags", "message": "Tags must be a list of names."})
            else:
                for name in tags:
                    problem = self._tag_problem(name)
                    if problem:
                        problems.append({"field": "tags", "message": problem})
                member_input.tags = [name.strip() for name in tags if isinstance(name, str)]
        if problems:
            raise mailchimp_field_errors(problems)
        return member_input

    @staticmethod
    def _tag_problem(name: Any) -> str | None:
        if not isinstance(name, str) or not name.strip():
            return "A tag needs a name."
        if len(name) > MAX_TAG_NAME or "\x00" in name:
            return f"Tag names are at most {MAX_TAG_NAME} characters, without NUL characters."
        return None

    @staticmethod
    def _tag_cache(db: sqlite3.Connection, list_id: str) -> dict[str, int]:
        return {name: tag_id for tag_id, name in
                db.execute("SELECT id, name FROM mailchimp_tag WHERE list_id = ?", (list_id,))}

    @staticmethod
    def _set_tag(db: sqlite3.Connection, list_id: str, member: Member, name: str, active: bool,
                 cache: dict[str, int]) -> None:
        has_tag = any(tag["name"] == name for tag in member.tags)
        if active and not has_tag:
            if name not in cache:
                (cache[name],) = db.execute("INSERT INTO mailchimp_tag (list_id, name) VALUES (?, ?) RETURNING id",
                                            (list_id, name)).fetchone()
            member.tags.append({"id": cache[name], "name": name, "date_added": iso_seconds(int(time.time()))})
        elif not active and has_tag:
            member.tags = [tag for tag in member.tags if tag["name"] != name]

    @staticmethod
    def _copy(member: Member) -> Member:
        copy = Member()
        copy.__dict__.update(member.__dict__)
        copy.merge_fields = dict(member.merge_fields)
        copy.tags = [dict(tag) for tag in member.tags]
        return copy

    @staticmethod
    def _member(db: sqlite3.Connection, list_id: str, member_hash: str) -> Member | None:
        row = db.execute(f"{SELECT_MEMBER} WHERE list_id = ? AND id = ?", (list_id, member_hash)).fetchone()
        return Member(row) if row else None

    @staticmethod
    def _members(db: sqlite3.Connection, list_id: str, hashes: list[str]) -> dict[str, Member]:
        if not hashes:
            return {}
        rows = db.execute(f"{SELECT_MEMBER} WHERE list_id = ? AND id IN ({', '.join('?' * len(hashes))})",
                          [list_id, *hashes]).fetchall()
        return {member.id: member for member in map(Member, rows)}

    @staticmethod
    def _forgotten(db: sqlite3.Connection, list_id: str, hashes: list[str]) -> set[str]:
        if not hashes:
            return set()
        rows = db.execute(f"SELECT id FROM mailchimp_forgotten WHERE list_id = ? AND id IN "
                          f"({', '.join('?' * len(hashes))})", [list_id, *hashes])
        return {row[0] for row in rows}

    @staticmethod
    def _merge_fields(db: sqlite3.Connection, list_id: str) -> list[MergeField]:
        rows = db.execute(
            "SELECT merge_id, tag, name, type, required, default_value, public, display_order, options, help_text "
            "FROM mailchimp_merge_field WHERE list_id = ? ORDER BY display_order, merge_id", (list_id,)
        ).fetchall()
        return [MergeField(merge_id, tag, name, kind, bool(required), default_value, bool(public), display_order,
                           json.loads(options), help_text)
                for merge_id, tag, name, kind, required, default_value, public, display_order, options, help_text
                in rows]

    def _list_json(self, db: sqlite3.Connection, request: Request) -> dict[str, Any]:
        counts = dict(db.execute("SELECT status, COUNT(*) FROM mailchimp_member WHERE list_id = ? GROUP BY status",
                                 (LIST_ID,)).fetchall())
        (merge_field_count,) = db.execute("SELECT COUNT(*) FROM mailchimp_merge_field WHERE list_id = ?",
                                          (LIST_ID,)).fetchone()
        base = self._base(request)
        return {
            "id": LIST_ID,
            "web_id": 100001,
            "name": LIST_NAME,
            "contact": {"company": "Syncapp Sandbox", "address1": "1 Sandbox Way", "address2": "", "city": "Atlanta",
                        "state": "GA", "zip": "30308", "country": "US", "phone": ""},
            "permission_reminder": "You signed up for updates from the Syncapp sandbox.",
            "use_archive_bar": True,
            "campaign_defaults": {"from_name": "Syncapp Sandbox", "from_email": "news@sandbox.invalid",
                                  "subject": "", "language": "en"},
            "notify_on_subscribe": "",
            "notify_on_unsubscribe": "",
            "date_created": LIST_CREATED,
            "list_rating": 3,
            "email_type_option": False,
            "subscribe_url_short": "",
            "subscribe_url_long": "",
            "beamer_address": "",
            "visibility": "prv",
            "double_optin": False,
            "has_welcome": False,
            "marketing_permissions": False,
            "modules": [],
            "stats": {
                "member_count": counts.get("subscribed", 0),
                "unsubscribe_count": counts.get("unsubscribed", 0),
                "cleaned_count": counts.get("cleaned", 0),
                "member_count_since_send": counts.get("subscribed", 0),
                "unsubscribe_count_since_send": counts.get("unsubscribed", 0),
                "cleaned_count_since_send": counts.get("cleaned", 0),
                "campaign_count": 0,
                "merge_field_count": merge_field_count,
                "total_contacts": sum(count for status, count in counts.items() if status != "archived"),
            },
            "_links": [{"rel": "self", "href": f"{base}lists/{LIST_ID}", "method": "GET"},
                       {"rel": "members", "href": f"{base}lists/{LIST_ID}/members", "method": "GET"}],
        }

    def _member_reply(self, db: sqlite3.Connection, request: Request, list_id: str, member: Member) -> Response:
        return json_response(member.to_json(list_id, self._merge_fields(db, list_id), self._base(request)))

    def _reply(self, request: Request, body: dict[str, Any]) -> Response:
        fields = _field_paths(request.args.get("fields"))
        exclude = _field_paths(request.args.get("exclude_fields"))
        return json_response(project(body, fields, exclude))

    def _base(self, request: Request) -> str:
        return f"{request.host_url}{self.prefix.lstrip('/')}/"

    @staticmethod
    def _batch_error(email: Any, error: MailchimpError) -> dict[str, Any]:
        first = (error.errors or [{}])[0]
        generic = error.detail.startswith("The resource submitted could not be validated")
        return {
            "email_address": email if isinstance(email, str) else "",
            "error": f"{first.get('field')}: {first.get('message')}" if generic and error.errors else error.detail,
            "error_code": "ERROR_CONTACT_EXISTS" if error.title == "Member Exists" else "ERROR_GENERIC",
            "field": first.get("field", ""),
            "field_message": first.get("message", ""),
        }

    @staticmethod
    def _hash(path_value: str) -> str:
        """Return the subscriber hash a path names: the hash itself, or an email address."""
        return hash_email(path_value.strip()) if "@" in path_value else path_value.lower()

    @staticmethod
    def _check_list(list_id: str) -> None:
        if list_id != LIST_ID:
            raise MailchimpError(404, "Resource Not Found", "The requested resource could not be found.")

    @staticmethod
    def _not_found() -> MailchimpError:
        return MailchimpError(404, "Resource Not Found", "The requested resource could not be found.")

    @staticmethod
    def _flag(raw: str | None) -> bool:
        return (raw or "").lower() == "true"

    @staticmethod
    def _int_arg(raw: str | None, name: str, *, default: int, maximum: int | None = None) -> int:
        if raw is None or raw == "":
            return default
        if not raw.isdigit():
            raise mailchimp_invalid(f"{name} must be a non-negative integer.")
        value = int(raw)
        if maximum is not None and not 1 <= value <= maximum:
            raise mailchimp_invalid(f"{name} must be between 1 and {maximum}.")
        return value


@dataclass(frozen=True)
class BatchOperation:
    """One operation of a batch, matched to the member route that carries it out."""

    route: Route
    arguments: dict[str, str]
    method: str
    path: str
    body: str
    params: dict[str, Any]
    operation_id: str


def _finished(row: tuple) -> bool:
    """Return whether a stored batch's delay is over."""
    return time.time() * 1000 >= row[1] + row[2]


def _results_archive(batch_id: str, results: list[dict[str, Any]]) -> bytes:
    """Return the results as Mailchimp's archive: a gzipped tar of JSON files, each a list of results."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for number, start in enumerate(range(0, len(results), RESULTS_PER_FILE)):
            data = json.dumps(results[start:start + RESULTS_PER_FILE]).encode("utf-8")
            info = tarfile.TarInfo(f"{batch_id}/{number}.json")
            info.size = len(data)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _s3_error(status: int, code: str, message: str) -> Response:
    """Return an error as S3 sends it for a presigned URL: XML, not Mailchimp's problem JSON."""
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status=status, content_type="application/xml")


def _member_dump(member: Member) -> dict[str, Any]:
    """Return a member as the control endpoints show it."""
    return {
        "id": member.id,
        "email_address": member.email_address,
        "status": member.status,
        "archived": member.status == "archived",
        "merge_fields": member.merge_fields,
        "tags": [tag["name"] for tag in member.tags],
        "last_changed": iso_seconds(member.last_changed),
        "unique_email_id": member.unique_email_id,
        "contact_id": member.contact_id,
        "email_type": member.email_type,
        "language": member.language,
        "vip": member.vip,
        "timestamp_opt": member.timestamp_opt,
        "source": member.source,
    }
