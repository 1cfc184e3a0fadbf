"""HubSpot CRM v3 contacts: properties, full and delta reads, batch read, upsert, merge, archive, search
for a person and GDPR delete.

Field names are HubSpot property names. The properties read are, in order of
precedence: the `fields` the caller passes (the sync's mappings), the connection's
`settings["properties"]`, or `DEFAULT_PROPERTIES`; `email` and `lastmodifieddate` are
always added because identity and the delta cursor need them.

Reads follow `cursors.ScanWindow` and `cursors.KeysetWindow`. A full read lists the
contacts (100 a page, paged by id), because HubSpot's search has a rate of its own,
about five requests a second per account, and would cap a full read near 1,000
contacts a second; the list is bound only by the account's general rate. Delta reads
search on `lastmodifieddate` with a fresh query per page. Search calls wait for the
search rate as well as the account's (`settings["search_rate_limit"]` requests per
second, 5 unless set; 0 leaves the pacing to the server's 429s).

The search never returns archived contacts, so a delta read ends by listing them
(`GET /crm/v3/objects/contacts?archived=true`, 100 a page) and delivers those archived
since the previous read as `RemoteRecord(archived=True)`, `modified_at` their
`archivedAt`. The list cannot filter on that time: a delta read costs one list call
per 100 contacts in the recycle bin (HubSpot keeps archived contacts there for 90
days), one call when few are archived. A restored contact comes back through the
search like any change.

Consent: `hs_email_optout` ("Unsubscribed from all email") is read-only through the CRM
API ("... is a read only property; its value cannot be set"); HubSpot sets it through
its subscription preferences. An unsubscribe (an `OutgoingRecord.email_consent` of
"unsubscribed" or "cleaned", or an `hs_email_optout` of "true" among its fields) is
written after the contacts with the v4 subscriptions API: the addresses of a batch go
together, `POST /communication-preferences/v4/statuses/batch/unsubscribe-all?channel=EMAIL`
(at most 100 a call, unconfirmed), each address once. That route needs the batch scope
`communication_preferences.statuses.batch.write`, which only a Marketing Hub Enterprise
portal can grant; after HubSpot's 403 MISSING_SCOPES for it the client, for the rest of
its life (a run), sends one
`POST /communication-preferences/v4/statuses/{email}/unsubscribe-all?channel=EMAIL`
(scope `communication_preferences.write`) per address instead. The v3 API unsubscribes
from one subscription type at a time and refuses the portal-wide opt-out.
`hs_email_optout` is never sent with the contact's properties, and nothing subscribes a
contact again: HubSpot's own pages and forms do that, with the person.

Connection settings read here: `properties`, `overlap_seconds` (how far before the
watermark a delta read starts again: HubSpot's search index trails writes by a few
seconds, and clocks differ) and `search_rate_limit`.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from connections.providers.base import (
    AuthenticationError,
    ChangePage,
    FieldInfo,
    OAuthSpec,
    OutgoingRecord,
    Provider,
    ProviderConfig,
    ProviderError,
    RecordKeys,
    RecordResult,
    RemoteRecord,
)
from connections.providers.batches import isolate_rejections, mentions_email, split_repeats
from connections.providers.cursors import (
    CursorStuck,
    InvalidCursor,
    KeysetQuery,
    KeysetWindow,
    ScanWindow,
    epoch_ms,
    from_epoch_ms,
    full_scan_cursor,
    open_keyset_read,
)

CONTACTS = "/crm/v3/objects/contacts"
SEARCH = f"{CONTACTS}/search"
DEFAULT_PROPERTIES = ("email", "firstname", "lastname", "phone", "company", "lifecyclestage")
# HubSpot's search index trails writes by a few seconds; re-read that much on each run.
DEFAULT_OVERLAP_SECONDS = 10
# "The search endpoints are rate limited to five requests per second per account."
SEARCH_RATE_LIMIT = 5
# Requests reach HubSpot a little after they leave, not all equally late: a window this
# much longer than the published one keeps the server's count within its limit.
SEARCH_WINDOW_MARGIN_SECONDS = 0.1
# The list endpoint's largest page.
MAX_LIST_PAGE = 100
# "Unsubscribed from all email": read here, written only through the subscriptions API.
OPTOUT_PROPERTY = "hs_email_optout"
# The consent states that take a contact off all email.
OPT_OUT_STATES = frozenset({"unsubscribed", "cleaned"})
# The v4 opt-out from all email, of one address or of a batch of at most
# MAX_UNSUBSCRIBE_BATCH (HubSpot documents no maximum: unconfirmed, as its other batches).
UNSUBSCRIBE_ALL = "/communication-preferences/v4/statuses/{email}/unsubscribe-all"
BATCH_UNSUBSCRIBE_ALL = "/communication-preferences/v4/statuses/batch/unsubscribe-all"
MAX_UNSUBSCRIBE_BATCH = 100
# Batch errors of these categories will fail again as they are: the others may pass later.
LASTING_ERROR_CATEGORIES = frozenset({"VALIDATION_ERROR"})
# The properties a person's phone number may be kept in, searched by a deletion request.
PHONE_PROPERTIES = ("phone", "mobilephone")
# The contact's other addresses, joined by ";" (a merged contact's among them).
ADDITIONAL_EMAILS = "hs_additional_emails"
# HubSpot's token endpoint answers errors as `{status, message}`: the RFC 6749 errors
# they stand for (any other status is an invalid_request).
OAUTH_ERRORS = {"BAD_REFRESH_TOKEN": "invalid_grant", "BAD_AUTH_CODE": "invalid_grant",
                "BAD_CLIENT_ID": "invalid_client"}


class HubSpotProvider(Provider):
    name = "hubspot"
    label = "HubSpot"
    default_base_url = "https://api.hubapi.com"
    # Contacts are keyed by id, the email optional: a linked contact is written by its id
    # with or without one. New ones are upserted by email, so that a batch sent twice
    # after a lost reply never makes a second contact: no email, no new HubSpot contact.
    keys = RecordKeys({"email": "email"}, to_create=("email",), to_update=())
    max_batch = 100
    # Ten write calls per upsert share their opt-outs' batch unsubscribe (100 a call).
    push_group = 1000
    max_page = 200
    # Private apps on Professional and Enterprise: 190 requests per 10 seconds.
    rate_limit = (190, 10)
    read_timeout = 30.0
    # HubSpot holds one email opt-out, "unsubscribed from all email", which reads back as
    # "unsubscribed" through the optout_flag transform; a cleaned address is sent as it.
    writable_consent_states = frozenset({"unsubscribed"})
    oauth = OAuthSpec(
        authorize_url="https://app.hubspot.com/oauth/authorize",
        # HubSpot retires its v1 token endpoint on 2027-02-16: HUBSPOT_TOKEN_URL moves it
        # (settings.OAUTH_ENDPOINTS) until this names the successor.
        token_url="https://api.hubapi.com/oauth/v1/token",
        # What the sync needs, and nothing more: contacts read and write, and
        # communication preferences write (an opt-out reaches HubSpot only through its
        # subscriptions API); HubSpot requires `oauth` of every app.
        scopes=("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
                "communication_preferences.write"),
        sandbox_paths={"authorize_url": "/hubspot/oauth/authorize", "token_url": "/hubspot/oauth/v1/token"},
    )

    def __init__(
        self, config: ProviderConfig, http, *, fields: Sequence[str] = (), clock: Callable[[], float] = time.time
    ):
        super().__init__(config, http, fields=fields)
        # The reader's clock: a full scan's watermark is the time it began.
        self.clock = clock
        self.search_budget = None
        per_second = _setting_number(config.settings, "search_rate_limit", SEARCH_RATE_LIMIT)
        account_budget = getattr(http, "budget", None)
        if per_second and account_budget is not None:
            requests = max(1, int(per_second))
            window = requests / per_second + SEARCH_WINDOW_MARGIN_SECONDS
            self.search_budget = account_budget.narrower("search", requests, window)
        # Whether the portal takes batch unsubscribes: None until HubSpot has answered one.
        # Only a Marketing Hub Enterprise portal grants their scope, so a refusal stands
        # for the client's life; while unknown, one batch at a time asks.
        self.batch_unsubscribe: bool | None = None
        self._batch_unsubscribe_asking = threading.Lock()

    @classmethod
    def oauth_token_error(cls, status: int, body: Any) -> dict[str, str] | None:
        """Read HubSpot's `{status: "BAD_REFRESH_TOKEN", message}` as RFC 6749's invalid_grant (and so on)."""
        if not isinstance(body, dict) or "error" in body or not body.get("status"):
            return None
        error = OAUTH_ERRORS.get(str(body["status"]), "invalid_request")
        return {"error": error, "error_description": f"{body['status']}: {body.get('message', '')}"}

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        token = config.access_token or config.api_key
        if not token:
            raise AuthenticationError("The HubSpot connection has no access token.")
        return {"Authorization": f"Bearer {token}"}

    @property
    def properties(self) -> list[str]:
        wanted = self.fields or tuple(self.config.settings.get("properties") or ()) or DEFAULT_PROPERTIES
        return list(dict.fromkeys([*wanted, "email", "lastmodifieddate"]))

    def discover_fields(self) -> list[FieldInfo]:
        """Return the contact properties a mapping can use; hidden ones are left out.

        A property whose value HubSpot sets itself (`modificationMetadata.readOnlyValue`,
        such as `hs_email_optout` and `createdate`) is read-only; one HubSpot computes
        from others is `calculated`. Neither is ever a write target.
        """
        reply = self.http.json("GET", "/crm/v3/properties/contacts")
        return [_field_info(item) for item in reply.get("results", []) if not item.get("hidden")]

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        """List every contact when `cursor` is None (or a scan is under way), else search the changed ones.

        A full read costs one search more than its list pages: the count that gives
        its pages a total (the list endpoint reports none).
        """
        overlap_ms = int(_setting_number(self.config.settings, "overlap_seconds", DEFAULT_OVERLAP_SECONDS) * 1000)
        try:
            window = open_keyset_read(cursor, overlap_ms=overlap_ms, now_ms=int(self.clock() * 1000), archived=True)
        except InvalidCursor as error:
            raise ProviderError(str(error)) from None
        try:
            if isinstance(window, ScanWindow):
                yield from self._scan(window)
            else:
                yield from self._delta(window)
                yield from self._archived(window)
        except CursorStuck as error:
            raise ProviderError(str(error)) from None

    def full_read_cursor(self, cursor: str | None) -> str | None:
        """Start a scan that keeps `cursor`'s bound for archived records (see cursors.full_scan_cursor)."""
        return full_scan_cursor(cursor, now_ms=int(self.clock() * 1000))

    def _scan(self, window: ScanWindow) -> Iterator[ChangePage]:
        """List the contacts from where the scan stands, by id."""
        total = self._count_from(window.after)
        while not window.finished:
            params = {"limit": MAX_LIST_PAGE, "properties": ",".join(self.properties)}
            if window.after is not None:
                params["after"] = window.after
            reply = self.http.json("GET", CONTACTS, params=params) or {}
            records = [self._record(item) for item in reply.get("results") or []]
            for record in records:
                window.admit(record.external_id, _ms(record))
            window.page_done(next_after=_next_after(reply))
            yield ChangePage(records=records, cursor=window.cursor(), total=total)

    def _count_from(self, after: str | None) -> int | None:
        """Return how many contacts a scan has left to list, from one search of one result."""
        body: dict[str, Any] = {"limit": 1, "properties": ["hs_object_id"]}
        if after is not None:
            if not after.isdigit():
                # Not an id to count from: the pages go without a total.
                return None
            body["filterGroups"] = [{"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": after}]}]
        return self._search(body).get("total")

    def _delta(self, window: KeysetWindow) -> Iterator[ChangePage]:
        """Search the contacts modified since the watermark, one fresh query per page."""
        total = None
        while (query := window.query()) is not None:
            reply, answered_ms = self.http.json_dated("POST", SEARCH, json=self._search_body(query),
                                                      endpoint_budget=self.search_budget)
            window.began_by_provider(answered_ms)
            reply = reply or {}
            if total is None:
                # The first query counts every change this read has to go through.
                total = reply.get("total")
            records = [self._record(item) for item in reply.get("results") or []]
            fresh = [record for record in records if window.admit(record.external_id, _ms(record))]
            window.page_done(has_more=_next_after(reply) is not None)
            yield ChangePage(records=fresh, cursor=window.cursor(), total=total)

    def _archived(self, window: KeysetWindow) -> Iterator[ChangePage]:
        """List the archived contacts; deliver those archived since the previous read."""
        while window.next_archived_page():
            # Only ids and archive times are used: no properties to carry.
            params = {"limit": MAX_LIST_PAGE, "archived": "true", "properties": "hs_object_id"}
            if window.archived_after is not None:
                params["after"] = window.archived_after
            reply = self.http.json("GET", CONTACTS, params=params) or {}
            records = [self._record(item) for item in reply.get("results") or []]
            fresh = [record for record in records if record.archived and window.admit_archived(
                record.external_id, _ms(record))]
            window.archived_page_done(next_after=_next_after(reply))
            yield ChangePage(records=fresh, cursor=window.cursor())

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.json("POST", SEARCH, json=body, endpoint_budget=self.search_budget) or {}

    def _search_body(self, query: KeysetQuery) -> dict[str, Any]:
        if query.at is not None:
            # HubSpot sorts a search by one property only: within one instant, by id.
            filters = [{"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(query.at)}]
            if query.after_id is not None:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(query.after_id)})
            sort = "hs_object_id"
        else:
            filters = []
            if query.since is not None:
                operator = "GT" if query.strict else "GTE"
                filters.append({"propertyName": "lastmodifieddate", "operator": operator, "value": str(query.since)})
            sort = "lastmodifieddate"
        body: dict[str, Any] = {
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.max_page,
        }
        if filters:
            body["filterGroups"] = [{"filters": filters}]
        return body

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        records = []
        for start in range(0, len(external_ids), self.max_batch):
            chunk = external_ids[start : start + self.max_batch]
            reply = self.http.json(
                "POST",
                f"{CONTACTS}/batch/read",
                json={"inputs": [{"id": str(external_id)} for external_id in chunk], "properties": self.properties},
            )
            # Unknown ids come back as a 207 listing them under errors: left out.
            records += [self._record(item) for item in reply.get("results", [])]
        return records

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        """Update linked contacts by id and upsert the others by email, then unsubscribe those opting out.

        Up to `push_group` records, written `max_batch` a call. A contact whose id is no
        longer found is upserted by email instead. Refused records get their own failed
        result; authentication failures and exhausted retries raise. The unsubscribes
        cost one batch call per 100 contacts not yet opted out, across all the write
        calls, or one call per address where the portal lacks the batch scope.
        """
        if len(records) > self.push_group:
            raise ValueError(f"HubSpot's upsert takes at most {self.push_group} records, got {len(records)}.")
        results: dict[int, RecordResult] = {}
        by_id = [(index, record) for index, record in enumerate(records) if record.external_id]
        by_email = [(index, record) for index, record in enumerate(records) if not record.external_id]
        # HubSpot refuses an update without properties ("No properties found to
        # update"): a linked record with none (an unsubscribe alone) is only looked up.
        empty = {index for index, record in by_id if not _input(record, by_email=False)["properties"]}
        by_email += self._look_up([entry for entry in by_id if entry[0] in empty], results)
        by_id = [entry for entry in by_id if entry[0] not in empty]
        for batch in split_repeats(by_id, key=lambda entry: _record_key(entry[1], by_email=False),
                                   max_items=self.max_batch):
            by_email += self._write(batch, results, by_email=False)
        # A contact HubSpot no longer has is created again by its email: without one
        # (a contact known by its phone) it cannot be, and creating it blind could
        # duplicate it when a reply is lost.
        for index, record in by_email:
            if not record.email:
                results[index] = RecordResult(
                    key=record.key, ok=False, error_class="not_found", retriable=False,
                    message=f"HubSpot no longer has contact {record.external_id}, and without an email address "
                            "it cannot be created again.",
                )
        by_email = [(index, record) for index, record in by_email if record.email]
        for batch in split_repeats(by_email, key=lambda entry: _record_key(entry[1], by_email=True),
                                   max_items=self.max_batch):
            self._write(batch, results, by_email=True)
        self._unsubscribe_all(records, results)
        return [results[index] for index in range(len(records))]

    def _look_up(
        self, entries: list[tuple[int, OutgoingRecord]], results: dict[int, RecordResult]
    ) -> list[tuple[int, OutgoingRecord]]:
        """Fill `results` for linked records with nothing to write; return the ones whose id was not found."""
        if not entries:
            return []
        ids = [str(record.external_id) for _, record in entries]
        found = {contact.external_id: contact for contact in self.read_by_ids(ids)}
        not_found = []
        for index, record in entries:
            contact = found.get(str(record.external_id))
            if contact is None:
                not_found.append((index, record))
                continue
            results[index] = RecordResult(
                key=record.key,
                ok=True,
                external_id=contact.external_id,
                fields={name: contact.fields.get(name) for name in dict.fromkeys([*record.fields, "email"])},
            )
        return not_found

    def _unsubscribe_all(self, records: Sequence[OutgoingRecord], results: dict[int, RecordResult]) -> None:
        """Unsubscribe the written contacts that opt out from all email, unless HubSpot's reply shows they are already.

        Each address is sent once, however many records hold it; a record whose opt-out
        failed gets a failed result of its own (its contact was written all the same).
        """
        waiting: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            written = results[index]
            if not (written.ok and _unsubscribes(record)):
                continue
            fields = written.fields or {}
            address = fields.get("email") or record.email
            # Email consent belongs to an address: a contact without one has none to withdraw.
            if address and fields.get(OPTOUT_PROPERTY) != "true":
                waiting.setdefault(_normal_email(address), []).append(index)
            else:
                results[index] = _opted_out(record, written)
        emails = list(waiting)
        for start in range(0, len(emails), MAX_UNSUBSCRIBE_BATCH):
            chunk = emails[start : start + MAX_UNSUBSCRIBE_BATCH]
            failures = self._unsubscribe_batch(chunk)
            if failures is None:
                failures = {email: failure for email in chunk if (failure := self._unsubscribe_one(email))}
            for email in chunk:
                failure = failures.get(email)
                for index in waiting[email]:
                    written = results[index]
                    results[index] = (_opted_out(records[index], written) if failure is None
                                      else failure.result(records[index], written))

    def _unsubscribe_batch(self, emails: list[str]) -> dict[str, OptOutFailure] | None:
        """Unsubscribe `emails` in one call; return the failures by address, None when the portal lacks the scope."""
        if self.batch_unsubscribe is None:
            with self._batch_unsubscribe_asking:
                if self.batch_unsubscribe is None:
                    return self._send_unsubscribe_batch(emails)
        if not self.batch_unsubscribe:
            return None
        return self._send_unsubscribe_batch(emails)

    def _send_unsubscribe_batch(self, emails: list[str]) -> dict[str, OptOutFailure] | None:
        """Send the batch call and learn from HubSpot's answer whether the portal takes them."""
        try:
            reply = self.http.json("POST", BATCH_UNSUBSCRIBE_ALL, params={"channel": "EMAIL"},
                                   json={"inputs": emails}) or {}
        except ProviderError as error:
            if error.status == 403 and _category(error) == "MISSING_SCOPES":
                # Below Marketing Hub Enterprise: one call per address from now on.
                self.batch_unsubscribe = False
                return None
            if error.status is not None and 400 <= error.status < 500 and not error.retriable:
                # The whole batch refused (one address HubSpot will not take, a limit
                # lower than ours): each address goes alone, so one cannot hold back the
                # opt-outs of the others.
                return None
            return {email: OptOutFailure.of(error, email) for email in emails}
        self.batch_unsubscribe = True
        failures: dict[str, OptOutFailure] = {}
        unnamed = []
        for item in reply.get("errors") or []:
            if not isinstance(item, dict):
                continue
            named = _emails_named(item, emails)
            if not named:
                unnamed.append(str(item.get("message") or item.get("category") or ""))
            category = str(item.get("category") or "error")
            for email in named:
                failures[email] = OptOutFailure(
                    error_class=category,
                    message=f"HubSpot did not unsubscribe {email}: {item.get('message') or category}",
                    retriable=category not in LASTING_ERROR_CATEGORIES,
                )
        done = {_normal_email(str(item.get("subscriberIdString") or ""))
                for item in reply.get("results") or [] if isinstance(item, dict)}
        for email in emails:
            if email not in done and email not in failures:
                why = f" (its errors: {'; '.join(unnamed)})" if unnamed else ""
                failures[email] = OptOutFailure(
                    error_class="MissingFromReply",
                    message=f"HubSpot's reply to the batch unsubscribe did not include {email}{why}.",
                    retriable=True,
                )
        return failures

    def _unsubscribe_one(self, email: str) -> OptOutFailure | None:
        """Unsubscribe one address with its own call; return why it failed, or None."""
        try:
            self.http.request("POST", UNSUBSCRIBE_ALL.format(email=quote(email, safe="@")), params={"channel": "EMAIL"})
        except ProviderError as error:
            # A 403 here is most likely a grant made before Syncapp asked for the
            # communication preferences scope: the contact's record was written, so
            # the opt-out alone fails, named, rather than the whole batch.
            if isinstance(error, AuthenticationError):
                return OptOutFailure(
                    error_class="missing_scope",
                    message=f"HubSpot did not unsubscribe {email}: {error} (the connection lacks the "
                            "communication_preferences.write scope: reconnect it)",
                    retriable=True,
                )
            return OptOutFailure.of(error, email)
        return None

    def merge_records(self, primary_id: str, other_id: str) -> str:
        """Merge contact `other_id` into `primary_id`; return the merged contact's id, as HubSpot's reply gives it.

        HubSpot keeps the primary's values and fills its empty properties from the other
        contact, which is gone afterwards.
        """
        reply = self.http.json(
            "POST", f"{CONTACTS}/merge", json={"primaryObjectId": str(primary_id), "objectIdToMerge": str(other_id)}
        ) or {}
        if not reply.get("id"):
            raise ProviderError("HubSpot's reply to the merge named no contact.")
        return str(reply["id"])

    def _write(self, batch: list[tuple[int, OutgoingRecord]], results: dict[int, RecordResult], *, by_email: bool):
        """Send one round of inputs; fill `results`; return the ones whose id was not found."""
        path = f"{CONTACTS}/batch/upsert" if by_email else f"{CONTACTS}/batch/update"

        def send(group):
            return self.http.json("POST", path, json={"inputs": [_input(record, by_email) for _, record in group]})

        def blamed(error: ProviderError, entry) -> bool:
            return mentions_email(_error_text(error), _normal_email(entry[1].email))

        outcome = isolate_rejections(batch, send, blamed=blamed)
        for (index, record), error in outcome.rejected:
            results[index] = RecordResult(
                key=record.key, ok=False, error_class=_error_class(error, record.email), message=str(error),
                retriable=False,
            )
        not_found = []
        for group, reply in outcome.accepted:
            found = {_reply_key(item, by_email): item for item in (reply or {}).get("results", [])}
            for index, record in group:
                item = found.get(_record_key(record, by_email))
                if item is not None:
                    # The values HubSpot now holds for what was sent: the new merge base.
                    properties = item.get("properties") or {}
                    results[index] = RecordResult(
                        key=record.key,
                        ok=True,
                        external_id=str(item["id"]),
                        fields={name: properties.get(name) for name in dict.fromkeys([*record.fields, "email"])},
                    )
                elif not by_email:
                    not_found.append((index, record))
                else:
                    results[index] = RecordResult(
                        key=record.key,
                        ok=False,
                        error_class="MissingFromReply",
                        message="HubSpot's reply did not include this contact.",
                        retriable=True,
                    )
        return not_found

    def archive(self, external_id: str) -> None:
        try:
            self.http.request("DELETE", f"{CONTACTS}/{quote(str(external_id), safe='')}")
        except ProviderError as error:
            # Already gone is what archiving wants.
            if error.status != 404:
                raise

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        """Return the ids of the live contacts whose email, phone or mobile phone is this one.

        One search, a filter group per property (groups are ORed): `EQ` on `email`,
        `CONTAINS_TOKEN` on `hs_additional_emails` (where a merge leaves the other
        contact's address: each address there is a token), and `EQ` on `phone` and
        `mobilephone` with the E.164 number. An address holding a `*` is not looked for
        among the additional emails: there it would be a wildcard, and find other people.
        HubSpot compares phone properties as text, so a number typed there in another
        form ("(415) 555-0100") is not found this way; nor is an archived contact (the
        search never returns those). Both are found by their links when Syncapp ever
        synced them.
        """
        groups = []
        if email:
            email = _normal_email(email)
            groups.append({"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]})
            if "*" not in email:
                groups.append({"filters": [{"propertyName": ADDITIONAL_EMAILS, "operator": "CONTAINS_TOKEN",
                                            "value": email}]})
        if phone:
            groups += [{"filters": [{"propertyName": name, "operator": "EQ", "value": phone}]}
                       for name in PHONE_PROPERTIES]
        if not groups:
            return []
        found: list[str] = []
        after = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": groups,
                "properties": ["hs_object_id"],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "limit": self.max_page,
            }
            if after is not None:
                body["after"] = after
            reply = self._search(body)
            found += [str(item["id"]) for item in reply.get("results") or [] if item.get("id") is not None]
            after = _next_after(reply)
            if after is None:
                return list(dict.fromkeys(found))

    def erase(self, external_id: str) -> dict[str, Any]:
        """GDPR-delete a contact by id, or by email when given one; return HubSpot's answer in short.

        HubSpot deletes the contact for good and blocklists its address (an address
        nobody holds is blocklisted too). An id HubSpot no longer knows was erased
        already: "already_gone", not an error, so an erasure retried is harmless.
        """
        body = {"objectId": str(external_id)}
        if "@" in str(external_id):
            body = {"objectId": _normal_email(external_id), "idProperty": "email"}
        summary: dict[str, Any] = {"request": f"POST {CONTACTS}/gdpr-delete"}
        try:
            response = self.http.request("POST", f"{CONTACTS}/gdpr-delete", json=body)
        except ProviderError as error:
            if error.status != 404:
                raise
            error_body = error.body if isinstance(error.body, dict) else {}
            # Its category and correlation id, never its message: it may quote the person.
            details = {name: str(error_body[name]) for name in ("category", "correlationId") if error_body.get(name)}
            return {**summary, "status": 404, "outcome": "already_gone", **details}
        return {**summary, "status": response.status_code, "outcome": "erased"}

    @staticmethod
    def _record(item: Mapping[str, Any]) -> RemoteRecord:
        properties = dict(item.get("properties") or {})
        stamp = properties.get("lastmodifieddate") or item.get("updatedAt")
        if item.get("archived"):
            stamp = item.get("archivedAt") or stamp
        return RemoteRecord(
            external_id=str(item["id"]),
            fields=properties,
            modified_at=parse_hubspot_time(stamp),
            archived=bool(item.get("archived")),
        )


# HubSpot property types and the kinds of value they hold (see base.FIELD_KINDS). A
# `date` holds a day, sent and read as epoch milliseconds at midnight UTC; `datetime`
# a moment, in epoch milliseconds. `enumeration` covers single choices (select, radio)
# and multiple ones (checkbox, values joined by ";").
_KIND_OF_TYPE = {
    "string": "text", "number": "number", "date": "date", "datetime": "datetime",
    "enumeration": "enum", "bool": "bool", "phone_number": "phone",
}
# Field types (how HubSpot shows a property) that say more than the type does.
_KIND_OF_FIELD_TYPE = {"phonenumber": "phone"}


def _field_info(item: Mapping[str, Any]) -> FieldInfo:
    name = str(item["name"])
    kind_type = str(item.get("type") or "string")
    kind = _KIND_OF_FIELD_TYPE.get(str(item.get("fieldType") or "")) or _KIND_OF_TYPE.get(kind_type, "text")
    if name == "email":
        kind = "email"
    metadata = item.get("modificationMetadata") or {}
    return FieldInfo(
        name=name,
        label=str(item.get("label") or name),
        type=kind_type,
        kind=kind,
        options=tuple(str(option["value"]) for option in item.get("options") or () if not option.get("hidden")),
        # The opt-out is written only through the communication preferences API, whatever
        # the property's metadata says: a mapping must never offer it as a write target.
        read_only=bool(metadata.get("readOnlyValue")) or name == OPTOUT_PROPERTY,
        calculated=bool(item.get("calculated")),
    )


def _ms(record: RemoteRecord) -> int | None:
    return epoch_ms(record.modified_at) if record.modified_at else None


def _next_after(reply: Mapping[str, Any]) -> str | None:
    after = ((reply.get("paging") or {}).get("next") or {}).get("after")
    return None if after in (None, "") else str(after)


def _setting_number(settings: Mapping[str, Any], name: str, default: float) -> float:
    """Return a non-negative number from the connection's settings, or `default` when unset."""
    value = settings.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or not number >= 0:
        raise ProviderError(f"The HubSpot connection setting {name} must be a number of 0 or more, not {value!r}.")
    return number


def parse_hubspot_time(value: Any) -> datetime | None:
    """Read a HubSpot datetime (ISO 8601 or epoch milliseconds); None when absent or unreadable."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.isdigit():
        return from_epoch_ms(int(text))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _normal_email(email: str) -> str:
    return (email or "").strip().lower()


def _value(value: Any) -> str:
    """Return a field value as HubSpot's string property value ("" clears it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set)):
        # Multiple-checkbox properties hold their options joined by semicolons.
        return ";".join(str(option) for option in value)
    return str(value)


@dataclass(frozen=True)
class OptOutFailure:
    """Why HubSpot did not unsubscribe an address: the failed result of each record holding it."""

    error_class: str
    message: str
    retriable: bool

    @classmethod
    def of(cls, error: ProviderError, email: str) -> OptOutFailure:
        return cls(error_class=_error_class(error, email), message=f"HubSpot did not unsubscribe {email}: {error}",
                   retriable=error.retriable or isinstance(error, AuthenticationError))

    def result(self, record: OutgoingRecord, written: RecordResult) -> RecordResult:
        return RecordResult(key=record.key, ok=False, external_id=written.external_id, error_class=self.error_class,
                            message=self.message, retriable=self.retriable)


def _opted_out(record: OutgoingRecord, written: RecordResult) -> RecordResult:
    """Return the written record's result with the opt-out it asked for, now that HubSpot holds it."""
    if OPTOUT_PROPERTY not in record.fields:
        return written
    return replace(written, fields={**(written.fields or {}), OPTOUT_PROPERTY: "true"})


def _emails_named(error: Mapping[str, Any], emails: Sequence[str]) -> list[str]:
    """Return the addresses among `emails` that a batch error names, in its context or else in its message."""
    context = error.get("context")
    if not isinstance(context, dict):
        context = {}
    listed = {_normal_email(str(value)) for values in context.values()
              for value in (values if isinstance(values, list) else [values])}
    named = [email for email in emails if email in listed]
    if named:
        return named
    message = str(error.get("message") or "")
    return [email for email in emails if mentions_email(message, email)]


def _category(error: ProviderError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("category") or "")


def _unsubscribes(record: OutgoingRecord) -> bool:
    """Return whether writing `record` takes its contact off all email."""
    flag = record.fields.get(OPTOUT_PROPERTY)
    return record.email_consent in OPT_OUT_STATES or flag is True or str(flag).strip().lower() == "true"


def _input(record: OutgoingRecord, by_email: bool) -> dict[str, Any]:
    properties = {
        name: _value(value) for name, value in record.fields.items() if name not in ("email", OPTOUT_PROPERTY)
    }
    if by_email:
        return {"id": _normal_email(record.email), "idProperty": "email", "properties": properties}
    # By id the email is written like any other field, only when the caller maps it out:
    # a changed address then follows the link, and a contact whose stored address HubSpot
    # would now refuse (an old import) still takes updates to its other fields.
    if "email" in record.fields:
        properties["email"] = _normal_email(record.email)
    return {"id": str(record.external_id), "properties": properties}


def _record_key(record: OutgoingRecord, by_email: bool) -> str:
    return _normal_email(record.email) if by_email else str(record.external_id)


def _reply_key(item: Mapping[str, Any], by_email: bool) -> str:
    return _normal_email((item.get("properties") or {}).get("email") or "") if by_email else str(item.get("id"))


def _error_text(error: ProviderError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return " ".join([str(body.get("message") or ""), json.dumps(body.get("errors") or [], ensure_ascii=False)])


def _error_class(error: ProviderError, email: str) -> str:
    """Return HubSpot's code for why the record with this address was refused (e.g. INVALID_EMAIL)."""
    body = error.body if isinstance(error.body, dict) else {}
    email = _normal_email(email)
    for item in body.get("errors") or []:
        if isinstance(item, dict) and item.get("code") and mentions_email(str(item.get("message") or ""), email):
            return str(item["code"])
    return str(body.get("category") or f"HTTP {error.status}")
