"""Control endpoints under `/_sandbox/`, for the demo, the tests and the benchmarks.

They need no credentials and are not counted in the stats. Bodies and replies are JSON;
a malformed body gets a 400 `{"error": "..."}` that names the problem.

GET    /_sandbox/info
    The base paths, the Mailchimp audience id and datacenter, the limits in force.
POST   /_sandbox/seed
    `{"hubspot_contacts": N, "mailchimp_members": M, "hostile": false, "random_seed": null}`
    Add N realistic HubSpot contacts and M Mailchimp members (see `sandbox.seed`), plus
    the shared hostile records in HubSpot with `hostile`. Replies with the counts, and
    `hubspot_refused`: `[{email, message}]` for contacts HubSpot would refuse (an address
    a live contact holds already, in any letter case).
POST   /_sandbox/faults
    `{"provider": "hubspot"|"mailchimp"|"all", "rate": 0.2, "statuses": [429, 500, 502, 503],
    "latency_ms": 0, "reset_rate": 0.0, "lost_reply_rate": 0.0, "expire_tokens": false,
    "count": null, "retry_after": null, "after_write": false, "random_seed": null}`
    Replace the provider's fault plan. Each request then waits `latency_ms`, and is
    dropped without a reply with probability `reset_rate`, or answered with one of
    `statuses` (in the provider's own shape; 502-504 as a gateway's HTML page) with
    probability `rate`, or carried out and its reply then lost (the connection dropped,
    or a gateway's 504) with probability `lost_reply_rate`. `expire_tokens` answers
    every request with the provider's 401 for expired credentials. `count` caps how many
    faults are injected (latency goes on). `retry_after` adds that Retry-After header to
    injected 429s. `after_write` carries the request out first and injects any fault in
    place of its reply.
GET    /_sandbox/faults       The plans in force, with how many faults each injected.
DELETE /_sandbox/faults       Clear every plan.
GET    /_sandbox/stats
    `{"requests": {"hubspot": {"POST /crm/v3/objects/contacts/search": n, ...},
    "mailchimp": {"PUT /lists/{list_id}/members/{subscriber_hash}": n, ...}}, "total": n,
    "writes": n, "statuses": {"hubspot": {"200": n, "429": n, "reset": n}, ...}}`: every
    request to an emulated API, by route template, whatever its outcome; `writes`
    counts the requests that ask for a change.
POST   /_sandbox/stats/reset  Zero the stats.
GET    /_sandbox/limits
    `{"hubspot_rate_limit": 190, "hubspot_search_rate_limit": 5, "mailchimp_max_connections": 10}`
POST   /_sandbox/limits       Change any of them (0 turns it off) until the next reset.
POST   /_sandbox/reset
    Wipe both providers' data (the audience keeps its standard merge fields), forget
    rate-limit history and restore the limits the sandbox started with.
POST   /_sandbox/hubspot/bulk-edit
    `{"ids": ["101", ...], "properties": {"lifecyclestage": "lead"}}` (no `ids`: every
    live contact). Set the properties in one instant, as HubSpot's bulk edits, imports
    and workflows can: every contact changed gets the same `lastmodifieddate`. Replies
    `{"edited": n, "lastmodifieddate": "...Z" | null}`.
POST   /_sandbox/hubspot/restore
    `{"ids": ["101", ...]}`: bring archived contacts back from HubSpot's recycle bin (a
    step of HubSpot's pages, not of its API). Each gets a new `lastmodifieddate`, so
    delta reads see it again. Replies `{"restored": n}`; 400 when a live contact holds
    one's address meanwhile.
GET    /_sandbox/hubspot/contacts
    `{"contacts": [{id, properties (all), createdAt, updatedAt, archived, archivedAt?}],
    "gdpr_deleted": [{email, id, deletedAt}]}`
POST   /_sandbox/hubspot/contacts
    `{"properties": {"email": "...", ...}}`: the person signs up again on a HubSpot form,
    past the GDPR blocklist the API enforces (the deletion tests' "a system that holds
    the person again"). Replies the contact as the dump shows it; 400 for values HubSpot
    refuses or an address a live contact holds.
GET    /_sandbox/oauth
    The OAuth client and token settings (`sandbox.oauth`), and counts of grants,
    refreshes, rotations and refused refreshes.
POST   /_sandbox/oauth
    `{"client_id", "client_secret", "access_token_lifetime": 1800, "rotate_refresh_tokens": false}`:
    change any of them until the next reset.
POST   /_sandbox/oauth/revoke
    `{"provider": "hubspot"|"mailchimp"}` (left out: both). Revoke every grant: refreshes
    get BAD_REFRESH_TOKEN, API calls with their access tokens get 401.
POST   /_sandbox/mailchimp/confirm
    `{"email": "..."}`: the person clicks the confirmation link Mailchimp emailed to a
    pending member: it becomes subscribed, with a new `timestamp_opt`. Replies the
    member as `GET /_sandbox/mailchimp/members` shows it; 400 when no such member is
    pending.
GET    /_sandbox/mailchimp/members
    `{"members": [{id, email_address, status, merge_fields, tags (names), last_changed,
    archived, contact_id, ...}], "forgotten": [subscriber hashes]}`
POST   /_sandbox/mailchimp/members
    `{"email_address": "...", "status": "subscribed", "merge_fields": {}}`: the person
    signs up again on a Mailchimp form, which a permanently deleted address may (the API
    refuses it: "Forgotten Email Not Subscribed"). Replies the member as the dump shows
    it; 400 for a malformed address, one already a member, or refused merge fields.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .errors import HubSpotError, MailchimpError, json_response
from .faults import parse_plan
from .hubspot import Contact, iso_ms
from .mailchimp import LIST_ID, MEMBER_COLUMNS, Member, iso_seconds
from .oauth import OAuthControlError
from .provider import parse_json

if TYPE_CHECKING:
    from .app import SandboxApp

PREFIX = "/_sandbox"
MAX_SEED = 1_000_000


class ControlError(Exception):
    """A control request the sandbox cannot carry out (answered with a 400)."""


class Control:
    """Serve the `/_sandbox/` endpoints of one sandbox app."""

    def __init__(self, app: SandboxApp):
        self.app = app
        self.handlers = {
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
            ("POST", "/hubspot/bulk-edit"): self.hubspot_bulk_edit,
            ("POST", "/hubspot/restore"): self.hubspot_restore,
            ("POST", "/mailchimp/confirm"): self.mailchimp_confirm,
            ("GET", "/hubspot/contacts"): self.hubspot_contacts,
            ("POST", "/hubspot/contacts"): self.hubspot_signup,
            ("GET", "/mailchimp/members"): self.mailchimp_members,
            ("POST", "/mailchimp/members"): self.mailchimp_signup,
            ("GET", "/oauth"): self.get_oauth,
            ("POST", "/oauth"): self.set_oauth,
            ("POST", "/oauth/revoke"): self.revoke_oauth,
        }

    def dispatch(self, request: Request) -> Response:
        path = request.path[len(PREFIX):].rstrip("/")
        handler = self.handlers.get((request.method, path))
        if handler is None:
            allowed = sorted(method for method, known in self.handlers if known == path)
            if allowed:
                return json_response({"error": f"use {' or '.join(allowed)} on {PREFIX}{path}"}, 405)
            return json_response({"error": f"no control endpoint {PREFIX}{path}"}, 404)
        try:
            return json_response(handler(request))
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

    def info(self, request: Request) -> dict[str, Any]:
        settings = self.app.settings
        return {
            "hubspot": {"base_path": self.app.hubspot.prefix, "stands_for": "https://api.hubapi.com"},
            "mailchimp": {"base_path": self.app.mailchimp.prefix, "list_id": LIST_ID, "dc": settings.mailchimp_dc,
                          "stands_for": f"https://{settings.mailchimp_dc}.api.mailchimp.com/3.0"},
            "limits": self._limits(),
        }

    def seed(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"hubspot_contacts", "mailchimp_members", "hostile", "random_seed"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        counts = {}
        for name in ("hubspot_contacts", "mailchimp_members"):
            value = body.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise ControlError(f"{name} must be an integer from 0 to {MAX_SEED}")
            counts[name] = value
        hostile = body.get("hostile", False)
        if not isinstance(hostile, bool):
            raise ControlError("hostile must be true or false")
        random_seed = body.get("random_seed")
        if random_seed is not None and (isinstance(random_seed, bool) or not isinstance(random_seed, int)):
            raise ControlError("random_seed must be an integer or null")
        try:
            return self.app.seeder.seed(**counts, hostile=hostile, random_seed=random_seed)
        except ValueError as error:
            raise ControlError(str(error)) from None

    def get_faults(self, request: Request) -> dict[str, Any]:
        return {"faults": self.app.faults.describe()}

    def set_faults(self, request: Request) -> dict[str, Any]:
        try:
            providers, plan = parse_plan(self._body(request))
        except ValueError as error:
            raise ControlError(str(error)) from None
        self.app.faults.configure(providers, plan)
        return {"faults": self.app.faults.describe()}

    def clear_faults(self, request: Request) -> dict[str, Any]:
        self.app.faults.clear()
        return {"faults": {}}

    def get_stats(self, request: Request) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset_stats(self, request: Request) -> dict[str, Any]:
        self.app.stats.reset()
        return self.app.stats.snapshot()

    def _limits(self) -> dict[str, int]:
        return {"hubspot_rate_limit": self.app.hubspot.limit.limit,
                "hubspot_search_rate_limit": self.app.hubspot.search_limit.limit,
                "mailchimp_max_connections": self.app.mailchimp.connections.limit}

    def get_limits(self, request: Request) -> dict[str, int]:
        return self._limits()

    def set_limits(self, request: Request) -> dict[str, int]:
        body = self._body(request)
        unknown = sorted(set(body) - set(self._limits()))
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        for name, value in body.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ControlError(f"{name} must be a non-negative integer")
        if "hubspot_rate_limit" in body:
            self.app.hubspot.limit.configure(body["hubspot_rate_limit"])
        if "hubspot_search_rate_limit" in body:
            self.app.hubspot.search_limit.configure(body["hubspot_search_rate_limit"])
        if "mailchimp_max_connections" in body:
            self.app.mailchimp.connections.configure(body["mailchimp_max_connections"])
        return self._limits()

    def reset(self, request: Request) -> dict[str, Any]:
        self.app.reset()
        return {"reset": True, "limits": self._limits()}

    def get_oauth(self, request: Request) -> dict[str, Any]:
        return self.app.oauth.describe()

    def set_oauth(self, request: Request) -> dict[str, Any]:
        try:
            return self.app.oauth.configure(self._body(request))
        except OAuthControlError as error:
            raise ControlError(str(error)) from None

    def revoke_oauth(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"provider"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        try:
            return self.app.oauth.revoke(body.get("provider"))
        except OAuthControlError as error:
            raise ControlError(str(error)) from None

    def hubspot_bulk_edit(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"ids", "properties"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise ControlError("ids must be a list of contact ids (strings), or left out for every contact")
        if not isinstance(body.get("properties"), dict) or not body["properties"]:
            raise ControlError("properties must be an object naming at least one property")
        try:
            changed = self.app.hubspot.bulk_edit(ids, body["properties"])
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return {"edited": len(changed), "lastmodifieddate": iso_ms(changed[0].modified_ms) if changed else None}

    def hubspot_restore(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"ids"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ControlError("ids must be a non-empty list of contact ids (strings)")
        try:
            restored = self.app.hubspot.restore(ids)
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return {"restored": len(restored)}

    def mailchimp_confirm(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"email"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        if not isinstance(body.get("email"), str) or not body["email"].strip():
            raise ControlError("email must name a member")
        try:
            member = self.app.mailchimp.confirm(body["email"])
        except ValueError as error:
            raise ControlError(str(error)) from None
        return self._member_json(member)

    def hubspot_signup(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"properties"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        if not isinstance(body.get("properties"), dict) or not body["properties"]:
            raise ControlError("properties must be an object naming at least one property")
        try:
            contact = self.app.hubspot.signup(body["properties"])
        except HubSpotError as error:
            raise ControlError(error.message) from None
        return contact.to_json()

    def mailchimp_signup(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        unknown = sorted(set(body) - {"email_address", "status", "merge_fields"})
        if unknown:
            raise ControlError(f"unknown keys: {', '.join(unknown)}")
        if not isinstance(body.get("email_address"), str) or not body["email_address"].strip():
            raise ControlError("email_address must name the person signing up")
        status = body.get("status", "subscribed")
        try:
            member = self.app.mailchimp.signup(body["email_address"], status, body.get("merge_fields"))
        except ValueError as error:
            raise ControlError(str(error)) from None
        except MailchimpError as error:
            problems = [f"{item['field']}: {item['message']}" for item in error.errors or []]
            raise ControlError("; ".join([f"{error.title}: {error.detail}", *problems])) from None
        return self._member_json(member)

    def hubspot_contacts(self, request: Request) -> dict[str, Any]:
        with self.app.store.read() as db:
            rows = db.execute("SELECT id, email_key, properties, created_ms, modified_ms, archived, archived_ms "
                              "FROM hubspot_contact ORDER BY id").fetchall()
            deleted = db.execute("SELECT email_key, contact_id, deleted_ms FROM hubspot_gdpr_deleted "
                                 "ORDER BY deleted_ms").fetchall()
        return {
            "contacts": [Contact(row).to_json() for row in rows],
            "gdpr_deleted": [{"email": email, "id": str(contact_id) if contact_id else None,
                              "deletedAt": iso_ms(deleted_ms)} for email, contact_id, deleted_ms in deleted],
        }

    def mailchimp_members(self, request: Request) -> dict[str, Any]:
        with self.app.store.read() as db:
            rows = db.execute(f"SELECT {', '.join(MEMBER_COLUMNS)} FROM mailchimp_member WHERE list_id = ? "
                              "ORDER BY seq", (LIST_ID,)).fetchall()
            forgotten = [row[0] for row in db.execute(
                "SELECT id FROM mailchimp_forgotten WHERE list_id = ? ORDER BY id", (LIST_ID,))]
        return {"members": [self._member_json(Member(row)) for row in rows], "forgotten": forgotten}

    @staticmethod
    def _member_json(member: Member) -> dict[str, Any]:
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

