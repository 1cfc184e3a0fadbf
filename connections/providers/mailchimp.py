"""Mailchimp Marketing v3 audience members: merge fields, delta reads, batch subscribe, batch operations,
archive, finding a person and erasing them.

Fields are flat: `email_address`, `status`, `tags` (a list of tag names) and each merge
tag (`FNAME`, `PHONE`...) under its own name. The audience is the connection's
`settings["list_id"]`; a member's external id is its subscriber hash, the MD5 of the
lowercased email.

Consent is never a field: `status` is written only from the record's consent states.
A new member gets `OutgoingRecord.email_consent_if_new` (the hub's consent, else the
status a marketer chose on the sync); without one it is not created, and its record
result says so. Existing members get `email_consent` only when it restricts, so that no
sync re-subscribes a person who opted out: they are updated by PATCHes that send no other
status, in one batch operation (`POST /batches`) when there are more than a few, and
the calls their replies ask for (an opt-out, a confirmation, tags) in a second one (see
`upsert_batch`, which takes up to `push_group` members: two batch subscribes share the
batch operations). A batch operation's results are downloaded from the presigned URL
Mailchimp gives, without the connection's credentials.
The one way back is the person's own: a "subscribed" marked `explicit_opt_in` turns an
unsubscribed member into `pending`, and Mailchimp emails them a confirmation link. A
direct re-subscribe is refused by Mailchimp ("Member In Compliance State": the address
"is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be
subscribed"), and a cleaned (bouncing) address stays cleaned.

Delta reads list the members sorted by `last_changed`, archived ones included, with a
fresh query per page (`cursors.KeysetWindow`, ties by offset): Mailchimp's list filters
on `since_last_changed` and `before_last_changed` (exclusive, in whole seconds) but on
no id, so more members changed in one second than a page holds (a bulk import) are
paged by offset within that second. Connection settings read here: `list_id`,
`overlap_seconds` and `batch_timeout_seconds` (the former `status_if_new` is now the
sync's new-member status).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from django.core.exceptions import ValidationError

from connections.http import USER_AGENT, GuardedSession
from connections.providers.base import (
    AuthenticationError,
    ChangePage,
    FieldCreationNotSupported,
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
    epoch_ms,
    from_epoch_ms,
    open_time_sorted_read,
)
from connections.validators import validate_public_base_url

if TYPE_CHECKING:
    from connections.oauth import TokenGrant

# Fields every audience has besides its merge fields.
FIXED_FIELDS = (
    FieldInfo("email_address", "Email address", "email", kind="email", required=True),
    FieldInfo("status", "Subscription status", "status", kind="consent",
              options=("subscribed", "unsubscribed", "cleaned", "pending", "transactional")),
    FieldInfo("tags", "Tags", "tags", kind="tags"),
)
# Merge field types and the kinds of value they hold (see base.FIELD_KINDS).
KIND_OF_MERGE_TYPE = {
    "text": "text", "number": "number", "address": "address", "phone": "phone", "date": "date",
    "birthday": "birthday", "url": "url", "imageurl": "url", "radio": "enum", "dropdown": "enum", "zip": "text",
}
# The merge type a new field of each kind gets (kinds Mailchimp has no type for are refused).
MERGE_TYPE_OF_KIND = {
    "text": "text", "email": "text", "number": "number", "address": "address", "phone": "phone", "date": "date",
    "datetime": "date", "birthday": "birthday", "url": "url",
}
# Mailchimp stores up to 255 characters in a text merge field. `options.size` is not
# that limit: the API reference calls it "the default length of the text field" (the
# signup form's input), 25 for the default FNAME, which takes longer names.
MAX_TEXT = 255
TEXT_TYPES = frozenset({"text", "url", "imageurl", "zip", "phone"})
# A merge tag: 1 to 10 capital letters, digits or underscores, starting with a letter.
TAG_LENGTH = 10
# Statuses that take a person off the list: the only ones written to existing members.
RESTRICTIVE_STATUSES = frozenset({"unsubscribed", "cleaned"})
# What an explicit opt-in makes of an unsubscribed member: Mailchimp then sends the
# person a confirmation email, and they become subscribed when they confirm.
OPT_IN_STATUS = "pending"
# The batch error for a member who already exists (sent without update_existing).
MEMBER_EXISTS = "ERROR_CONTACT_EXISTS"
# Existing members updated at once by one batch. Mailchimp allows 10 simultaneous
# connections per account and the engine keeps two batches in flight; the shared
# budget enforces the connection's cap in any case.
UPDATE_WORKERS = 4
# Existing members PATCHed in one call of `upsert_batch` go in one batch operation
# (POST /batches) when there are more than this many: a batch costs its POST, at least one
# poll and the download of its results, so up to three PATCHes cost no more sent alone.
MAX_SINGLE_UPDATES = 3
# Operations sent in one POST /batches: Mailchimp documents no maximum (unconfirmed), and
# runs one batch at a time per account, so more go as consecutive batches.
MAX_BATCH_OPERATIONS = 1000
# A batch operation is polled first after BATCH_FIRST_POLL seconds, then each time twice
# as late, at most BATCH_POLL_CAP apart, until the connection's `batch_timeout_seconds`.
BATCH_FIRST_POLL = 0.5
BATCH_POLL_CAP = 10.0
DEFAULT_BATCH_TIMEOUT_SECONDS = 300
# The results archive's download (connect, read) timeouts, and the most it may hold,
# compressed and unpacked: a 500-member batch's results take a few megabytes.
RESULTS_TIMEOUT = (5.0, 120.0)
MAX_RESULTS_BYTES = 64 * 1024 * 1024
# Mailchimp stamps changes to the second; overlap a little for late commits.
DEFAULT_OVERLAP_SECONDS = 5
# Member statuses that are consent states (the hub's names); "archived" is not one.
CONSENT_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
# Reply parts Syncapp never reads: leaving them out keeps pages small.
EXCLUDED_FIELDS = "_links,members._links,members.stats,members.location"


def subscriber_hash(email: str) -> str:
    """Return Mailchimp's member id for an address: MD5 of the trimmed, lowercased email."""
    return hashlib.md5(_normal_email(email).encode("utf-8"), usedforsecurity=False).hexdigest()


class MailchimpProvider(Provider):
    name = "mailchimp"
    label = "Mailchimp"
    # The data center comes from the API key's suffix (`...-us6`): see base_url_for.
    default_base_url = "https://{dc}.api.mailchimp.com/3.0"
    # Members are keyed by address: the member id is the MD5 of the lowercased email.
    keys = RecordKeys({"email": "email_address"}, to_create=("email",), to_update=("email",))
    max_batch = 500
    # Two batch subscribes per upsert share one batch operation for the members that
    # exist already, and one for the follow-ups their replies ask for.
    push_group = 1000
    max_page = 1000
    # Mailchimp publishes no request rate, only 10 simultaneous connections.
    max_concurrency = 10
    # Mailchimp's own call timeout.
    read_timeout = 120.0
    writable_consent_states = RESTRICTIVE_STATUSES
    explicit_opt_in_state = OPT_IN_STATUS
    # Double opt-in (Mailchimp emails a confirmation link), transactional email only, or
    # marketing email at once (which needs the person's consent on record).
    new_record_consent_states = ("pending", "transactional", "subscribed")
    oauth = OAuthSpec(
        authorize_url="https://login.mailchimp.com/oauth2/authorize",
        token_url="https://login.mailchimp.com/oauth2/token",
        # Mailchimp has no scopes: a grant covers the whole account.
        scopes=(),
        # Names the account's data center, which the API root depends on.
        extra_urls={"metadata_url": "https://login.mailchimp.com/oauth2/metadata"},
        sandbox_paths={
            "authorize_url": "/mailchimp-login/oauth2/authorize",
            "token_url": "/mailchimp-login/oauth2/token",
            "metadata_url": "/mailchimp-login/oauth2/metadata",
        },
    )

    def __init__(
        self, config: ProviderConfig, http, *, fields: Sequence[str] = (), clock: Callable[[], float] = time.time
    ):
        super().__init__(config, http, fields=fields)
        # The reader's clock: a delta watermark is never later than when its read began.
        self.clock = clock

    @classmethod
    def base_url_for(cls, config: ProviderConfig) -> str:
        if config.base_url:
            return config.base_url.rstrip("/")
        data_center = config.settings.get("dc") or ""
        if not data_center and "-" in config.api_key:
            data_center = config.api_key.rpartition("-")[2]
        if not re.fullmatch(r"[a-z]+[0-9]+", data_center):
            raise ProviderError(
                "Cannot tell the Mailchimp data center: the API key has no -dc suffix (like -us6); set the base URL."
            )
        return cls.default_base_url.format(dc=data_center)

    @classmethod
    def oauth_grant_complete(
        cls, grant: TokenGrant, *, urls: Mapping[str, str], session: requests.Session, timeout: Any
    ) -> TokenGrant:
        """Ask Mailchimp which data center the account lives in, and take the API root it names."""
        try:
            response = session.get(urls["metadata_url"], headers={"Authorization": f"OAuth {grant.access_token}"},
                                   timeout=timeout)
            response.raise_for_status()
            metadata = response.json()
            api_endpoint = metadata["api_endpoint"].rstrip("/")
            dc = str(metadata["dc"])
        except ProviderError as refusal:
            # The guarded session's AddressRefused and RequestRefused.
            raise ProviderError(f"{cls.label}'s metadata call was refused: {refusal}") from None
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ProviderError(f"{cls.label}'s metadata call failed ({type(error).__name__}).") from None
        base_url = f"{api_endpoint}/3.0"
        try:
            # The same check as a typed base URL: the metadata comes from whichever host the
            # flow's token endpoint is on, which for the sandbox is the configured one.
            validate_public_base_url(base_url)
        except ValidationError as error:
            raise ProviderError(
                f"{cls.label}'s metadata names an API root Syncapp will not call: {' '.join(error.messages)}"
            ) from None
        return replace(grant, base_url=base_url,
                       settings={"dc": dc, "accountname": str(metadata.get("accountname", ""))[:200]})

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        if config.access_token:
            return {"Authorization": f"Bearer {config.access_token}"}
        if config.api_key:
            # HTTP Basic with any user name and the key as password.
            credentials = base64.b64encode(f"syncapp:{config.api_key}".encode()).decode("ascii")
            return {"Authorization": f"Basic {credentials}"}
        raise AuthenticationError("The Mailchimp connection has no API key.")

    @property
    def list_id(self) -> str:
        list_id = self.config.settings.get("list_id")
        if not list_id:
            raise ProviderError("The Mailchimp connection has no audience: set list_id in its settings.")
        return quote(str(list_id), safe="")

    def discover_fields(self) -> list[FieldInfo]:
        """Return the member's fixed fields and the audience's merge fields."""
        return [*FIXED_FIELDS, *(_merge_field_info(item) for item in self._merge_field_items())]

    def _merge_field_items(self) -> list[Mapping[str, Any]]:
        reply = self.http.json("GET", f"/lists/{self.list_id}/merge-fields", params={"count": 1000})
        return list(reply.get("merge_fields") or [])

    def create_field(self, *, label: str, kind: str) -> FieldInfo:
        """Add a merge field named `label`, its tag derived from the label and unique in the audience."""
        merge_type = MERGE_TYPE_OF_KIND.get(kind)
        if merge_type is None:
            raise FieldCreationNotSupported(
                f"Mailchimp has no merge field type for {kind} values; "
                f"it takes {', '.join(sorted(MERGE_TYPE_OF_KIND))}."
            )
        tag = merge_tag_for(label, {str(item.get("tag")) for item in self._merge_field_items()})
        body: dict[str, Any] = {"name": label.strip(), "type": merge_type, "tag": tag, "required": False,
                                "public": False}
        if merge_type == "birthday":
            body["options"] = {"date_format": "MM/DD"}
        item = self.http.json("POST", f"/lists/{self.list_id}/merge-fields", json=body)
        return _merge_field_info(item)

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        """List the members changed since `cursor` (every member when None), oldest change first.

        Each page is a fresh query from the second the previous page ended in (its
        members come back, and are dropped as duplicates), so a read costs a little more
        than one call per 1,000 members changed. The cursor after any page is safe to
        resume from (see `cursors`).
        """
        overlap_ms = int(float(self.config.settings.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS)) * 1000)
        try:
            window = open_time_sorted_read(cursor, overlap_ms=overlap_ms, now_ms=int(self.clock() * 1000))
        except InvalidCursor as error:
            raise ProviderError(str(error)) from None
        total = None
        try:
            while (query := window.query()) is not None:
                reply, answered_ms = self.http.json_dated("GET", f"/lists/{self.list_id}/members",
                                                          params=self._page_params(query))
                window.began_by_provider(answered_ms)
                reply = reply or {}
                members = reply.get("members") or []
                matched = _count(reply.get("total_items"))
                if total is None:
                    # The first query counts every change this read has to go through.
                    total = matched
                records = [self._record(member) for member in members]
                fresh = [record for record in records if window.admit(record.external_id, _ms(record))]
                if matched is None:
                    # No count in the reply: a full page may have more behind it.
                    has_more = len(members) == self.max_page
                else:
                    has_more = bool(members) and (query.offset or 0) + len(members) < matched
                window.page_done(has_more=has_more, total=matched)
                yield ChangePage(records=fresh, cursor=window.cursor(), total=total)
        except CursorStuck as error:
            raise ProviderError(str(error)) from None

    def _page_params(self, query: KeysetQuery) -> dict[str, Any]:
        params: dict[str, Any] = {
            "count": self.max_page,
            "offset": query.offset or 0,
            "sort_field": "last_changed",
            "sort_dir": "ASC",
            "exclude_fields": EXCLUDED_FIELDS,
        }
        # Mailchimp's bounds are exclusive and in whole seconds, and so are its times.
        if query.at is not None:
            second = query.at // 1000
            params["since_last_changed"] = _iso_seconds(second - 1)
            params["before_last_changed"] = _iso_seconds(second + 1)
        elif query.since is not None:
            first_second = query.since // 1000 + 1 if query.strict else -(-query.since // 1000)
            params["since_last_changed"] = _iso_seconds(first_second - 1)
        return params

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        records = []
        for external_id in external_ids:
            try:
                member = self.http.json(
                    "GET", f"/lists/{self.list_id}/members/{_member_id(external_id)}",
                    params={"exclude_fields": "_links"}
                )
            except ProviderError as error:
                if error.status == 404:
                    continue
                raise
            records.append(self._record(member))
        return records

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        """Create the new members in one batch call, then update the existing ones; one result each.

        A linked member whose address changed is updated at its old id, so the change
        follows the link instead of creating a second member. Refused members get their
        own failed result; authentication failures and exhausted batch retries raise.
        """
        # Why two steps. Mailchimp's batch subscribe (POST /lists/{list_id}, "Batch
        # subscribe or unsubscribe" in the Marketing API reference) has no
        # `status_if_new`: in Mailchimp's API definition the body is
        # MembersToSubscribeUnsubscribeTofromAListInBatch, whose members are AddListMembers
        # (email_address, email_type, status, merge_fields, interests, language, vip,
        # location, ip_signup, timestamp_signup, ip_opt, timestamp_opt), and every member
        # needs a valid `status` (an empty one refuses the whole call: 400 "Invalid
        # Resource", field members.item:0.status, as reported in
        # brandonseydel/MailChimp.Net issue 567). With `update_existing: true` ("Whether
        # this batch operation will change existing members' subscription status") that
        # status is applied to members who already exist, so one upsert call would
        # re-subscribe everyone who opted out in Mailchimp. Restating the status Syncapp
        # last read is no safer: a member unsubscribed since then by the account (not by
        # the person, whom Mailchimp protects with "Member In Compliance State") would be
        # subscribed again. Instead:
        # 1. one batch call with update_existing false creates the new members, each
        #    with its status; Mailchimp answers a per-member ERROR_CONTACT_EXISTS for the
        #    existing ones and leaves them untouched;
        # 2. each existing member is PATCHed with its merge fields, and with a status
        #    only to restrict it (unsubscribed, cleaned), never to subscribe (see
        #    `_update`). More than MAX_SINGLE_UPDATES such PATCHes go in one batch
        #    operation (POST /batches, polled, its results downloaded:
        #    `_update_in_batch`); the calls a PATCH's reply asks for (an opt-out the
        #    member lacks, an explicit opt-in, tags), decided on each operation's
        #    result, go in a second batch operation when more than MAX_SINGLE_UPDATES
        #    members need them, else one by one.
        # A first sync into an empty audience costs one call per 500 members; updating
        # up to 1,000 existing members about seven (the two batch subscribes that find
        # them, then for each of the two batch operations its POST /batches, a poll and
        # its results).
        if len(records) > self.push_group:
            raise ValueError(f"Mailchimp's upsert takes at most {self.push_group} members, got {len(records)}.")
        results: dict[int, RecordResult] = {}
        entries = list(enumerate(records))
        moved = [(i, r) for i, r in entries if _moved(r)]
        batched = [(i, r) for i, r in entries if not _moved(r)]
        for (index, record), result in zip(moved, self._update_all(moved, moved=True), strict=True):
            if result is None:
                batched.append((index, record))
            else:
                results[index] = result
        # A record without a status for new members is only updated where it exists:
        # never created with a status nobody chose.
        unchosen = [(i, r) for i, r in batched if _status_if_new(r) is None]
        batched = [(i, r) for i, r in batched if _status_if_new(r) is not None]
        existing: list[tuple[int, OutgoingRecord]] = []
        for call in split_repeats(batched, key=lambda entry: subscriber_hash(entry[1].email),
                                  max_items=self.max_batch):
            existing += self._create(call, results)
        existing += unchosen
        for (index, record), result in zip(existing, self._update_all(existing, moved=False), strict=True):
            results[index] = result if result is not None else _not_created(record)
        return [results[index] for index in range(len(records))]

    def _create(
        self, call: list[tuple[int, OutgoingRecord]], results: dict[int, RecordResult]
    ) -> list[tuple[int, OutgoingRecord]]:
        """Batch-subscribe the members of `call` that are new; return the entries that already exist."""
        path = f"/lists/{self.list_id}"

        def send(group):
            body = {"members": [self._new_member(record) for _, record in group], "update_existing": False}
            return self.http.json("POST", path, json=body)

        def blamed(error: ProviderError, entry) -> bool:
            return mentions_email(str(error), _normal_email(entry[1].email))

        existing = []
        outcome = isolate_rejections(call, send, blamed=blamed)
        for (index, record), error in outcome.rejected:
            results[index] = RecordResult(
                key=record.key, ok=False, error_class=_problem_title(error), message=str(error), retriable=False
            )
        for group, reply in outcome.accepted:
            reply = reply or {}
            written = {
                _normal_email(member.get("email_address", "")): member
                for member in [*reply.get("new_members", []), *reply.get("updated_members", [])]
            }
            refused = {_normal_email(error.get("email_address") or ""): error for error in reply.get("errors", [])}
            for index, record in group:
                email = _normal_email(record.email)
                if email in written:
                    results[index] = self._written(record, written[email])
                elif email in refused and refused[email].get("error_code") == MEMBER_EXISTS:
                    existing.append((index, record))
                elif email in refused:
                    results[index] = _refused(record, refused[email])
                else:
                    results[index] = RecordResult(
                        key=record.key,
                        ok=False,
                        error_class="MissingFromReply",
                        message="Mailchimp's reply did not mention this member.",
                        retriable=True,
                    )
        return existing

    def _update_all(self, entries: list[tuple[int, OutgoingRecord]], *, moved: bool) -> list[RecordResult | None]:
        """Update existing members; return their results in order.

        More than MAX_SINGLE_UPDATES members written once in this call go in one batch
        operation (`_update_in_batch`); the others a few at a time, two records for the
        same member in different waves, so the later one wins as it would in sequence.
        """
        results: dict[int, RecordResult | None] = {}
        positions = list(enumerate(entries))
        records_of = Counter(subscriber_hash(record.email) for _, record in entries)
        once = [item for item in positions if records_of[subscriber_hash(item[1][1].email)] == 1]
        if len(once) > MAX_SINGLE_UPDATES:
            batched = self._update_in_batch([record for _, (_, record) in once], moved=moved)
            for (position, _), result in zip(once, batched, strict=True):
                results[position] = result
            positions = [item for item in positions if records_of[subscriber_hash(item[1][1].email)] > 1]
        workers = self._update_workers()
        for wave in split_repeats(positions, key=lambda item: subscriber_hash(item[1][1].email)):
            if len(wave) == 1 or workers == 1:
                updated = [self._update(record, moved=moved) for _, (_, record) in wave]
            else:
                with ThreadPoolExecutor(max_workers=min(workers, len(wave))) as pool:
                    updated = list(pool.map(lambda item: self._update(item[1][1], moved=moved), wave))
            for (position, _), result in zip(wave, updated, strict=True):
                results[position] = result
        return [results[position] for position in range(len(entries))]

    def _update_workers(self) -> int:
        return min(UPDATE_WORKERS, self.config.max_concurrency or self.max_concurrency or 1)

    def _update(self, record: OutgoingRecord, *, moved: bool) -> RecordResult | None:
        """PATCH one existing member without loosening its status; None when it is not there.

        None for a moved member whose old id is gone (it is created at its new
        address), and for a member that does not exist and has no status to be
        created with.

        A moved member is addressed at its old id and given its new address. `status`
        is sent only to restrict: "cleaned" outranks everything, so it goes with the
        fields; "unsubscribed" is sent only when the reply shows the member is not
        already opted out, since it would turn a cleaned (bouncing) address into a
        merely unsubscribed one. An explicit opt-in reaches an unsubscribed member as
        "pending", the confirmation Mailchimp sends; never as "subscribed".
        """
        try:
            member = self.http.json("PATCH", self._member_path(record, moved=moved),
                                    json=self._patch_body(record, moved=moved)) or {}
        except AuthenticationError:
            raise
        except ProviderError as error:
            return self._not_patched(record, error, moved=moved)
        return self._patched(record, member, moved=moved)

    def _member_path(self, record: OutgoingRecord, *, moved: bool) -> str:
        # A moved record has an external id (see _moved).
        member_id = _member_id(record.external_id) if moved and record.external_id else subscriber_hash(record.email)
        return f"/lists/{self.list_id}/members/{member_id}"

    def _patch_body(self, record: OutgoingRecord, *, moved: bool) -> dict[str, Any]:
        """Return `_update`'s first PATCH: the merge fields, the new address of a moved member, "cleaned"."""
        body: dict[str, Any] = {"merge_fields": self._merge_fields(record)}
        if moved:
            body["email_address"] = _normal_email(record.email)
        if record.email_consent == "cleaned":
            body["status"] = "cleaned"
        return body

    def _patched(self, record: OutgoingRecord, member: Mapping[str, Any], *, moved: bool) -> RecordResult | None:
        """Finish `_update` from its first PATCH's reply: the opt-out or opt-in it calls for, missing tags."""
        try:
            for method, path, body in self._follow_ups(record, member):
                if method == "PATCH":
                    member = self.http.json(method, path, json=body) or member
                else:
                    self.http.request(method, path, json=body)
                    member = _with_tags(member, body)
        except AuthenticationError:
            raise
        except ProviderError as error:
            return self._not_patched(record, error, moved=moved)
        return self._written(record, member)

    def _follow_ups(self, record: OutgoingRecord, member: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """Return the calls the first PATCH's reply `member` asks for, in order, as (method, path, body).

        A status only to restrict, "unsubscribed" only where the member is not opted out
        already (it would turn a cleaned address into a merely unsubscribed one); an
        explicit opt-in as "pending"; then the tags the member lacks (PATCH cannot set
        tags; without sync_tags none are removed).
        """
        path = f"/lists/{self.list_id}/members/{_member_id(str(member.get('id') or subscriber_hash(record.email)))}"
        calls: list[tuple[str, str, dict[str, Any]]] = []
        if record.email_consent == "unsubscribed" and member.get("status") not in RESTRICTIVE_STATUSES:
            calls.append(("PATCH", path, {"status": "unsubscribed"}))
        elif _opts_in_again(record, member):
            calls.append(("PATCH", path, {"status": OPT_IN_STATUS}))
        held = {tag.get("name") for tag in member.get("tags") or []}
        missing = [name for name in self._tags(record) if name not in held]
        if missing:
            calls.append(("POST", f"{path}/tags", {"tags": [{"name": name, "status": "active"} for name in missing]}))
        return calls

    @staticmethod
    def _not_patched(record: OutgoingRecord, error: ProviderError, *, moved: bool) -> RecordResult | None:
        """Return the result of an `_update` that failed with `error`; None: the member is not there."""
        if error.status == 404 and (moved or _status_if_new(record) is None):
            return None
        # A member that vanished between the calls is created again by the next run.
        retriable = error.retriable or error.status == 404
        return RecordResult(
            key=record.key,
            ok=False,
            error_class=_problem_title(error),
            message=f"Mailchimp refused {_normal_email(record.email)}: {error}",
            retriable=retriable,
        )

    def _update_in_batch(self, records: list[OutgoingRecord], *, moved: bool) -> list[RecordResult | None]:
        """Send `_update`'s first PATCH of every record in one batch operation; return their results in order.

        Each operation's result is taken as `_update` takes its reply: a refusal or a 404
        gives the same result, and a success goes on to the same follow-up calls (an
        opt-out the member does not hold yet, missing tags): in a second batch operation
        when more than MAX_SINGLE_UPDATES members need them, else one by one; an explicit
        opt-in always one by one. A batch that does not finish within the connection's
        `batch_timeout_seconds`, or whose results cannot be read, gives each of its
        records a retriable failure: its write may or may not have happened, and writing
        it again is harmless.
        """
        paths = [self._member_path(record, moved=moved) for record in records]
        operations = [
            {"method": "PATCH", "path": path, "body": json.dumps(self._patch_body(record, moved=moved)),
             "operation_id": str(number)}
            for number, (record, path) in enumerate(zip(records, paths, strict=True))
        ]
        try:
            replies = self._run_batches(operations)
        except AuthenticationError:
            raise
        except ProviderError as error:
            return [_batch_failed(record, error) for record in records]
        results: dict[int, RecordResult | None] = {}
        members: dict[int, Mapping[str, Any]] = {}
        for number, record in enumerate(records):
            reply = _operation_reply(replies, str(number), "PATCH", paths[number])
            if isinstance(reply, ProviderError):
                results[number] = (self._not_patched(record, reply, moved=moved) if reply.status
                                   else _batch_failed(record, reply))
            else:
                members[number] = reply
        follow_ups = {number: self._follow_ups(records[number], member) for number, member in members.items()}
        # An explicit opt-in ("pending": Mailchimp mails a confirmation) goes alone, never
        # in a batch: a batch that outlasts batch_timeout_seconds may still run later, and
        # its opt-in could then land after an opt-out a later run sent directly.
        batched = [number for number, calls in follow_ups.items()
                   if calls and not any(body.get("status") == OPT_IN_STATUS for _, _, body in calls)]
        if len(batched) > MAX_SINGLE_UPDATES:
            results.update(self._follow_up_in_batch(records, members, follow_ups, batched, moved=moved))
        numbers = [number for number in members if number not in results]
        with ThreadPoolExecutor(max_workers=max(1, min(self._update_workers(), len(numbers) or 1))) as pool:
            finished = pool.map(lambda number: self._patched(records[number], members[number], moved=moved), numbers)
            results.update(zip(numbers, finished, strict=True))
        return [results[number] for number in range(len(records))]

    def _follow_up_in_batch(
        self, records: list[OutgoingRecord], members: dict[int, Mapping[str, Any]],
        follow_ups: dict[int, list[tuple[str, str, dict]]], asking: list[int], *, moved: bool,
    ) -> dict[int, RecordResult | None]:
        """Send the follow-up calls of the records numbered `asking` in one batch operation; return their results."""
        operations = [
            {"method": method, "path": path, "body": json.dumps(body), "operation_id": f"{number}.{step}"}
            for number in asking
            for step, (method, path, body) in enumerate(follow_ups[number])
        ]
        try:
            replies = self._run_batches(operations)
        except AuthenticationError:
            raise
        except ProviderError as error:
            return {number: _batch_failed(records[number], error) for number in asking}
        results: dict[int, RecordResult | None] = {}
        for number in asking:
            member = members[number]
            for step, (method, path, body) in enumerate(follow_ups[number]):
                reply = _operation_reply(replies, f"{number}.{step}", method, path)
                if isinstance(reply, ProviderError):
                    results[number] = (self._not_patched(records[number], reply, moved=moved) if reply.status
                                       else _batch_failed(records[number], reply))
                    break
                member = (reply or member) if method == "PATCH" else _with_tags(member, body)
            else:
                results[number] = self._written(records[number], member)
        return results

    def _run_batches(self, operations: list[dict[str, Any]]) -> dict[str, tuple[int, str]]:
        """Run `operations` in batches of MAX_BATCH_OPERATIONS, one after another; return the replies by id."""
        replies: dict[str, tuple[int, str]] = {}
        for start in range(0, len(operations), MAX_BATCH_OPERATIONS):
            batch = self.http.json("POST", "/batches",
                                   json={"operations": operations[start:start + MAX_BATCH_OPERATIONS]}) or {}
            replies.update(self._batch_replies(str(batch.get("id") or "")))
        return replies

    def _batch_replies(self, batch_id: str) -> dict[str, tuple[int, str]]:
        """Wait for a batch operation to finish; return each operation's status code and reply body by id."""
        if not batch_id:
            raise BatchIncomplete("Mailchimp's reply to POST /batches names no batch.")
        timeout = float(self.config.settings.get("batch_timeout_seconds", DEFAULT_BATCH_TIMEOUT_SECONDS))
        deadline = time.monotonic() + timeout
        pause = BATCH_FIRST_POLL
        while True:
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            batch = self.http.json("GET", f"/batches/{quote(batch_id, safe='')}") or {}
            if batch.get("status") == "finished":
                return _batch_results(str(batch.get("response_body_url") or ""))
            if time.monotonic() >= deadline:
                raise BatchIncomplete(f"Mailchimp's batch operation {batch_id} did not finish within {timeout:g} s "
                                      f"(last status: {batch.get('status')!r}).")
            pause = min(pause * 2, BATCH_POLL_CAP)

    def _new_member(self, record: OutgoingRecord) -> dict[str, Any]:
        """Return the batch-subscribe body that creates one member.

        The batch runs without update_existing, so this `status` only ever reaches a new
        member: the engine's decision for new records (the hub's consent, else the status
        chosen on the sync; see `_status_if_new`).
        """
        member: dict[str, Any] = {
            "email_address": _normal_email(record.email),
            "status": _status_if_new(record),
            "merge_fields": self._merge_fields(record),
        }
        tags = self._tags(record)
        if tags:
            # Added to the member's tags: without sync_tags none are removed.
            member["tags"] = tags
        return member

    @staticmethod
    def _merge_fields(record: OutgoingRecord) -> dict[str, Any]:
        return {
            name: "" if value is None else value
            for name, value in record.fields.items()
            if name not in ("email_address", "status", "tags")
        }

    @staticmethod
    def _tags(record: OutgoingRecord) -> list[str]:
        tags = record.fields.get("tags")
        if not tags:
            return []
        return [str(tag) for tag in tags] if isinstance(tags, (list, tuple, set)) else [str(tags)]

    def _written(self, record: OutgoingRecord, member: Mapping[str, Any]) -> RecordResult:
        fields = _flatten(member)
        sent = dict.fromkeys([*record.fields, "email_address"])
        return RecordResult(
            key=record.key,
            ok=True,
            external_id=str(member.get("id") or subscriber_hash(record.email)),
            fields={name: fields.get(name) for name in sent},
            stable_id=str(member.get("contact_id") or ""),
            email_consent=member.get("status") if member.get("status") in CONSENT_STATUSES else None,
        )

    def archive(self, external_id: str) -> None:
        try:
            self.http.request("DELETE", f"/lists/{self.list_id}/members/{_member_id(external_id)}")
        except ProviderError as error:
            if error.status != 404:
                raise

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        """Return the id of the audience's member with this address (archived members included).

        A member's id is the hash of its address: one read finds it. The phone is not
        searched: Mailchimp's API has no such search (`GET /search-members` takes "a
        valid email, or a string representing a contact's first or last name", and the
        member list filters on no merge field), so a member known by its phone is found
        through its link in the hub.
        """
        if not email:
            return []
        member_id = subscriber_hash(email)
        try:
            member = self.http.json("GET", f"/lists/{self.list_id}/members/{member_id}", params={"fields": "id"})
        except ProviderError as error:
            if error.status == 404:
                return []
            raise
        return [str((member or {}).get("id") or member_id)]

    def erase(self, external_id: str) -> dict[str, Any]:
        """Delete a member permanently; return Mailchimp's answer in short.

        Mailchimp forgets the member, and refuses its address from then on until the
        person signs up again themselves. An unknown member was erased already:
        "already_gone", not an error, so an erasure retried is harmless.
        """
        path = "/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent"
        summary: dict[str, Any] = {"request": f"POST {path}"}
        try:
            response = self.http.request(
                "POST", f"/lists/{self.list_id}/members/{_member_id(external_id)}/actions/delete-permanent"
            )
        except ProviderError as error:
            # Nothing held about an unknown member: already erased is erased.
            if error.status != 404:
                raise
            # The problem's title, never its detail: that may quote the address.
            return {**summary, "status": 404, "outcome": "already_gone", "title": _problem_title(error)}
        return {**summary, "status": response.status_code, "outcome": "erased"}

    @staticmethod
    def _record(member: Mapping[str, Any]) -> RemoteRecord:
        return RemoteRecord(
            external_id=str(member.get("id") or subscriber_hash(member.get("email_address", ""))),
            fields=_flatten(member),
            # Archiving is a change like any other: it moves last_changed.
            modified_at=_parse_time(member.get("last_changed")),
            archived=member.get("status") == "archived",
            # The member id is the MD5 of the address and changes with it; contact_id stays.
            stable_id=str(member.get("contact_id") or ""),
            opted_in_at=_parse_time(member.get("timestamp_opt")),
        )


def merge_tag_for(label: str, taken: set[str]) -> str:
    """Return a merge tag for a field named `label`: its letters and digits, capitals, unique among `taken`.

    A label without ASCII letters (a name in another script) gives FIELD; a clash is
    resolved with a number at the end (COMPANY2, COMPANY3...), still within 10 characters.
    """
    stem = re.sub(r"[^A-Z0-9_]", "", re.sub(r"\s+", "_", label.strip().upper()))
    stem = stem.lstrip("_0123456789") or "FIELD"
    stem = stem[:TAG_LENGTH].rstrip("_") or "FIELD"
    taken_upper = {tag.upper() for tag in taken}
    if stem not in taken_upper:
        return stem
    number = 2
    while True:
        suffix = str(number)
        candidate = stem[:TAG_LENGTH - len(suffix)] + suffix
        if candidate not in taken_upper:
            return candidate
        number += 1


def _merge_field_info(item: Mapping[str, Any]) -> FieldInfo:
    tag = str(item["tag"])
    merge_type = str(item.get("type") or "text")
    options = item.get("options") or {}
    choices = options.get("choices") if merge_type in ("radio", "dropdown") else None
    return FieldInfo(
        name=tag,
        label=str(item.get("name") or tag),
        type=merge_type,
        kind=KIND_OF_MERGE_TYPE.get(merge_type, "text"),
        options=tuple(str(choice) for choice in choices or ()),
        required=bool(item.get("required")),
        max_length=MAX_TEXT if merge_type in TEXT_TYPES else None,
    )


def _flatten(member: Mapping[str, Any]) -> dict[str, Any]:
    fields = dict(member.get("merge_fields") or {})
    fields.update(
        {
            "email_address": member.get("email_address"),
            "status": member.get("status"),
            "tags": sorted(tag.get("name", "") for tag in member.get("tags") or []),
        }
    )
    return fields


def _refused(record: OutgoingRecord, error: Mapping[str, Any]) -> RecordResult:
    detail = error.get("error") or "refused"
    if error.get("field") and error.get("field_message") and error["field"] not in detail:
        detail = f"{detail} ({error['field']}: {error['field_message']})"
    return RecordResult(
        key=record.key,
        ok=False,
        error_class=str(error.get("error_code") or "ERROR_GENERIC"),
        message=f"Mailchimp refused {_normal_email(record.email)}: {detail}",
        retriable=False,
    )


class BatchIncomplete(ProviderError):
    """A batch operation that did not finish in time, or whose results could not be read."""

    retriable = True


def _operation_reply(
    replies: Mapping[str, tuple[int, str]], operation_id: str, method: str, path: str
) -> Mapping[str, Any] | ProviderError:
    """Return one batch operation's reply body, or the error it stands for.

    A refusal is the error the call sent alone would have raised (with its status); a
    result missing or not JSON is a BatchIncomplete, without a status.
    """
    reply = replies.get(operation_id)
    if reply is None:
        return BatchIncomplete("Mailchimp's batch results do not mention this member.")
    status_code, body = reply
    if status_code >= 400:
        return _operation_error(method, path, status_code, body)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return BatchIncomplete("Mailchimp's batch result for this member is not JSON.")
    return parsed


def _with_tags(member: Mapping[str, Any], body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return `member` with the tags a tags call (`body`) added."""
    return {**member, "tags": [*(member.get("tags") or []), *({"name": tag["name"]} for tag in body["tags"])]}


def _batch_failed(record: OutgoingRecord, error: ProviderError) -> RecordResult:
    return RecordResult(
        key=record.key,
        ok=False,
        error_class=type(error).__name__ if isinstance(error, BatchIncomplete) else _problem_title(error),
        message=f"Mailchimp's batch operation did not update {_normal_email(record.email)}: {error}",
        retriable=error.retriable,
    )


def _batch_results(url: str) -> dict[str, tuple[int, str]]:
    """Download a finished batch's results; return each operation's status code and reply body by operation id.

    The URL is presigned (an S3 object's) and is its own credential: it is fetched through
    a guarded session of its own, so the connection's credentials never go with it.
    """
    if not url:
        raise BatchIncomplete("Mailchimp's finished batch names no results URL.")
    try:
        with GuardedSession() as session:
            session.headers["User-Agent"] = USER_AGENT
            with session.get(url, timeout=RESULTS_TIMEOUT, stream=True) as response:
                if response.status_code != 200:
                    raise BatchIncomplete(f"The batch results download answered HTTP {response.status_code}.")
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > MAX_RESULTS_BYTES:
                        raise BatchIncomplete("The batch results archive is larger than Syncapp reads.")
    except requests.RequestException as error:
        raise BatchIncomplete(f"The batch results could not be downloaded ({type(error).__name__}).") from None
    replies: dict[str, tuple[int, str]] = {}
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:gz") as archive:
            for entry in archive:
                if not entry.isfile() or not entry.name.endswith(".json"):
                    continue
                unpacked += entry.size
                content = archive.extractfile(entry)
                if unpacked > MAX_RESULTS_BYTES or content is None:
                    raise BatchIncomplete("The batch results archive holds more than Syncapp reads.")
                for result in json.loads(content.read()):
                    reply = (int(result["status_code"]), str(result.get("response") or ""))
                    replies[str(result["operation_id"])] = reply
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise BatchIncomplete(f"The batch results could not be read ({type(error).__name__}).") from None
    return replies


def _operation_error(method: str, path: str, status: int, body: str) -> ProviderError:
    """Return a batch operation's failure as the error the call sent alone would have raised."""
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        parts = [str(problem[key]) for key in ("title", "detail") if problem.get(key)]
        parts += [f"{item.get('field')}: {item.get('message')}" for item in problem.get("errors") or []
                  if isinstance(item, dict)]
        explanation = "; ".join(parts)
    else:
        problem = None
        explanation = body.strip()
    return ProviderError(
        f"Mailchimp {method} {path} failed in a batch operation with HTTP {status}: "
        f"{explanation[:500] or 'no explanation given'}",
        status=status, body=problem, retriable=status in (408, 429) or status >= 500,
    )


def _problem_title(error: ProviderError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("title") or f"HTTP {error.status}")


def _status_if_new(record: OutgoingRecord) -> str | None:
    """Return the status a new member gets; None: it is not created.

    The engine's decision for new records; failing that, the state it asks the record
    to hold (a caller that decided only that one). Never a default of Mailchimp's or ours.
    """
    return record.email_consent_if_new or record.email_consent


def _not_created(record: OutgoingRecord) -> RecordResult:
    # Not retriable: sending the same record again cannot create it. The engine keeps it
    # pending, and sends it again once a status is chosen (the payload's digest changes).
    return RecordResult(
        key=record.key, ok=False, error_class="not_created",
        message=(f"{_normal_email(record.email)} not created in Mailchimp: the hub does not know this person's "
                 "email consent and no status for new members is chosen. Choose the status new members get "
                 "on the sync page."),
        retriable=False,
    )


def _opts_in_again(record: OutgoingRecord, member: Mapping[str, Any]) -> bool:
    """Return whether `record` is an explicit opt-in for a member who unsubscribed."""
    return record.email_consent == "subscribed" and record.explicit_opt_in and member.get("status") == "unsubscribed"


def _moved(record: OutgoingRecord) -> bool:
    """Return whether a linked member's address changed since it was linked."""
    return bool(record.external_id) and record.external_id != subscriber_hash(record.email)


def _member_id(external_id: str) -> str:
    """Return the path segment for a member id that may also be an email address."""
    return subscriber_hash(external_id) if "@" in external_id else quote(str(external_id), safe="")


def _normal_email(email: str) -> str:
    return (email or "").strip().lower()


def _ms(record: RemoteRecord) -> int | None:
    return epoch_ms(record.modified_at) if record.modified_at else None


def _count(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _iso_seconds(seconds: int) -> str:
    return from_epoch_ms(seconds * 1000).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
