"""The emulated HubSpot CRM v3 contacts API, served under `/hubspot` (for https://api.hubapi.com).

Behaviour follows HubSpot's public documentation, and where that is silent the emulator
is strict:
- Property values are strings. `hs_object_id`, `createdate`, `lastmodifieddate`,
  `hs_email_optout`, `hs_merged_object_ids` and `hs_additional_emails` are kept by the
  server and refused on writes (READ_ONLY_VALUE); unknown properties are refused. An
  update naming no property is refused ("No properties found to update").
- Emails are trimmed and lowercased on write and unique among live contacts, ignoring
  case: creating a second contact with an existing email, or changing a contact's email
  into one another contact holds, is a 409 CONFLICT ("Contact already exists. Existing
  ID: N"); so is a batch giving one address to two of its inputs (HubSpot's message
  there is not documented; this one names the address). Seeded legacy records may be
  untidy (malformed emails, other letter cases), but never hold an address twice.
- Every change gives the contact a `lastmodifieddate` later than any before it, in
  milliseconds; a write that changes nothing leaves it alone. All the contacts one
  request changes share one millisecond, as HubSpot's batch writes can: delta readers
  must cope with many records at one instant. A bulk edit (a control endpoint standing
  in for HubSpot's bulk edits, imports and workflows) does the same for any number.
- Batch writes validate every input first and refuse the whole batch (400, or 409 for
  an email another contact holds) when one input is invalid, as HubSpot does. Missing
  records in batch read and update are reported per input in a 207 reply.
- Search: at most 5 filter groups, 6 filters per group and 18 in all; one sort; pages
  of up to 200; results stop at 10,000 (`after` at or past 10,000 is a 400).
  CONTAINS_TOKEN matches a word of a value, or the whole value; on a multiple-value
  property (`hs_additional_emails`, options joined by ";") it matches each option so.
- List: `after` is the id of the next contact to list and pages go by id, so contacts
  edited during a listing move nothing. With `archived=true` it lists the archived
  contacts instead, each with `archived: true` and `archivedAt`; archiving moves
  `lastmodifieddate` too. Search, reads by id and updates see live contacts only.
- GDPR delete removes the contact for good and blocklists its email: creating a
  contact with that email again is refused.
- Merge (`POST /crm/v3/objects/contacts/merge`): the primary keeps its values and its
  email, takes the other's values for its empty properties and the further lifecycle
  stage, lists the other's id in `hs_merged_object_ids` and its email in
  `hs_additional_emails`, and gets a new `lastmodifieddate`. The other contact is gone
  from every read and lookup; its address is free for a new contact. The reply is the
  merged contact. (HubSpot documents primary-wins with those exceptions; whether a
  merged contact keeps the primary's id is not documented: clients take the id from
  the reply.)
- `hs_email_optout` ("Unsubscribed from all email") is set by the v4 subscriptions API,
  `POST /communication-preferences/v4/statuses/{email}/unsubscribe-all?channel=EMAIL`.
  The opt-out belongs to the address, in any letter case: every contact with it reads
  "true" (with a new `lastmodifieddate`), and so does a contact created with it later
  or given it by an update, and a contact seeded with it. Nothing in the
  emulated API subscribes an address again.
- The batch form, `POST /communication-preferences/v4/statuses/batch/unsubscribe-all
  ?channel=EMAIL` with `{"inputs": ["email", ...]}`, opts each address out as the single
  route does, all of them at one instant. `inputs` must be a list of 1 to 100 strings
  (HubSpot documents no maximum: 100, like its other batches, is unconfirmed), none
  repeated in any letter case, else the whole call is a 400. Each input is then on its
  own: an address no contact holds is opted out all the same (the single route's
  answer), an invalid one is listed under `errors` (VALIDATION_ERROR, `context:
  {subscriberIdString: [input]}`) while the others are applied, and the reply is then a
  207 with `numErrors`, else a 200. Each result is `{subscriberIdString, statuses: []}`:
  the per-subscription statuses are not emulated.
- The batch subscription endpoints need the batch scopes
  (`communication_preferences.statuses.batch.write`), which only a Marketing Hub
  Enterprise portal can grant an app. `hubspot_batch_subscription_scopes` says whether
  this portal has granted them: 1 by default, so that the demo and the benchmarks go
  through the batch route a client prefers; 0 (or the `batch-subscription-scopes`
  control action) makes the batch route answer HubSpot's 403 MISSING_SCOPES, as it does
  for every portal below Enterprise, for the tests of the clients' fallback.
- Each token may make `rate_limit` requests in any 10 seconds (190 by default) and
  650,000 a day; every reply carries the `X-HubSpot-RateLimit-*` headers, and a request
  over the limit gets a 429 naming the policy. The per-second headers are informational.
- Search requests have a rate of their own on top: `search_rate_limit` in any second (5
  by default; "rate limited to five requests per second per account"), and count
  against the 10-second window too. Over it, the 429 names the `SECONDLY` policy.
  Search replies carry no rate-limit headers, as HubSpot documents.

OAuth (stands for https://app.hubspot.com/oauth/authorize and
https://api.hubapi.com/oauth/v1/token): `GET|POST /hubspot/oauth/authorize` is the
approval screen (`sandbox.oauth`); `POST /hubspot/oauth/v1/token` takes
`grant_type=authorization_code|refresh_token` and answers `{access_token, refresh_token,
expires_in, token_type}`, or a 400 `{status: "BAD_REFRESH_TOKEN" | "BAD_AUTH_CODE" |
"BAD_CLIENT_ID" | "BAD_GRANT_TYPE", message}`. An expired or revoked access token gets the
401 EXPIRED_AUTHENTICATION.

Control actions (under `/_sandbox/hubspot/`):
POST bulk-edit   `{"ids": ["101", ...], "properties": {...}}` (no `ids`: every live contact):
                 set the properties in one instant, as bulk edits, imports and workflows can.
                 Replies `{"edited": n, "lastmodifieddate": "...Z" | null}`.
POST restore     `{"ids": [...]}`: bring archived contacts back from the recycle bin (each gets
                 a new `lastmodifieddate`). Replies `{"restored": n}`; 400 when a live contact
                 holds one's address meanwhile.
POST batch-subscription-scopes
                 `{"granted": false}`: whether the portal has granted the batch subscription
                 scopes, until the next reset (which restores `hubspot_batch_subscription_scopes`).
                 Replies `{"granted": ...}`.
GET  contacts    `{"contacts": [{id, properties (all), createdAt, updatedAt, archived,
                 archivedAt?}], "gdpr_deleted": [{email, id, deletedAt}]}`
POST contacts    `{"properties": {"email": ...}}`: the person signs up again on a HubSpot form,
                 past the GDPR blocklist the API enforces. Replies the contact as the dump
                 shows it; 400 for values HubSpot refuses or an address a live contact holds.
"""
from __future__ import annotations

import fnmatch
import hmac
import json
import random
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
CREATE TABLE IF NOT EXISTS hubspot_contact (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The trimmed, lowercased email: HubSpot's uniqueness key. NULL without an email.
    email_key TEXT,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_ms INTEGER
);
CREATE INDEX IF NOT EXISTS hubspot_contact_modified ON hubspot_contact (archived, modified_ms, id);
CREATE INDEX IF NOT EXISTS hubspot_contact_email ON hubspot_contact (email_key);

CREATE TABLE IF NOT EXISTS hubspot_gdpr_deleted (
    email_key TEXT PRIMARY KEY,
    contact_id INTEGER,
    deleted_ms INTEGER NOT NULL
);

-- Addresses unsubscribed from all email: HubSpot ties the status to the address, so
-- a contact created with it later is opted out too.
CREATE TABLE IF NOT EXISTS hubspot_email_optout (
    email_key TEXT PRIMARY KEY,
    opted_out_ms INTEGER NOT NULL
);
"""

MAX_BATCH = 100
# HubSpot documents no maximum for the batch subscription endpoints (unconfirmed): strict, as its other batches.
MAX_SUBSCRIPTION_BATCH = 100
BATCH_SUBSCRIPTION_SCOPE = "communication_preferences.statuses.batch.write"
MAX_LIST_PAGE = 100
MAX_SEARCH_PAGE = 200
SEARCH_RESULT_CAP = 10_000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_VALUE_LENGTH = 65_536
CONTACTS = "/crm/v3/objects/contacts"
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
# Search replies always carry these, whatever was asked for.
SEARCH_BASE_PROPERTIES = ("createdate", "hs_object_id", "lastmodifieddate")
NOT_FOUND_MESSAGE = "Object not found.  objectId are usually numeric."
NO_PROPERTIES_MESSAGE = "No properties found to update, please provide at least one."
OPTOUT = "hs_email_optout"
SEED_JOB_TITLES = ("Marketing Manager", "CEO", "Software Engineer", "Office Manager", "Head of Sales", "Designer",
                   "Directrice commerciale", "Einkaufsleiter", "")
SEED_LIFECYCLE_WEIGHTS = (30, 35, 10, 5, 5, 12, 1, 2)
SEED_CITIES = (("San Francisco", "CA", "94107", "United States"), ("Berlin", "", "10115", "Germany"),
               ("Paris", "", "75002", "France"), ("São Paulo", "SP", "01310-100", "Brazil"),
               ("東京", "", "100-0001", "Japan"), ("London", "", "EC1A 1BB", "United Kingdom"))
SEED_SKIPPED_KEYS = {"why"}
SEED_HOSTILE_PROPERTY = {"birthday": "date_of_birth"}


class HubSpotError(ProviderError):
    """An error reply in HubSpot's shape: `{status: "error", message, correlationId, category}`."""

    def __init__(self, status: int, message: str, category: str, *, sub_category: str | None = None,
                 context: dict[str, list[str]] | None = None, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.sub_category = sub_category
        self.context = context
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.context is not None:
            body["context"] = self.context
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status, headers=self.headers)


class HubSpotRateLimited(HubSpotError):
    """HubSpot's 429, whose body names the policy instead of a category."""

    def __init__(self, policy_name: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(429, message, "RATE_LIMITS", headers=headers)
        self.policy_name = policy_name

    def body(self) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": self.policy_name,
        }


@dataclass(frozen=True)
class PropertyDefinition:
    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group: str = "contactinformation"
    options: tuple[str, ...] = ()
    read_only: bool = False
    description: str = ""
    # HubSpot computes the value from other properties (read-only too).
    calculated: bool = False


LIFECYCLE_STAGES = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
    "evangelist", "other",
)

PROPERTIES = (
    PropertyDefinition("email", "Email", description="A contact's email address"),
    PropertyDefinition("firstname", "First Name", description="A contact's first name"),
    PropertyDefinition("lastname", "Last Name", description="A contact's last name"),
    PropertyDefinition("phone", "Phone Number", field_type="phonenumber",
                       description="A contact's primary phone number"),
    PropertyDefinition("mobilephone", "Mobile Phone Number", field_type="phonenumber"),
    PropertyDefinition("company", "Company Name", description="Name of the contact's company"),
    PropertyDefinition("jobtitle", "Job Title"),
    PropertyDefinition("website", "Website URL"),
    PropertyDefinition("address", "Street Address"),
    PropertyDefinition("city", "City"),
    PropertyDefinition("state", "State/Region"),
    PropertyDefinition("zip", "Postal Code"),
    PropertyDefinition("country", "Country/Region"),
    PropertyDefinition("date_of_birth", "Date of birth"),
    PropertyDefinition("lifecyclestage", "Lifecycle Stage", type="enumeration", field_type="radio",
                       options=LIFECYCLE_STAGES, description="The qualification of contacts to sales readiness"),
    PropertyDefinition("hs_email_optout", "Unsubscribed from all email", type="bool", field_type="booleancheckbox",
                       group="emailinformation", options=("true", "false"), read_only=True,
                       description="Indicates that the contact has opted out of all email"),
    PropertyDefinition("hs_additional_emails", "Additional email addresses", type="enumeration",
                       field_type="checkbox", read_only=True,
                       description="A set of additional email addresses for a contact"),
    PropertyDefinition("hs_merged_object_ids", "Merged Contact IDs", type="enumeration", field_type="checkbox",
                       read_only=True, description="The list of Contact record IDs that have been merged into this "
                                                   "Contact"),
    PropertyDefinition("createdate", "Create Date", type="datetime", field_type="date", read_only=True,
                       description="The date that a contact entered the system"),
    PropertyDefinition("lastmodifieddate", "Last Modified Date", type="datetime", field_type="date",
                       read_only=True, description="Most recent timestamp of any property update"),
    PropertyDefinition("hs_email_domain", "Email Domain", read_only=True, calculated=True,
                       group="emailinformation", description="A contact's email address domain"),
    PropertyDefinition("hs_object_id", "Record ID", type="number", field_type="number", read_only=True,
                       description="The unique ID for this record. This value is set automatically by HubSpot."),
)
PROPERTY_BY_NAME = {definition.name: definition for definition in PROPERTIES}
# Properties kept in table columns rather than in the JSON of the others.
COLUMN_OF = {"hs_object_id": "id", "createdate": "created_ms", "lastmodifieddate": "modified_ms"}
SEARCHED_BY_QUERY = ("firstname", "lastname", "email", "phone", "company")
ROW_COLUMNS = "id, email_key, properties, created_ms, modified_ms, archived, archived_ms"
DEFINITIONS_CREATED_MS = 1_262_304_000_000


def iso_ms(ms: int) -> str:
    """Format epoch milliseconds as HubSpot does: `2024-05-01T12:30:00.123Z`."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(value: Any) -> int | None:
    """Read a datetime filter value (epoch milliseconds or ISO 8601) as epoch ms."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def contains_token(value: str | None, query: str) -> bool:
    """HubSpot's CONTAINS_TOKEN: a word of the value (or the whole value) matches; `*` is a wildcard."""
    if value is None:
        return False
    value = value.lower()
    tokens = {value, *value.split()}
    query = query.lower()
    if "*" in query:
        return any(fnmatch.fnmatchcase(token, query) for token in tokens)
    return query in tokens


def options_contain_token(value: str | None, query: str) -> bool:
    """CONTAINS_TOKEN on a multiple-value property ("a;b", as `hs_additional_emails`): each option is
    matched as a value is (so an address merged into a contact is found among its additional emails)."""
    if value is None:
        return False
    return any(contains_token(option, query) for option in _listed(value))


def property_definition_json(definition: PropertyDefinition) -> dict[str, Any]:
    stamp = iso_ms(DEFINITIONS_CREATED_MS)
    return {
        "name": definition.name,
        "label": definition.label,
        "type": definition.type,
        "fieldType": definition.field_type,
        "description": definition.description,
        "groupName": definition.group,
        "options": [
            {"label": option.title() if definition.type == "enumeration" else option.capitalize(),
             "value": option, "displayOrder": index, "hidden": False}
            for index, option in enumerate(definition.options)
        ],
        "displayOrder": -1,
        "calculated": definition.calculated,
        "externalOptions": False,
        "hasUniqueValue": False,
        "hidden": False,
        "hubspotDefined": True,
        "modificationMetadata": {
            "archivable": False,
            "readOnlyDefinition": True,
            "readOnlyValue": definition.read_only,
        },
        "formField": not definition.read_only,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }


def _listed(value: str | None) -> list[str]:
    """Return the options of a multiple-value property ("a;b")."""
    return [part for part in (value or "").split(";") if part]


def validation_error(problems: list[dict[str, Any]]) -> HubSpotError:
    """Return HubSpot's 400 for property values it refuses."""
    listed = [{"isValid": False, "message": p["message"], "error": p["error"], "name": p["name"]} for p in problems]
    return HubSpotError(
        400,
        "Property values were not valid: " + json.dumps(listed, ensure_ascii=False),
        "VALIDATION_ERROR",
        errors=[{"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
                for p in problems],
    )


def bad_request(message: str, **context: list[str]) -> HubSpotError:
    return HubSpotError(400, message, "VALIDATION_ERROR", context=context or None)


def _zero_or_one(value: int) -> str | None:
    """The `problem` of a yes-or-no option, given as 1 or 0 (options are strings or integers)."""
    return None if value in (0, 1) else "hubspot_batch_subscription_scopes must be 1 (granted) or 0 (not granted)"


class Contact:
    """One stored contact row, with its properties decoded."""

    __slots__ = ("id", "email_key", "properties", "created_ms", "modified_ms", "archived", "archived_ms")

    def __init__(self, row: tuple):
        (self.id, self.email_key, properties, self.created_ms, self.modified_ms, archived,
         self.archived_ms) = row
        self.properties: dict[str, str] = json.loads(properties)
        self.archived = bool(archived)

    def value(self, name: str) -> str | None:
        if name == "hs_object_id":
            return str(self.id)
        if name == "createdate":
            return iso_ms(self.created_ms)
        if name == "lastmodifieddate":
            return iso_ms(self.modified_ms)
        if name == "hs_email_domain":
            _, at, domain = (self.properties.get("email") or "").rpartition("@")
            return domain.lower() if at and domain else None
        return self.properties.get(name)

    def to_json(self, names: Iterable[str] | None = None, *, new: bool | None = None) -> dict[str, Any]:
        """Return the API object; `names` None gives every property that has a value."""
        if names is None:
            names = [*sorted(self.properties), *COLUMN_OF]
        obj: dict[str, Any] = {
            "id": str(self.id),
            "properties": {name: self.value(name) for name in names if name in PROPERTY_BY_NAME},
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.modified_ms),
            "archived": self.archived,
        }
        if self.archived_ms is not None:
            obj["archivedAt"] = iso_ms(self.archived_ms)
        if new is not None:
            obj["new"] = new
        return obj


# One page of the list endpoint, walked in id order from `after`. `+archived` keeps the
# (archived, modified_ms, id) index out: without statistics SQLite would take it for
# the archived test and then sort every remaining contact by id on every page, making a
# full read quadratic; walking the primary key stops after one page, as HubSpot does.
LIST_PAGE = f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE +archived = ? AND id >= ? ORDER BY id LIMIT ?"


class HubSpotAPI(EmulatedAPI):
    name = "hubspot"
    label = "HubSpot"
    prefix = "/hubspot"
    options = (
        Option("hubspot_token", "sandbox-hubspot-token", "the Bearer token HubSpot accepts",
               not_blank("HubSpot token")),
        Option("hubspot_rate_limit", 190, "HubSpot requests allowed per rolling 10 s per token; 0 turns the "
                                          "limit off", not_negative),
        Option("hubspot_search_rate_limit", 5, "HubSpot search requests allowed per second per token, on top "
                                               "of the general limit; 0 turns it off", not_negative),
        Option("hubspot_batch_subscription_scopes", 1, "1: the portal (Marketing Hub Enterprise) has granted the "
                                                       "batch subscription scopes; 0: the batch subscription routes "
                                                       "answer 403 MISSING_SCOPES", _zero_or_one),
    )
    credential = "hubspot_token"
    schema = SCHEMA
    seed_key = "hubspot_contacts"
    control_actions = (
        ControlAction("POST", "bulk-edit", "control_bulk_edit"),
        ControlAction("POST", "restore", "control_restore"),
        ControlAction("GET", "contacts", "control_contacts"),
        ControlAction("POST", "contacts", "control_signup"),
        ControlAction("POST", "batch-subscription-scopes", "control_batch_subscription_scopes"),
    )
    oauth_routes = (
        Route("GET", "/hubspot/oauth/authorize", "oauth_authorize"),
        Route("POST", "/hubspot/oauth/authorize", "oauth_authorize"),
        Route("POST", "/hubspot/oauth/v1/token", "oauth_token"),
    )
    routes = (
        Route("GET", CONTACTS, "list_contacts"),
        Route("POST", CONTACTS, "create_contact", write=True),
        Route("POST", f"{CONTACTS}/search", "search_contacts"),
        Route("GET", f"{CONTACTS}/{{contactId}}", "get_contact"),
        Route("PATCH", f"{CONTACTS}/{{contactId}}", "update_contact", write=True),
        Route("DELETE", f"{CONTACTS}/{{contactId}}", "archive_contact", write=True),
        Route("POST", f"{CONTACTS}/batch/read", "batch_read"),
        Route("POST", f"{CONTACTS}/batch/create", "batch_create", write=True),
        Route("POST", f"{CONTACTS}/batch/update", "batch_update", write=True),
        Route("POST", f"{CONTACTS}/batch/upsert", "batch_upsert", write=True),
        Route("POST", f"{CONTACTS}/batch/archive", "batch_archive", write=True),
        Route("POST", f"{CONTACTS}/gdpr-delete", "gdpr_delete", write=True),
        Route("POST", f"{CONTACTS}/merge", "merge_contacts", write=True),
        Route("POST", "/communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all",
              "unsubscribe_all", write=True),
        Route("POST", "/communication-preferences/v4/statuses/batch/unsubscribe-all", "batch_unsubscribe_all",
              write=True),
        Route("GET", "/crm/v3/properties/contacts", "list_properties"),
        Route("GET", "/crm/v3/properties/contacts/{propertyName}", "get_property"),
    )

    def __init__(self, store: Store, settings: Mapping[str, Any], oauth: OAuthAuthority):
        super().__init__(store, settings, oauth)
        self.token = settings["hubspot_token"]
        self.limit = RollingWindowLimit(settings["hubspot_rate_limit"])
        # The daily count is the general limit's: search requests count there as well.
        self.search_limit = RollingWindowLimit(settings["hubspot_search_rate_limit"], window_seconds=1.0,
                                               daily_limit=None, policy="SECONDLY")
        self.limiters = {"hubspot_rate_limit": self.limit, "hubspot_search_rate_limit": self.search_limit}
        self.batch_subscription_scopes = bool(settings["hubspot_batch_subscription_scopes"])
        store.add_function("hubspot_contains_token", 2, contains_token)
        store.add_function("hubspot_options_contain_token", 2, options_contain_token)
        with store.read() as db:
            (last_ms,) = db.execute("SELECT COALESCE(MAX(modified_ms), 0) FROM hubspot_contact").fetchone()
        # After a restart, changes must still come after the stored ones.
        store.clock.advance_to(last_ms)

    def info(self) -> dict[str, Any]:
        return {"base_path": self.prefix, "stands_for": "https://api.hubapi.com",
                "batch_subscription_scopes": self.batch_subscription_scopes}

    def reset_limits(self) -> None:
        super().reset_limits()
        self.batch_subscription_scopes = bool(self.settings["hubspot_batch_subscription_scopes"])

    # Gateway: credentials, limits, error shapes.

    def authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not header:
            raise HubSpotError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
                "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            raise HubSpotError(401, "The access token provided is not valid.", "INVALID_AUTHENTICATION")
        return self.token

    @contextmanager
    def admitted(self, account: str, route: Route | None) -> Iterator[dict[str, str]]:
        searching = route is not None and route.handler == "search_contacts"
        admission = self.limit.admit(account)
        headers = {
            "X-HubSpot-RateLimit-Daily": str(admission.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(admission.daily_remaining),
        }
        if admission.limit:
            # The per-second figures are informational: the 10-second window is enforced.
            secondly = max(1, admission.limit // 10)
            headers.update({
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.limit.window_seconds * 1000)),
                "X-HubSpot-RateLimit-Max": str(admission.limit),
                "X-HubSpot-RateLimit-Remaining": str(admission.remaining),
                "X-HubSpot-RateLimit-Secondly": str(secondly),
                "X-HubSpot-RateLimit-Secondly-Remaining": str(min(secondly, admission.remaining)),
            })
        if searching:
            # "Responses from the search API endpoints will not include any of the rate
            # limit headers."
            headers = {}
        if not admission.allowed:
            window = "daily" if admission.policy == "DAILY" else "ten_secondly_rolling"
            raise HubSpotRateLimited(admission.policy, f"You have reached your {window} limit.", headers=headers)
        if searching and not self.search_limit.admit(account).allowed:
            self.limit.refund(account)
            raise HubSpotRateLimited("SECONDLY", "You have reached your secondly limit.")
        yield headers

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind == "expired_token":
            return HubSpotError(401, "The OAuth token used to make this call expired 1 minute(s) ago.",
                                "EXPIRED_AUTHENTICATION").response()
        if fault.status == 429:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            return HubSpotRateLimited("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.",
                                      headers=headers).response()
        if fault.status == 500:
            return self.internal_error()
        return gateway_page(fault.status)

    def routing_error(self, status: int) -> Response:
        if status == 405:
            return HubSpotError(405, "Method not allowed for this resource.", "METHOD_NOT_ALLOWED").response()
        return HubSpotError(404, "resource not found", "OBJECT_NOT_FOUND").response()

    def internal_error(self) -> Response:
        return HubSpotError(500, "internal error", "INTERNAL_ERROR").response()

    def json_body(self, request: Request) -> dict[str, Any]:
        try:
            body = parse_json(request)
        except ValueError as error:
            raise bad_request(f"Invalid input JSON: {error}") from None
        if not isinstance(body, dict):
            raise bad_request("Invalid input JSON: expected an object")
        return body

    # Reads.

    def list_contacts(self, request: Request) -> Response:
        limit = self._limit(request.args.get("limit"), default=10, maximum=MAX_LIST_PAGE)
        names = self._requested_properties(request.args.getlist("properties"))
        archived = self._flag(request.args.get("archived"))
        after = request.args.get("after", "0")
        if not after.isdigit():
            raise bad_request(f"after must be a record id cursor, got {after!r}")
        with self.store.read() as db:
            rows = db.execute(LIST_PAGE, (int(archived), int(after), limit + 1)).fetchall()
        contacts = [Contact(row) for row in rows]
        body: dict[str, Any] = {"results": [contact.to_json(names) for contact in contacts[:limit]]}
        if len(contacts) > limit:
            next_after = str(contacts[limit].id)
            body["paging"] = {"next": {"after": next_after,
                                       "link": f"{request.base_url}?after={next_after}&limit={limit}"}}
        return json_response(body)

    def get_contact(self, request: Request, contactId: str) -> Response:
        names = self._requested_properties(request.args.getlist("properties"))
        archived = self._flag(request.args.get("archived"))
        with self.store.read() as db:
            contact = self._find(db, contactId, request.args.get("idProperty"), archived=archived)
        if contact is None:
            raise HubSpotError(404, NOT_FOUND_MESSAGE, "OBJECT_NOT_FOUND", context={"id": [contactId]})
        return json_response(contact.to_json(names))

    def search_contacts(self, request: Request) -> Response:
        body = self.json_body(request)
        limit = self._limit(body.get("limit"), default=10, maximum=MAX_SEARCH_PAGE)
        after = body.get("after") or "0"
        if not str(after).isdigit():
            raise bad_request(f"after must be a non-negative integer offset, got {after!r}")
        offset = int(after)
        if offset >= SEARCH_RESULT_CAP:
            raise bad_request(
                f"Search results are limited to {SEARCH_RESULT_CAP} per query: narrow the filters "
                "(for example on lastmodifieddate) instead of paging further.",
                after=[str(after)],
            )
        where, params = self._search_conditions(body)
        order = self._search_order(body.get("sorts"))
        names = [*SEARCH_BASE_PROPERTIES, *[n for n in self._requested_properties(body.get("properties") or [])
                                             if n not in SEARCH_BASE_PROPERTIES]]
        page_size = min(limit, SEARCH_RESULT_CAP - offset)
        with self.store.read() as db:
            (total,) = db.execute(f"SELECT COUNT(*) FROM hubspot_contact WHERE {where}", params).fetchone()
            rows = db.execute(
                f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, offset],
            ).fetchall()
        reply: dict[str, Any] = {"total": total, "results": [Contact(row).to_json(names) for row in rows]}
        if offset + len(rows) < total:
            reply["paging"] = {"next": {"after": str(offset + len(rows))}}
        return json_response(reply)

    def batch_read(self, request: Request) -> Response:
        body = self.json_body(request)
        inputs = self._inputs(body)
        names = self._requested_properties(body.get("properties") or [])
        id_property = body.get("idProperty")
        archived = self._flag(request.args.get("archived"))
        ids = [self._input_id(item) for item in inputs]
        with self.store.read() as db:
            found = self._find_many(db, ids, id_property, archived=archived)
        results, missing, seen = [], [], set()
        for identifier in ids:
            contact = found.get(self._key(identifier, id_property))
            if contact is None:
                missing.append(identifier)
            elif contact.id not in seen:
                seen.add(contact.id)
                results.append(contact.to_json(names))
        return self._batch_reply(results, missing, "Could not get some CONTACT objects, they may be deleted or "
                                                   "not exist. Check that ids are valid.", success_status=200)

    def list_properties(self, request: Request) -> Response:
        archived = self._flag(request.args.get("archived"))
        results = [] if archived else [property_definition_json(definition) for definition in PROPERTIES]
        return json_response({"results": results})

    def get_property(self, request: Request, propertyName: str) -> Response:
        definition = PROPERTY_BY_NAME.get(propertyName)
        if definition is None:
            raise HubSpotError(404, f"Unable to find property {propertyName}", "OBJECT_NOT_FOUND")
        return json_response(property_definition_json(definition))

    # Writes.

    def create_contact(self, request: Request) -> Response:
        body = self.json_body(request)
        properties = self._clean_properties(body.get("properties"), creating=True)
        with self.store.write() as db:
            self._refuse_taken_emails(db, [properties.get("email")])
            contact = self._insert(db, properties, self.store.clock.tick())
        return json_response(contact.to_json(), 201)

    def update_contact(self, request: Request, contactId: str) -> Response:
        body = self.json_body(request)
        properties = self._clean_properties(body.get("properties"), creating=False)
        if not properties:
            raise bad_request(NO_PROPERTIES_MESSAGE)
        with self.store.write() as db:
            contact = self._find(db, contactId, request.args.get("idProperty"), archived=False)
            if contact is None:
                raise HubSpotError(404, NOT_FOUND_MESSAGE, "OBJECT_NOT_FOUND", context={"id": [contactId]})
            self._refuse_taken_emails(db, [properties.get("email")], ignore_ids={contact.id})
            self._apply(db, [(contact, properties)])
        return json_response(contact.to_json())

    def archive_contact(self, request: Request, contactId: str) -> Response:
        with self.store.write() as db:
            contact = self._find(db, contactId, None, archived=False)
            if contact is not None:
                self._archive(db, [contact.id])
        return Response(status=204)

    def batch_create(self, request: Request) -> Response:
        body = self.json_body(request)
        inputs = self._inputs(body)
        cleaned = [self._clean_properties(item.get("properties"), creating=True) for item in inputs]
        emails = [properties.get("email") for properties in cleaned]
        self._refuse_shared_emails(emails)
        with self.store.write() as db:
            self._refuse_taken_emails(db, emails)
            now_ms = self.store.clock.tick()
            created = [self._insert(db, properties, now_ms) for properties in cleaned]
        return self._batch_reply([contact.to_json() for contact in created], [], "", success_status=201)

    def batch_update(self, request: Request) -> Response:
        body = self.json_body(request)
        inputs = self._inputs(body)
        id_property = body.get("idProperty")
        ids = [self._input_id(item) for item in inputs]
        self._refuse_duplicates([self._key(identifier, id_property) for identifier in ids])
        cleaned = [self._clean_properties(item.get("properties"), creating=False) for item in inputs]
        if not all(cleaned):
            raise bad_request(NO_PROPERTIES_MESSAGE)
        with self.store.write() as db:
            found = self._find_many(db, ids, id_property, archived=False)
            changes, missing = [], []
            for identifier, properties in zip(ids, cleaned, strict=True):
                contact = found.get(self._key(identifier, id_property))
                if contact is None:
                    missing.append(identifier)
                else:
                    changes.append((contact, properties))
            self._refuse_shared_emails([properties.get("email") for _, properties in changes])
            for contact, properties in changes:
                self._refuse_taken_emails(db, [properties.get("email")], ignore_ids={contact.id})
            self._apply(db, changes)
        return self._batch_reply([contact.to_json() for contact, _ in changes], missing,
                                 "Could not get some CONTACT objects, they may be deleted or not exist. "
                                 "Check that ids are valid.", success_status=200)

    def batch_upsert(self, request: Request) -> Response:
        body = self.json_body(request)
        inputs = self._inputs(body)
        plans = []
        for item in inputs:
            identifier = self._input_id(item)
            id_property = item.get("idProperty") or "hs_object_id"
            if id_property not in ("email", "hs_object_id"):
                raise bad_request(f"Unable to perform update/upsert by non-unique property {id_property}")
            properties = self._clean_properties(item.get("properties"), creating=False)
            if id_property == "email":
                email = identifier.strip().lower()
                problem = self._email_problem(email)
                if problem:
                    raise validation_error([problem])
                if properties.get("email") not in (None, email):
                    raise bad_request(f"The email property {properties['email']!r} does not match "
                                      f"the id {identifier!r}")
                properties["email"] = email
                identifier = email
            plans.append((identifier, id_property, properties))
        self._refuse_duplicates([(id_property, identifier) for identifier, id_property, _ in plans])
        with self.store.write() as db:
            by_email = self._find_many(db, [i for i, p, _ in plans if p == "email"], "email", archived=False)
            by_id = self._find_many(db, [i for i, p, _ in plans if p != "email"], None, archived=False)
            self._refuse_taken_emails(db, [i for i, p, _ in plans if p == "email" and i not in by_email])
            updates, inserts, missing, order = [], [], [], []
            for identifier, id_property, properties in plans:
                found = (by_email if id_property == "email" else by_id).get(self._key(identifier, id_property))
                if found is not None:
                    updates.append((found, properties))
                    order.append((found, False))
                elif id_property == "email":
                    inserts.append(properties)
                    order.append((len(inserts) - 1, True))
                else:
                    missing.append(identifier)
            # Emails trimmed and lowercased; an update and an insert may not meet on one.
            self._refuse_shared_emails([properties.get("email") for _, properties in updates]
                                       + [properties["email"] for properties in inserts])
            for contact, properties in updates:
                self._refuse_taken_emails(db, [properties.get("email")], ignore_ids={contact.id})
            now_ms = self.store.clock.tick()
            self._apply(db, updates, at_ms=now_ms)
            created = [self._insert(db, properties, now_ms) for properties in inserts]
        results = [
            created[entry].to_json(new=True) if is_new else entry.to_json(new=False)
            for entry, is_new in order
        ]
        return self._batch_reply(results, missing, "Could not get some CONTACT objects, they may be deleted or "
                                                   "not exist. Check that ids are valid.", success_status=200)

    def batch_archive(self, request: Request) -> Response:
        body = self.json_body(request)
        ids = [self._input_id(item) for item in self._inputs(body)]
        with self.store.write() as db:
            found = self._find_many(db, ids, None, archived=False)
            self._archive(db, sorted({contact.id for contact in found.values()}))
        return Response(status=204)

    def gdpr_delete(self, request: Request) -> Response:
        body = self.json_body(request)
        object_id = body.get("objectId")
        id_property = body.get("idProperty")
        if not isinstance(object_id, str) or not object_id.strip():
            raise bad_request("objectId is required")
        if id_property not in (None, "email", "hs_object_id"):
            raise bad_request(f"idProperty must be email or hs_object_id, got {id_property!r}")
        with self.store.write() as db:
            contact = self._find(db, object_id, id_property, archived=None)
            if contact is None and id_property != "email":
                raise HubSpotError(404, NOT_FOUND_MESSAGE, "OBJECT_NOT_FOUND", context={"id": [object_id]})
            now_ms = self.store.clock.tick()
            email_key = contact.email_key if contact is not None else object_id.strip().lower()
            if contact is not None:
                db.execute("DELETE FROM hubspot_contact WHERE id = ?", (contact.id,))
            if email_key:
                db.execute(
                    "INSERT OR REPLACE INTO hubspot_gdpr_deleted (email_key, contact_id, deleted_ms) VALUES (?, ?, ?)",
                    (email_key, contact.id if contact is not None else None, now_ms),
                )
        return Response(status=204)

    def merge_contacts(self, request: Request) -> Response:
        body = self.json_body(request)
        primary_id, other_id = body.get("primaryObjectId"), body.get("objectIdToMerge")
        for name, value in (("primaryObjectId", primary_id), ("objectIdToMerge", other_id)):
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not value.strip().isdigit():
                raise bad_request(f"{name} must be a contact id", **{name: [str(value)]})
        primary_id, other_id = str(primary_id).strip(), str(other_id).strip()
        if primary_id == other_id:
            raise bad_request("A contact cannot be merged with itself", objectIdToMerge=[other_id])
        with self.store.write() as db:
            found = self._find_many(db, [primary_id, other_id], None, archived=False)
            missing = [identifier for identifier in (primary_id, other_id) if identifier not in found]
            if missing:
                raise HubSpotError(404, NOT_FOUND_MESSAGE, "OBJECT_NOT_FOUND", context={"id": missing})
            primary, other = found[primary_id], found[other_id]
            db.execute("DELETE FROM hubspot_contact WHERE id = ?", (other.id,))
            self._apply(db, [(primary, self._merged_properties(primary, other))])
        return json_response(primary.to_json())

    @staticmethod
    def _merged_properties(primary: Contact, other: Contact) -> dict[str, str | None]:
        """Return what merging `other` into `primary` changes on the primary."""
        changes: dict[str, str | None] = {
            name: value for name, value in other.properties.items()
            if value not in (None, "") and primary.properties.get(name) in (None, "")
            and name not in ("hs_merged_object_ids", "hs_additional_emails")
        }
        stages = [contact.properties.get("lifecyclestage") for contact in (primary, other)]
        known = [stage for stage in stages if stage in LIFECYCLE_STAGES]
        if known:
            changes["lifecyclestage"] = max(known, key=LIFECYCLE_STAGES.index)
        merged_ids = [*_listed(primary.properties.get("hs_merged_object_ids")), str(other.id),
                      *_listed(other.properties.get("hs_merged_object_ids"))]
        changes["hs_merged_object_ids"] = ";".join(dict.fromkeys(merged_ids))
        emails = [*_listed(primary.properties.get("hs_additional_emails")), other.properties.get("email"),
                  *_listed(other.properties.get("hs_additional_emails"))]
        kept = changes.get("email") or primary.properties.get("email")
        additional = [email for email in dict.fromkeys(emails) if email and email != kept]
        if additional:
            changes["hs_additional_emails"] = ";".join(additional)
        return changes

    def unsubscribe_all(self, request: Request, subscriberIdString: str) -> Response:
        if request.args.get("channel") != "EMAIL":
            raise bad_request("channel is required: EMAIL is the only channel",
                              channel=[request.args.get("channel", "")])
        email = subscriberIdString.strip().lower()
        if email_problem(email):
            raise bad_request(f"{subscriberIdString} is not a valid email address", subscriberIdString=[email])
        started = iso_ms(int(datetime.now(UTC).timestamp() * 1000))
        with self.store.write() as db:
            self._opt_out(db, [email], self.store.clock.tick())
        # The per-subscription details come only with `verbose=true`; they are not emulated.
        return json_response({"status": "COMPLETE", "results": [], "requestedAt": started, "startedAt": started,
                              "completedAt": iso_ms(int(datetime.now(UTC).timestamp() * 1000))})

    def batch_unsubscribe_all(self, request: Request) -> Response:
        if not self.batch_subscription_scopes:
            raise HubSpotError(
                403,
                "This app hasn't been granted all required scopes to make this call. Read more about required "
                "scopes here: https://developers.hubspot.com/scopes.",
                "MISSING_SCOPES",
                errors=[{"message": "One or more of the following scopes are required.",
                         "context": {"requiredGranularScopes": [BATCH_SUBSCRIPTION_SCOPE]}}],
            )
        if request.args.get("channel") != "EMAIL":
            raise bad_request("channel is required: EMAIL is the only channel",
                              channel=[request.args.get("channel", "")])
        inputs = self.json_body(request).get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
            raise bad_request("inputs must be a non-empty list of email addresses (strings)")
        if len(inputs) > MAX_SUBSCRIPTION_BATCH:
            raise bad_request(f"Batch input limit exceeded: {len(inputs)} inputs given, at most "
                              f"{MAX_SUBSCRIPTION_BATCH} allowed")
        self._refuse_duplicates([item.strip().lower() for item in inputs])
        valid, errors = [], []
        for item in inputs:
            email = item.strip().lower()
            if email_problem(email):
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": f"{item} is not a valid email address",
                               "context": {"subscriberIdString": [item]}, "links": {}, "errors": []})
            else:
                valid.append(email)
        started = iso_ms(int(datetime.now(UTC).timestamp() * 1000))
        if valid:
            with self.store.write() as db:
                self._opt_out(db, valid, self.store.clock.tick())
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": [{"subscriberIdString": email, "statuses": []} for email in valid],
            "requestedAt": started,
            "startedAt": started,
            "completedAt": iso_ms(int(datetime.now(UTC).timestamp() * 1000)),
        }
        if not errors:
            return json_response(body)
        return json_response({**body, "numErrors": len(errors), "errors": errors}, 207)

    # What the control actions below do.

    def restore(self, ids: list[str]) -> list[Contact]:
        """Bring archived contacts back, as HubSpot's recycle bin does; return them.

        Restoring is a change: each contact gets a new `lastmodifieddate`. Raise HubSpot's
        409 when a live contact holds the address meanwhile.
        """
        with self.store.write() as db:
            found = self._find_many(db, ids, None, archived=True)
            contacts = sorted(found.values(), key=lambda contact: contact.id)
            for contact in contacts:
                self._refuse_taken_emails(db, [contact.email_key])
            if contacts:
                now_ms = self.store.clock.tick()
                db.executemany("UPDATE hubspot_contact SET archived = 0, archived_ms = NULL, modified_ms = ? "
                               "WHERE id = ?", [(now_ms, contact.id) for contact in contacts])
                for contact in contacts:
                    contact.archived, contact.archived_ms, contact.modified_ms = False, None, now_ms
            return contacts

    def signup(self, properties: Any) -> Contact:
        """Create a contact the way the person's own form submission does, past the GDPR blocklist.

        Through the API an address deleted under GDPR can never be created again; the
        person can still come back by themselves, on a HubSpot form or page. This stands
        for that (the deletion tests' "a system that holds the person again"). Whether
        HubSpot then lifts the blocklist is not documented: the entry stays. Raise
        HubSpot's 400 for values it refuses, its 409 when a live contact holds the address.
        """
        cleaned = self._clean_properties(properties, creating=True)
        with self.store.write() as db:
            email = cleaned.get("email")
            if email:
                for (contact_id,) in db.execute(
                    "SELECT id FROM hubspot_contact WHERE archived = 0 AND email_key = ?", (email,)
                ):
                    raise HubSpotError(409, f"Contact already exists. Existing ID: {contact_id}", "CONFLICT")
            return self._insert(db, cleaned, self.store.clock.tick())

    def bulk_edit(self, ids: list[str] | None, properties: Any) -> list[Contact]:
        """Set `properties` on these live contacts (every live one when None) in one instant.

        Stands in for HubSpot's bulk edits, imports and workflows, which can stamp many
        contacts with the same `lastmodifieddate`. Return the contacts changed; raise
        HubSpot's 400 for values it refuses.
        """
        cleaned = self._clean_properties(properties, creating=False)
        if "email" in cleaned:
            raise bad_request("A bulk edit cannot set emails: they must stay unique")
        with self.store.write() as db:
            if ids is None:
                rows = db.execute(f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE archived = 0 ORDER BY id")
                contacts = [Contact(row) for row in rows.fetchall()]
            else:
                contacts = sorted(self._find_many(db, ids, None, archived=False).values(), key=lambda c: c.id)
            return self._apply(db, [(contact, dict(cleaned)) for contact in contacts])

    # Sandbox control: what people do in HubSpot's pages, and dumps for the tests.

    def control_bulk_edit(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"ids": ["101", ...], "properties": {...}}` (no `ids`: every live contact)."""
        refuse_unknown_keys(body, {"ids", "properties"})
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise ControlError("ids must be a list of contact ids (strings), or left out for every contact")
        if not isinstance(body.get("properties"), dict) or not body["properties"]:
            raise ControlError("properties must be an object naming at least one property")
        try:
            changed = self.bulk_edit(ids, body["properties"])
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return {"edited": len(changed), "lastmodifieddate": iso_ms(changed[0].modified_ms) if changed else None}

    def control_restore(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"ids": ["101", ...]}`: bring archived contacts back from the recycle bin."""
        refuse_unknown_keys(body, {"ids"})
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ControlError("ids must be a non-empty list of contact ids (strings)")
        try:
            restored = self.restore(ids)
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return {"restored": len(restored)}

    def control_signup(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"properties": {"email": "...", ...}}`: the person signs up again on a HubSpot form."""
        refuse_unknown_keys(body, {"properties"})
        if not isinstance(body.get("properties"), dict) or not body["properties"]:
            raise ControlError("properties must be an object naming at least one property")
        try:
            contact = self.signup(body["properties"])
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return contact.to_json()

    def control_contacts(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every stored contact, archived ones included, and the GDPR blocklist."""
        with self.store.read() as db:
            rows = db.execute(f"SELECT {ROW_COLUMNS} FROM hubspot_contact ORDER BY id").fetchall()
            deleted = db.execute("SELECT email_key, contact_id, deleted_ms FROM hubspot_gdpr_deleted "
                                 "ORDER BY deleted_ms").fetchall()
        return {
            "contacts": [Contact(row).to_json() for row in rows],
            "gdpr_deleted": [{"email": email, "id": str(contact_id) if contact_id else None,
                              "deletedAt": iso_ms(deleted_ms)} for email, contact_id, deleted_ms in deleted],
        }

    def control_batch_subscription_scopes(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"granted": false}`: whether the portal has granted the batch subscription scopes, until the next reset."""
        refuse_unknown_keys(body, {"granted"})
        if not isinstance(body.get("granted"), bool):
            raise ControlError("granted must be true or false")
        self.batch_subscription_scopes = body["granted"]
        return {"granted": self.batch_subscription_scopes}

    # OAuth (stands for https://app.hubspot.com/oauth/authorize and https://api.hubapi.com/oauth/v1/token).

    def oauth_token(self, request: Request) -> Response:
        """Form-encoded `grant_type=authorization_code` (code, redirect_uri[, code_verifier]) or
        `grant_type=refresh_token` (refresh_token), with client_id and client_secret in the body
        or as HTTP Basic. Reply `{access_token, refresh_token, expires_in, token_type}`."""
        if not self.oauth.client_ok(request):
            return oauth_error("BAD_CLIENT_ID", "missing or unknown client id or secret")
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            grant, error = self.oauth.exchange_code(request, self.name, refreshable=True)
            if error:
                return oauth_error("BAD_AUTH_CODE", error)
            return json_response(self.oauth.issue(grant))
        if grant_type == "refresh_token":
            grant = self.oauth.refresh(self.name, request.form.get("refresh_token", ""))
            if grant is None:
                return oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
            return json_response(self.oauth.issue(grant))
        return oauth_error("BAD_GRANT_TYPE", "grant_type must be authorization_code or refresh_token")

    def oauth_expired(self, seconds_ago: int) -> Response:
        return HubSpotError(401, f"The OAuth token used to make this call expired {seconds_ago} second(s) ago.",
                            "EXPIRED_AUTHENTICATION").response()

    # Seeding (see `sandbox.seed`).

    def seed(self, db: sqlite3.Connection, rng: random.Random, people: list[Person],
             hostile_records: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the people as contacts of a portal with years of imports behind it, then the
        hostile records verbatim, each address once.

        Some break the rules the API enforces on writes, on purpose: about 1% have a
        malformed email and 0.5% none at all; about 1% are the same person again under
        another email, with the same name and phone; phones come in many shapes, about 1%
        of them garbage; about 5% opted out of email. What no portal holds, however old, is
        one address twice: a contact whose address a live contact already holds (a twin by
        case in the hostile records, or an address created through the API before the seed)
        is refused as the API would refuse it, and listed in the reply; a contact seeded
        with an address unsubscribed before reads opted out.
        """
        rows = self._seed_rows(rng, people)
        hostile_rows = [_hostile_row(record) for record in hostile_records]
        refused = self._write_seeded(db, rng, rows + hostile_rows)
        refused_rows = {id(row) for row, _ in refused}
        return {"hubspot_contacts": sum(1 for row in rows if id(row) not in refused_rows),
                "hostile_contacts": sum(1 for row in hostile_rows if id(row) not in refused_rows),
                "hubspot_refused": [{"email": _seed_key(row), "message": message} for row, message in refused]}

    @staticmethod
    def _seed_rows(rng: random.Random, people: list[Person]) -> list[dict[str, str]]:
        rows = []
        for index, person in enumerate(people):
            properties = {"firstname": person.firstname, "lastname": person.lastname, "email": person.email}
            roll = rng.random()
            if roll < 0.01:
                properties["email"] = rng.choice((
                    person.email.rsplit(".", 1)[0], person.email.replace("@", "@@"), person.email.replace(".", "..", 1),
                    person.email.replace("@", " at "), person.email.replace("@", " @"),
                ))
            elif roll < 0.015:
                del properties["email"]
            elif roll < 0.025 and index:
                previous = people[index - 1]
                properties.update(firstname=previous.firstname, lastname=previous.lastname)
                # The same person again: the other systems see the shared phone too.
                person.phone = previous.phone or person.phone
            if person.phone:
                properties["phone"] = person.phone
            if person.company:
                properties["company"] = person.company
                properties["jobtitle"] = rng.choice(SEED_JOB_TITLES)
            optout = rng.random()
            if optout < 0.05:
                properties[OPTOUT] = "true"
            elif optout < 0.35:
                properties[OPTOUT] = "false"
            properties["lifecyclestage"] = rng.choices(LIFECYCLE_STAGES, SEED_LIFECYCLE_WEIGHTS)[0]
            if rng.random() < 0.5:
                city, state, postal_code, country = rng.choice(SEED_CITIES)
                properties.update(city=city, zip=postal_code, country=country)
                if state:
                    properties["state"] = state
            rows.append({name: value for name, value in properties.items() if value})
        return rows

    def _write_seeded(self, db: sqlite3.Connection, rng: random.Random,
                      rows: list[dict[str, str]]) -> list[tuple[dict[str, str], str]]:
        """Insert `rows` as contacts, each address once; return the rows refused, with HubSpot's reason."""
        rows, refused = self._one_per_address(db, rows)
        if not rows:
            return refused
        opted_out = {key for (key,) in lookup(
            db, "SELECT email_key FROM hubspot_email_optout WHERE email_key IN ({marks})",
            sorted({key for key in map(_seed_key, rows) if key}))}
        for properties in rows:
            if _seed_key(properties) in opted_out:
                properties[OPTOUT] = "true"
        now_ms = int(time.time() * 1000)
        # Seeded changes happened in the past year, but never before a change the sandbox
        # already handed out: a delta cursor must not miss them.
        start = max(self.store.clock.last_ms + 1, now_ms - YEAR_MS)
        end = max(now_ms, start + len(rows))
        modified = sorted(rng.sample(range(start, end), len(rows)))
        rng.shuffle(modified)
        db.executemany(
            "INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms) VALUES (?, ?, ?, ?)",
            [(_seed_key(properties), json.dumps(properties, ensure_ascii=False),
              changed - rng.randrange(0, YEAR_MS // 2), changed)
             for properties, changed in zip(rows, modified, strict=True)],
        )
        # Seeded opt-outs hold for their addresses, as the subscriptions API's do.
        db.executemany(
            "INSERT OR IGNORE INTO hubspot_email_optout (email_key, opted_out_ms) VALUES (?, ?)",
            [(_seed_key(properties), changed) for properties, changed in zip(rows, modified, strict=True)
             if properties.get(OPTOUT) == "true" and _seed_key(properties)],
        )
        self.store.clock.advance_to(max(modified))
        if refused:
            # A twin within the seed names the contact seeded first, known only now.
            holders = self._holders(db, [_seed_key(row) for row, _ in refused])
            refused = [(row, message or f"Contact already exists. Existing ID: {holders[_seed_key(row)]}")
                       for row, message in refused]
        return refused

    @staticmethod
    def _one_per_address(db: sqlite3.Connection,
                         rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[tuple[dict, str]]]:
        """Split `rows` into those HubSpot would take and those it refuses, with the reason ("" when
        the address goes to an earlier row of this seed): an address held already, or blocklisted."""
        keys = sorted({key for key in map(_seed_key, rows) if key})
        holders = HubSpotAPI._holders(db, keys)
        blocklisted = {key for (key,) in lookup(
            db, "SELECT email_key FROM hubspot_gdpr_deleted WHERE email_key IN ({marks})", keys)}
        kept, refused, seen = [], [], set()
        for row in rows:
            key = _seed_key(row)
            if key in holders:
                refused.append((row, f"Contact already exists. Existing ID: {holders[key]}"))
            elif key in blocklisted:
                refused.append((row, f"Email address {key} was permanently deleted and is blocklisted"))
            elif key in seen:
                refused.append((row, ""))
            else:
                kept.append(row)
                if key:
                    seen.add(key)
        return kept, refused

    @staticmethod
    def _holders(db: sqlite3.Connection, keys: list[str]) -> dict[str, int]:
        """Return the id of the live contact holding each of these addresses, where one does."""
        return dict(lookup(db, "SELECT email_key, MIN(id) FROM hubspot_contact WHERE archived = 0 "
                               "AND email_key IN ({marks}) GROUP BY email_key", keys))

    # Helpers: parsing.

    @staticmethod
    def _limit(raw: Any, *, default: int, maximum: int) -> int:
        if raw is None or raw == "":
            return default
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            raise bad_request(f"limit must be an integer, got {raw!r}") from None
        if not 1 <= limit <= maximum:
            raise bad_request(f"limit must be between 1 and {maximum}, got {limit}")
        return limit

    @staticmethod
    def _flag(raw: str | None) -> bool:
        return (raw or "").lower() == "true"

    @staticmethod
    def _requested_properties(raw: Any) -> list[str]:
        """Return the property names asked for (comma-separated or repeated); defaults when none."""
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
            raise bad_request("properties must be a list of property names")
        names = [name.strip() for chunk in raw for name in chunk.split(",") if name.strip()]
        return list(dict.fromkeys(names)) or list(DEFAULT_PROPERTIES)

    @staticmethod
    def _inputs(body: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
            raise bad_request("inputs must be a list of objects")
        if len(inputs) > MAX_BATCH:
            raise bad_request(f"Batch input limit exceeded: {len(inputs)} inputs given, at most {MAX_BATCH} allowed")
        return inputs

    @staticmethod
    def _input_id(item: dict[str, Any]) -> str:
        identifier = item.get("id")
        if isinstance(identifier, int) and not isinstance(identifier, bool):
            identifier = str(identifier)
        if not isinstance(identifier, str) or not identifier.strip():
            raise bad_request("Every input needs an id")
        return identifier.strip()

    @staticmethod
    def _key(identifier: str, id_property: str | None) -> str:
        return identifier.strip().lower() if id_property == "email" else identifier.strip()

    @staticmethod
    def _refuse_duplicates(keys: list) -> None:
        seen, duplicates = set(), []
        for key in keys:
            if key in seen:
                duplicates.append(key[1] if isinstance(key, tuple) else key)
            seen.add(key)
        if duplicates:
            raise bad_request(f"Duplicate IDs found in batch input: {sorted(set(map(str, duplicates)))}")

    @staticmethod
    def _refuse_shared_emails(emails: list[str | None]) -> None:
        """Refuse a batch that would give one address (already lowercased) to two contacts."""
        seen, shared = set(), set()
        for email in emails:
            if email:
                (shared if email in seen else seen).add(email)
        if shared:
            raise HubSpotError(409, f"Contact already exists: more than one input holds {', '.join(sorted(shared))}",
                               "CONFLICT")

    @staticmethod
    def _email_problem(email: str) -> dict[str, str] | None:
        if email_problem(email):
            return {"name": "email", "error": "INVALID_EMAIL", "message": f"Email address {email} is invalid"}
        return None

    def _clean_properties(self, raw: Any, *, creating: bool) -> dict[str, str | None]:
        """Validate property values to write; None means "clear". Raise HubSpot's 400 on any problem."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise bad_request("properties must be an object of property names to string values")
        cleaned: dict[str, str | None] = {}
        problems = []
        for name, value in raw.items():
            definition = PROPERTY_BY_NAME.get(name)
            if definition is None:
                problems.append({"name": name, "error": "PROPERTY_DOESNT_EXIST",
                                 "message": f'Property "{name}" does not exist'})
                continue
            if definition.read_only:
                problems.append({"name": name, "error": "READ_ONLY_VALUE",
                                 "message": f'"{name}" is a read only property; its value cannot be set.'})
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = str(value)
            elif value is not None and not isinstance(value, str):
                problems.append({"name": name, "error": "INVALID_TYPE",
                                 "message": f"{value!r} is not a valid value for {name}: expected a string"})
                continue
            if value is None or value == "":
                if not creating:
                    cleaned[name] = None
                continue
            if len(value) > MAX_VALUE_LENGTH:
                problems.append({"name": name, "error": "INVALID_LENGTH",
                                 "message": f"{name} is longer than {MAX_VALUE_LENGTH} characters"})
                continue
            if name == "email":
                value = value.strip().lower()
                problem = self._email_problem(value)
                if problem:
                    problems.append(problem)
                    continue
            elif definition.options and value not in definition.options:
                problems.append({"name": name, "error": "INVALID_OPTION",
                                 "message": f"{value} was not one of the allowed options: "
                                            f"[{', '.join(definition.options)}]"})
                continue
            cleaned[name] = value
        if problems:
            raise validation_error(problems)
        return cleaned

    def _search_conditions(self, body: dict[str, Any]) -> tuple[str, list[Any]]:
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or not all(isinstance(group, dict) for group in groups):
            raise bad_request("filterGroups must be a list of objects")
        if len(groups) > MAX_FILTER_GROUPS:
            raise bad_request(f"Too many filter groups: at most {MAX_FILTER_GROUPS} are allowed")
        total_filters = 0
        group_sql, params = [], []
        for group in groups:
            filters = group.get("filters") or []
            if not isinstance(filters, list) or not all(isinstance(item, dict) for item in filters):
                raise bad_request("filters must be a list of objects")
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise bad_request(f"Too many filters in a group: at most {MAX_FILTERS_PER_GROUP} are allowed")
            total_filters += len(filters)
            conditions = []
            for item in filters:
                sql, values = self._condition(item)
                conditions.append(sql)
                params.extend(values)
            if conditions:
                group_sql.append("(" + " AND ".join(conditions) + ")")
        if total_filters > MAX_FILTERS:
            raise bad_request(f"Too many filters: at most {MAX_FILTERS} are allowed across all groups")
        where = ["archived = 0"]
        if group_sql:
            where.append("(" + " OR ".join(group_sql) + ")")
        query = body.get("query")
        if query is not None:
            if not isinstance(query, str):
                raise bad_request("query must be a string")
            if query.strip():
                where.append("(" + " OR ".join(
                    f"instr(lower({self._column(name)}), ?) > 0" for name in SEARCHED_BY_QUERY) + ")")
                params.extend([query.strip().lower()] * len(SEARCHED_BY_QUERY))
        return " AND ".join(where), params

    @staticmethod
    def _column(name: str) -> str:
        """Return the SQL expression for a (validated) property name."""
        if name in COLUMN_OF:
            return COLUMN_OF[name]
        return f"json_extract(properties, '$.\"{name}\"')"

    def _operand(self, definition: PropertyDefinition, raw: Any) -> Any:
        if raw is None or isinstance(raw, (dict, list)):
            raise bad_request(f"The filter on {definition.name} needs a value")
        if definition.type == "datetime":
            moment = parse_timestamp(raw)
            if moment is None:
                raise bad_request(f"{raw!r} is not a valid datetime for {definition.name}: "
                                  "use epoch milliseconds or ISO 8601")
            return moment
        if definition.type == "number":
            try:
                return int(str(raw))
            except ValueError:
                raise bad_request(f"{raw!r} is not a valid number for {definition.name}") from None
        if isinstance(raw, bool):
            return "true" if raw else "false"
        return str(raw).lower()

    def _condition(self, item: dict[str, Any]) -> tuple[str, list[Any]]:
        name, operator = item.get("propertyName"), item.get("operator")
        definition = PROPERTY_BY_NAME.get(name) if isinstance(name, str) else None
        if definition is None:
            raise bad_request(f"There is no property named {name!r} to filter on", propertyName=[str(name)])
        column = self._column(name)
        textual = name not in COLUMN_OF
        compared = f"lower({column})" if textual else column
        missing = f"{column} IS NULL OR {column} = '' OR " if textual else ""
        if operator == "HAS_PROPERTY":
            return (f"({column} IS NOT NULL AND {column} != '')" if textual else "1"), []
        if operator == "NOT_HAS_PROPERTY":
            return (f"({column} IS NULL OR {column} = '')" if textual else "0"), []
        if operator in ("EQ", "NEQ", "LT", "LTE", "GT", "GTE"):
            value = self._operand(definition, item.get("value"))
            sql_operator = {"EQ": "=", "NEQ": "!=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}[operator]
            if operator == "NEQ":
                return f"({missing}{compared} != ?)", [value]
            return f"{compared} {sql_operator} ?", [value]
        if operator == "BETWEEN":
            low = self._operand(definition, item.get("value"))
            high = self._operand(definition, item.get("highValue"))
            return f"{compared} BETWEEN ? AND ?", [low, high]
        if operator in ("IN", "NOT_IN"):
            raw_values = item.get("values")
            if not isinstance(raw_values, list) or not raw_values:
                raise bad_request(f"The {operator} filter on {name} needs a non-empty values list")
            values = [self._operand(definition, value) for value in raw_values]
            marks = ", ".join("?" * len(values))
            if operator == "IN":
                return f"{compared} IN ({marks})", values
            return f"({missing}{compared} NOT IN ({marks}))", values
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            value = item.get("value")
            if not isinstance(value, str) or not value:
                raise bad_request(f"The {operator} filter on {name} needs a string value")
            # A multiple-value property ("a;b") has a token per option.
            multiple = definition.field_type == "checkbox"
            function = "hubspot_options_contain_token" if multiple else "hubspot_contains_token"
            test = f"{function}(CAST({column} AS TEXT), ?)"
            return (test if operator == "CONTAINS_TOKEN" else f"NOT {test}"), [value]
        raise bad_request(f"Unknown filter operator {operator!r}")

    def _search_order(self, sorts: Any) -> str:
        if not sorts:
            return "id ASC"
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise bad_request("sorts takes at most one sort")
        sort = sorts[0]
        if isinstance(sort, str):
            name, direction = (sort[1:], "DESCENDING") if sort.startswith("-") else (sort, "ASCENDING")
        elif isinstance(sort, dict):
            name, direction = sort.get("propertyName"), sort.get("direction", "ASCENDING")
        else:
            raise bad_request("a sort is a property name or {propertyName, direction}")
        if name not in PROPERTY_BY_NAME:
            raise bad_request(f"There is no property named {name!r} to sort on")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise bad_request("direction must be ASCENDING or DESCENDING")
        column = self._column(name) if name in COLUMN_OF else f"lower({self._column(name)})"
        sql_direction = "ASC" if direction == "ASCENDING" else "DESC"
        return f"{column} {sql_direction}, id {sql_direction}"

    # Helpers: storage.

    @staticmethod
    def _find(db: sqlite3.Connection, identifier: str, id_property: str | None, *,
              archived: bool | None) -> Contact | None:
        """Return the contact with this id (or email, by `id_property`); `archived` None finds either."""
        state = "" if archived is None else f" AND archived = {int(archived)}"
        if id_property == "email":
            row = db.execute(
                f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE email_key = ?{state} ORDER BY id LIMIT 1",
                (identifier.strip().lower(),),
            ).fetchone()
        elif identifier.isdigit():
            row = db.execute(f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE id = ?{state}",
                             (int(identifier),)).fetchone()
        else:
            row = None
        return Contact(row) if row else None

    @staticmethod
    def _find_many(db: sqlite3.Connection, identifiers: list[str], id_property: str | None, *,
                   archived: bool) -> dict[str, Contact]:
        """Return the contacts found, keyed by id (or lowercased email)."""
        if id_property == "email":
            keys = sorted({identifier.strip().lower() for identifier in identifiers})
            column = "email_key"
        else:
            keys = sorted({int(identifier) for identifier in identifiers if identifier.strip().isdigit()})
            column = "id"
        if not keys:
            return {}
        rows = db.execute(
            f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE archived = ? AND {column} IN "
            f"({', '.join('?' * len(keys))}) ORDER BY id DESC",
            [int(archived), *keys],
        ).fetchall()
        # Ordered newest first so that, for legacy duplicates, the oldest contact wins.
        found = {}
        for row in rows:
            contact = Contact(row)
            found[contact.email_key if id_property == "email" else str(contact.id)] = contact
        return found

    def _refuse_taken_emails(self, db: sqlite3.Connection, emails: list[str | None], *,
                             ignore_ids: set[int] = frozenset()) -> None:
        keys = [email for email in emails if email]
        if not keys:
            return
        marks = ", ".join("?" * len(keys))
        blocked = [row[0] for row in db.execute(
            f"SELECT email_key FROM hubspot_gdpr_deleted WHERE email_key IN ({marks})", keys)]
        if blocked:
            raise validation_error([{"name": "email", "error": "BLOCKLISTED_EMAIL",
                                     "message": f"Email address {email} was permanently deleted and is blocklisted"}
                                    for email in blocked])
        for (contact_id,) in db.execute(
            f"SELECT id FROM hubspot_contact WHERE archived = 0 AND email_key IN ({marks}) ORDER BY id", keys
        ):
            if contact_id not in ignore_ids:
                raise HubSpotError(409, f"Contact already exists. Existing ID: {contact_id}", "CONFLICT")

    def _insert(self, db: sqlite3.Connection, properties: dict[str, str | None], now_ms: int) -> Contact:
        email_key = properties.get("email")
        if self._opted_out(db, email_key):
            properties = {**properties, OPTOUT: "true"}
        stored = json.dumps({name: value for name, value in properties.items() if value is not None},
                            ensure_ascii=False)
        (contact_id,) = db.execute(
            "INSERT INTO hubspot_contact (email_key, properties, created_ms, modified_ms) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (email_key, stored, now_ms, now_ms),
        ).fetchone()
        return Contact((contact_id, email_key, stored, now_ms, now_ms, 0, None))

    def _apply(self, db: sqlite3.Connection, changes: list[tuple[Contact, dict[str, str | None]]], *,
               at_ms: int | None = None) -> list[Contact]:
        """Write property changes; the contacts whose values really change get one new modification time.

        `at_ms` is the request's instant when the caller has taken it. Return the contacts changed.
        """
        changed = []
        for contact, properties in changes:
            if properties.get("email") and self._opted_out(db, properties["email"]):
                # The new address was unsubscribed from all email: the contact reads so.
                properties = {**properties, OPTOUT: "true"}
            updated = dict(contact.properties)
            for name, value in properties.items():
                if value is None:
                    updated.pop(name, None)
                else:
                    updated[name] = value
            if updated != contact.properties:
                contact.properties = updated
                if "email" in properties:
                    contact.email_key = properties["email"]
                changed.append(contact)
        if not changed:
            return changed
        now_ms = self.store.clock.tick() if at_ms is None else at_ms
        for contact in changed:
            contact.modified_ms = now_ms
        db.executemany(
            "UPDATE hubspot_contact SET properties = ?, email_key = ?, modified_ms = ? WHERE id = ?",
            [(json.dumps(contact.properties, ensure_ascii=False), contact.email_key, contact.modified_ms, contact.id)
             for contact in changed],
        )
        return changed

    def _opt_out(self, db: sqlite3.Connection, emails: list[str], now_ms: int) -> None:
        """Unsubscribe these addresses (trimmed and lowercased) from all email: every contact holding one reads so."""
        db.executemany("INSERT OR IGNORE INTO hubspot_email_optout (email_key, opted_out_ms) VALUES (?, ?)",
                       [(email, now_ms) for email in emails])
        rows = db.execute(f"SELECT {ROW_COLUMNS} FROM hubspot_contact WHERE email_key IN "
                          f"({', '.join('?' * len(emails))})", emails).fetchall()
        self._apply(db, [(Contact(row), {OPTOUT: "true"}) for row in rows], at_ms=now_ms)

    @staticmethod
    def _opted_out(db: sqlite3.Connection, email_key: str | None) -> bool:
        return bool(email_key) and db.execute(
            "SELECT 1 FROM hubspot_email_optout WHERE email_key = ?", (email_key,)).fetchone() is not None

    def _archive(self, db: sqlite3.Connection, contact_ids: list[int]) -> None:
        if not contact_ids:
            return
        now_ms = self.store.clock.tick()
        db.executemany(
            "UPDATE hubspot_contact SET archived = 1, archived_ms = ?, modified_ms = ? WHERE id = ?",
            [(now_ms, now_ms, contact_id) for contact_id in contact_ids],
        )

    @staticmethod
    def _batch_reply(results: list[dict], missing: list[str], missing_message: str, *,
                     success_status: int) -> Response:
        now = iso_ms(int(datetime.now(UTC).timestamp() * 1000))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if not missing:
            return json_response(body, success_status)
        body["numErrors"] = 1
        body["errors"] = [{
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": missing_message,
            "context": {"ids": missing},
            "links": {},
            "errors": [],
        }]
        return json_response(body, 207)


def oauth_error(status: str, message: str) -> Response:
    """Return the 400 of HubSpot's token endpoint: `{status: "BAD_REFRESH_TOKEN", message, correlationId}`."""
    return json_response({"status": status, "message": message, "correlationId": secrets.token_hex(8)}, 400)


def _seed_key(properties: dict[str, str]) -> str | None:
    """Return HubSpot's key for a seeded contact's address: trimmed and lowercased, None without one."""
    return (properties.get("email") or "").strip().lower() or None


def _hostile_row(record: dict[str, Any]) -> dict[str, str]:
    """Return a hostile record as the properties of a contact, verbatim (the shared file's `birthday`
    is HubSpot's `date_of_birth`; `why` explains the record and is not stored)."""
    return {SEED_HOSTILE_PROPERTY.get(name, name): str(value) for name, value in record.items()
            if name not in SEED_SKIPPED_KEYS and value is not None}
