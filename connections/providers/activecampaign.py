"""ActiveCampaign API v3 contacts: fields, full and delta reads, one-by-one and bulk writes, list status,
tags, finding a person and deleting them.

The API root is the account's own (`https://<account>.api-us1.com/api/3`, shown in
ActiveCampaign under Settings > Developer): there is no generic one, so a connection must
give it; a root entered without `/api/3` gets it added. Requests carry the account's key
in the `Api-Token` header; there is no OAuth.

Fields are flat and keyed by ActiveCampaign's names: `email`, `firstName`, `lastName`,
`phone`, `tags` (a list of tag names), `status` (the email consent, below) and each custom
field under its personalization tag (`%COMPANY_SIZE%` is `COMPANY_SIZE`), which is what
ActiveCampaign shows beside each field and what the mapping editor then lists; a field
without one is `field:<id>`. A renamed tag reads as a field gone and a new one, which a
field refresh reports as drift.

Consent: a contact's email consent is its status on the connection's list
(`settings["list_id"]`, required): 1 (active) reads as "subscribed", 2 as "unsubscribed",
0 (unconfirmed, a double opt-in under way) as "pending" and 3 (bounced) as "cleaned"; no
membership says nothing (None). The API sets only 1 and 2. A contact created here, or
found by its address and not yet on the list, is given `OutgoingRecord.email_consent_if_new`
as a new member would (pending and transactional leave it off the list, which sends it no
campaign); without one, a contact that does not exist is not created. A linked contact is
only ever unsubscribed (`writable_consent_states`), except by an explicit opt-in:
ActiveCampaign takes a contact from 2 back to 1 through the API, as its own pages do when
the person subscribes again, so `explicit_opt_in_state` is "subscribed" and the engine
sends it only for an opt-in newer than the opt-out. A linked contact off the list stays off.

Reads list the contacts by id (`orders[id]=ASC`, `id_greater`, 100 a page) with their
list memberships, field values and tags side-loaded in the same call
(`include=contactLists,fieldValues,contactTags`). A full read lists every contact; a
delta read lists those updated since the watermark less an overlap
(`filters[updated_after]`, `settings["overlap_seconds"]`, 30 unless set). Paging by id
within a fixed filter moves nothing when a contact is edited during the read; one edited
behind the read's position is reached by the next read, because the watermark saved is
the newest `udate` read but never later than when the read began; a read from the
watermark that went to the end moves it to ActiveCampaign's clock when its first page was
answered (the reply's Date), so the contacts a bulk import touched are listed by the next
read only (see `IdKeysetRead`). The overlap re-reads a window (late commits, the two
clocks); a record delivered twice is no news to the engine.
ActiveCampaign deletes contacts outright and lists no deletions, so a delta read never
delivers an archived record. Whether tagging a contact moves its `udate` is not documented
(the sandbox says it does not): a tag added there may reach Syncapp only with the
contact's next change, or a full resync.

Writes: up to 10 records go one by one (create with `POST /contacts`, a duplicate's 422
falling back to `POST /contact/sync`; linked contacts by id with `PUT /contacts/{id}`, so
that a changed address follows the link), with list status through `POST /contactLists`
and tags through `/contactTags`. More go through the bulk importer
(`POST /import/bulk_import`, up to 250, asynchronous; see `_import`).

Rate: 5 requests a second per account; a 429's Retry-After is honoured by the HTTP layer.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from connections.providers.base import (
    AuthenticationError,
    ChangePage,
    FieldCreationNotSupported,
    FieldInfo,
    OutgoingRecord,
    Provider,
    ProviderConfig,
    ProviderError,
    RecordKeys,
    RecordResult,
    RemoteRecord,
    TransientError,
)
from connections.providers.batches import split_repeats
from connections.providers.cursors import (
    CursorStuck,
    InvalidCursor,
    epoch_ms,
    from_epoch_ms,
)
from connections.redaction import redact

CONTACTS = "/contacts"
API_PATH = "/api/3"
# Side-loaded with every contact read: the consent, the custom fields and the tags.
SIDELOADS = "contactLists,fieldValues,contactTags"
DEFAULT_OVERLAP_SECONDS = 30
# "If you need to upload 10 or fewer contacts at a time, please use the Contacts
# functionality": more than this go through the bulk importer.
ONE_BY_ONE_MAX = 10
IMPORT_MAX = 250
# "The maximum payload size of a single bulk_import request is 400000 bytes"; a margin
# for the wrapping object.
IMPORT_MAX_BYTES = 399_000
# How long an import may take before the write is given up as transient, and how the
# status polls are spaced (doubling from the first, up to the cap).
IMPORT_WAIT_SECONDS = 300.0
IMPORT_POLL_FIRST_SECONDS = 0.5
IMPORT_POLL_CAP_SECONDS = 10.0
IMPORT_DONE = "completed"
IMPORT_DEAD = frozenset({"failed", "interrupted"})
# List statuses and the consent states they stand for.
STATE_OF_LIST_STATUS = {"0": "pending", "1": "subscribed", "2": "unsubscribed", "3": "cleaned"}
ACTIVE, UNSUBSCRIBED = "1", "2"
# What a contact new to the list is given for each state; pending and transactional
# leave it off the list (the API cannot set "unconfirmed").
LIST_STATUS_FOR_NEW = {"subscribed": ACTIVE, "unsubscribed": UNSUBSCRIBED, "cleaned": UNSUBSCRIBED}
OPT_OUT_STATES = frozenset({"unsubscribed", "cleaned"})
# ActiveCampaign's `sourceid` for a contact subscribed again.
RESUBSCRIBE_SOURCE = 4
# The contact's own properties, as the v3 API names them, and the bulk importer's names.
STANDARD_FIELDS = ("firstName", "lastName", "phone")
IMPORT_NAMES = {"firstName": "first_name", "lastName": "last_name", "phone": "phone"}
EMAIL, TAGS, STATUS = "email", "tags", "status"
FIXED_FIELDS = (
    FieldInfo(EMAIL, "Email", "email", kind="email", required=True),
    FieldInfo("firstName", "First name", "text"),
    FieldInfo("lastName", "Last name", "text"),
    FieldInfo("phone", "Phone", "text", kind="phone"),
    FieldInfo(TAGS, "Tags", "tags", kind="tags"),
    FieldInfo(STATUS, "List status", "status", kind="consent",
              options=("subscribed", "unsubscribed", "pending", "cleaned")),
)
# Custom field types and the kinds of value they hold (see base.FIELD_KINDS). Choices are
# stored as the option's value; several (checkbox, listbox, multiselect) as "||a||b||".
KIND_OF_FIELD_TYPE = {
    "text": "text", "textarea": "text", "hidden": "text", "date": "date", "datetime": "datetime",
    "dropdown": "enum", "radio": "enum", "checkbox": "enum", "listbox": "enum", "multiselect": "enum",
}
# The field type a new field of each kind gets. ActiveCampaign has no number, phone or
# URL type: those values go into text fields (and are discovered as text).
FIELD_TYPE_OF_KIND = {
    "text": "text", "email": "text", "phone": "text", "url": "text", "number": "text",
    "date": "date", "datetime": "datetime",
}
FIELD_PREFIX = "field:"
# Room for a number after a new field's tag within the 64 characters it may have (unconfirmed).
PERSTAG_STEM_LENGTH = 56
# Longest error text kept in a message.
DETAIL_LIMIT = 300


# How the last four digits of a phone may be split where people type numbers in groups.
PHONE_SEPARATORS = (" ", "-", ".")
# A page cap per search term: a search matching more than this many contacts is refused
# as incomplete rather than paged without end (or forever, were `offset` not honoured).
PHONE_SEARCH_MAX_PAGES = 50


class UnknownField(ProviderError):
    """A record names a field the account does not have (deleted, or its tag renamed)."""


class ActiveCampaignProvider(Provider):
    name = "activecampaign"
    label = "ActiveCampaign"
    # A template: every account has its own root, which a connection must give (the
    # connection form and the model refuse an empty base URL; see base_url_for).
    default_base_url = "https://{account}.api-us1.com/api/3"
    base_url_help: ClassVar[str] = (
        "Your account's API URL, from ActiveCampaign's Settings > Developer (https://<account>.api-us1.com)."
    )
    # Contacts are keyed by id, but Syncapp writes more than ten at a time through the
    # bulk importer, and creates through contact/sync: both match by email, so a contact
    # without one cannot be written there.
    keys = RecordKeys({"email": EMAIL}, to_create=("email",), to_update=("email",))
    max_batch = IMPORT_MAX
    max_page = 100
    # "5 requests per second per account".
    rate_limit = (5, 1)
    writable_consent_states = frozenset({"unsubscribed"})
    explicit_opt_in_state = "subscribed"
    new_record_consent_states = ("subscribed",)

    def __init__(
        self,
        config: ProviderConfig,
        http,
        *,
        fields: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(config, http, fields=fields)
        # The reader's clock: a watermark is never later than when its read began.
        self.clock = clock
        # Waits between the polls of a bulk import.
        self.sleep = sleep
        self._fields_by_name: dict[str, Mapping[str, Any]] | None = None
        # The custom fields as this client read them (a client serves one run, or one page).
        self._custom_read: list[tuple[Mapping[str, Any], tuple[str, ...]]] | None = None
        self._tag_names: dict[str, str] = {}
        self._tag_ids: dict[str, str] = {}

    @classmethod
    def base_url_for(cls, config: ProviderConfig) -> str:
        """Return the account's API root, `/api/3` added when the URL stops at the host."""
        root = (config.base_url or "").strip().rstrip("/")
        if not root:
            raise ProviderError(f"The ActiveCampaign connection has no base URL. {cls.base_url_help}")
        if not urlsplit(root).path.rstrip("/").endswith(API_PATH):
            root += API_PATH
        return root

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        if not config.api_key:
            raise AuthenticationError("The ActiveCampaign connection has no API key.")
        return {"Api-Token": config.api_key}

    @property
    def list_id(self) -> str:
        list_id = str(self.config.settings.get("list_id") or "").strip()
        if not list_id:
            raise ProviderError("The ActiveCampaign connection has no list: set list_id in its settings.")
        return list_id

    # Fields

    def discover_fields(self) -> list[FieldInfo]:
        """Return the contact's own fields, its tags and list status, and the account's custom fields.

        The custom fields are those this client read already, if it did (to read or
        write contacts' values in this run): one `/fields` listing serves a run's reads,
        writes and schema check.
        """
        custom = self._custom_fields_once()
        return [*FIXED_FIELDS, *(_custom_field_info(item, options) for item, options in custom)]

    def _custom_fields_once(self) -> list[tuple[Mapping[str, Any], tuple[str, ...]]]:
        if self._custom_read is None:
            self._custom_read = self._custom_fields()
        return self._custom_read

    def _custom_fields(self) -> list[tuple[Mapping[str, Any], tuple[str, ...]]]:
        """Return every custom field with its options, paging through `/fields`."""
        found: list[tuple[Mapping[str, Any], tuple[str, ...]]] = []
        offset = 0
        while True:
            reply = self._call("GET", "/fields", params={"limit": self.max_page, "offset": offset}) or {}
            items = reply.get("fields") or []
            options: dict[str, list[str]] = {}
            for option in reply.get("fieldOptions") or []:
                options.setdefault(str(option.get("field")), []).append(str(option.get("value") or option.get("label")))
            found += [(item, tuple(options.get(str(item.get("id")), ()))) for item in items]
            offset += len(items)
            total = _count((reply.get("meta") or {}).get("total"))
            if len(items) < self.max_page or (total is not None and offset >= total):
                return found

    def _field_catalog(self) -> dict[str, Mapping[str, Any]]:
        """Return the custom fields by the name Syncapp gives them, read once per client."""
        if self._fields_by_name is None:
            self._fields_by_name = {field_name(item): item for item, _ in self._custom_fields_once()}
        return self._fields_by_name

    def create_field(self, *, label: str, kind: str) -> FieldInfo:
        """Add a custom field titled `label`, shown on every list; return it as discovered.

        Its personalization tag comes from the label, unique in the account. Numbers,
        phones and URLs go into a text field: ActiveCampaign has no type of its own for
        them.
        """
        field_type = FIELD_TYPE_OF_KIND.get(kind)
        if field_type is None:
            raise FieldCreationNotSupported(
                f"ActiveCampaign has no custom field type for {kind} values; "
                f"it takes {', '.join(sorted(FIELD_TYPE_OF_KIND))}."
            )
        taken = {str(item.get("perstag") or "").upper() for item, _ in self._custom_fields()}
        body = {"field": {"title": label.strip(), "type": field_type, "perstag": perstag_for(label, taken),
                          "visible": 1}}
        item = (self._call("POST", "/fields", json=body) or {}).get("field") or {}
        if not item.get("id"):
            raise ProviderError("ActiveCampaign's reply to the new field named no field.")
        # "A User can only see a custom field if the contact is part of a list that this
        # custom field is related to": relid 0 relates it to every list.
        self._call("POST", "/fieldRels", json={"fieldRel": {"field": str(item["id"]), "relid": 0}})
        self._fields_by_name = self._custom_read = None
        return _custom_field_info(item, ())

    # Reading

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        """List the contacts updated since `cursor` (every contact when None), by id; 100 a page.

        The cursor after any page resumes the read where it stood.
        """
        overlap_ms = int(_setting_number(self.config.settings, "overlap_seconds", DEFAULT_OVERLAP_SECONDS) * 1000)
        try:
            now_ms = int(self.clock() * 1000)
            read = IdKeysetRead.open(cursor, now_ms=now_ms)
        except InvalidCursor as error:
            raise ProviderError(str(error)) from None
        total = None
        while not read.finished:
            params: dict[str, Any] = {"limit": self.max_page, "orders[id]": "ASC", "include": SIDELOADS}
            if read.after is not None:
                params["id_greater"] = read.after
            if read.since is not None:
                params["filters[updated_after]"] = _iso_seconds(read.since - overlap_ms)
            reply, answered_ms = self._call_dated("GET", CONTACTS, params=params)
            # A Date far ahead of our clock is trusted up to the overlap only (see
            # cursors.KeysetWindow.began_by_provider).
            read.began_by_provider(None if answered_ms is None else min(answered_ms, now_ms + overlap_ms))
            reply = reply or {}
            records = self._records(reply)
            if total is None:
                # The first page counts every contact this read has to go through.
                total = _count((reply.get("meta") or {}).get("total"))
            try:
                read.page_done(records, more=len(reply.get("contacts") or []) >= self.max_page)
            except CursorStuck as error:
                raise ProviderError(str(error)) from None
            yield ChangePage(records=records, cursor=read.cursor(), total=total)

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        """Return the contacts with these ids (`ids=1,2,3`, 100 a call); unknown ids are left out."""
        records: list[RemoteRecord] = []
        wanted = [str(external_id) for external_id in external_ids if str(external_id).isdigit()]
        for start in range(0, len(wanted), self.max_page):
            chunk = wanted[start:start + self.max_page]
            reply = self._call("GET", CONTACTS, params={"ids": ",".join(chunk), "limit": self.max_page,
                                                        "include": SIDELOADS})
            records += self._records(reply or {})
        return records

    def _records(self, reply: Mapping[str, Any]) -> list[RemoteRecord]:
        """Return the contacts of a list reply as records, their side-loaded values joined in.

        A side-load missing from the reply (an API that ignored `include`) says nothing:
        its fields are left out of the records, never read as empty or as no membership.
        """
        contacts = reply.get("contacts") or []
        if not contacts:
            return []
        statuses = {str(item.get("contact")): item.get("status") for item in reply.get("contactLists") or []
                    if str(item.get("list")) == self.list_id}
        catalog = self._field_catalog() if "fieldValues" in reply else {}
        name_of_field = {str(item.get("id")): name for name, item in catalog.items()}
        values: dict[str, dict[str, Any]] = {}
        for item in reply.get("fieldValues") or []:
            name = name_of_field.get(str(item.get("field")))
            if name is not None:
                values.setdefault(str(item.get("contact")), {})[name] = item.get("value")
        tag_ids: dict[str, list[str]] = {}
        for item in reply.get("contactTags") or []:
            tag_ids.setdefault(str(item.get("contact")), []).append(str(item.get("tag")))
        names = self._names_of_tags({tag for ids in tag_ids.values() for tag in ids})
        records = []
        for contact in contacts:
            contact_id = str(contact["id"])
            fields: dict[str, Any] = {name: "" for name in catalog}
            fields.update(values.get(contact_id, {}))
            fields.update({name: contact.get(name) for name in STANDARD_FIELDS})
            fields[EMAIL] = contact.get(EMAIL)
            if "contactTags" in reply:
                fields[TAGS] = sorted(names[tag] for tag in tag_ids.get(contact_id, []) if names.get(tag))
            if "contactLists" in reply:
                fields[STATUS] = STATE_OF_LIST_STATUS.get(str(statuses.get(contact_id)))
            records.append(RemoteRecord(external_id=contact_id, fields=fields,
                                        modified_at=parse_time(contact.get("udate"))))
        return records

    # Tags

    def _names_of_tags(self, tag_ids: Iterable[str]) -> dict[str, str]:
        """Return the names of these tags, reading the account's tags when one is not known yet."""
        missing = set(tag_ids) - set(self._tag_names)
        offset = 0
        while missing:
            reply = self._call("GET", "/tags", params={"limit": self.max_page, "offset": offset}) or {}
            items = reply.get("tags") or []
            known = len(self._tag_names)
            for item in items:
                self._remember_tag(str(item.get("id")), str(item.get("tag") or ""))
            missing -= set(self._tag_names)
            offset += len(items)
            total = _count((reply.get("meta") or {}).get("total"))
            if len(items) < self.max_page or len(self._tag_names) == known or (total is not None and offset >= total):
                # Tags deleted since: no name to give, and no reason to look again.
                self._tag_names.update(dict.fromkeys(missing, ""))
                break
        return self._tag_names

    def _remember_tag(self, tag_id: str, name: str) -> None:
        self._tag_names[tag_id] = name
        self._tag_ids[name.casefold()] = tag_id

    def _tag_id(self, name: str) -> str:
        """Return the id of the contact tag named `name`, creating the tag when the account has none."""
        known = self._tag_ids.get(name.casefold())
        if known is not None:
            return known
        reply = self._call("GET", "/tags", params={"search": name, "limit": self.max_page}) or {}
        for item in reply.get("tags") or []:
            self._remember_tag(str(item.get("id")), str(item.get("tag") or ""))
        known = self._tag_ids.get(name.casefold())
        if known is not None:
            return known
        item = (self._call("POST", "/tags", json={"tag": {"tag": name, "tagType": "contact", "description": ""}})
                or {}).get("tag") or {}
        if not item.get("id"):
            raise ProviderError(f"ActiveCampaign's reply to the new tag {name!r} named no tag.")
        self._remember_tag(str(item["id"]), str(item.get("tag") or name))
        return str(item["id"])

    def _add_tags(self, contact_id: str, record: OutgoingRecord, *, created: bool) -> None:
        """Add the record's tags the contact lacks; none is removed (as the other systems' tags)."""
        names = _tags(record)
        if not names:
            return
        held: set[str] = set()
        if not created:
            reply = self._call("GET", f"{CONTACTS}/{contact_id}/contactTags") or {}
            held = {str(item.get("tag")) for item in reply.get("contactTags") or []}
        for name in names:
            tag_id = self._tag_id(name)
            if tag_id not in held:
                self._call("POST", "/contactTags", json={"contactTag": {"contact": contact_id, "tag": tag_id}})
                held.add(tag_id)

    # Writing

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        """Write up to 250 records: 10 or fewer one by one, more through the bulk importer; one result each.

        Refused records get their own failed result; authentication failures and
        exhausted retries raise.
        """
        if len(records) > self.max_batch:
            raise ValueError(f"ActiveCampaign takes at most {self.max_batch} records per batch, got {len(records)}.")
        if len(records) <= ONE_BY_ONE_MAX:
            return [self._write_one(record) for record in records]
        results: dict[int, RecordResult] = {}
        for call in split_repeats(list(enumerate(records)), key=lambda entry: _normal_email(entry[1].email)):
            self._import(call, results)
        return [results[index] for index in range(len(records))]

    def _write_one(self, record: OutgoingRecord) -> RecordResult:
        """Write one record with the contact endpoints; then its list status and tags."""
        try:
            prepared = self._prepared(record)
            written = None
            if record.external_id:
                written = self._update_by_id(record, prepared)
            if written is None:
                written = self._create_or_update(record, prepared)
            if written is None:
                return _not_created(record)
            contact_id = str(written.contact["id"])
            consent = self._apply_consent(contact_id, record, new_to_list=written.new_to_list,
                                          held=written.list_status)
            self._add_tags(contact_id, record, created=written.created)
        except AuthenticationError:
            raise
        except ProviderError as error:
            if isinstance(error, TransientError):
                raise
            return _refused(record, error)
        return RecordResult(key=record.key, ok=True, external_id=contact_id,
                            fields=_echo(record, written.contact, prepared), email_consent=consent)

    def _update_by_id(self, record: OutgoingRecord, prepared: Prepared) -> Written | None:
        """PUT the linked contact; None when it is gone (it is then written by email)."""
        body = dict(prepared.contact)
        if EMAIL in record.fields:
            # Only when the mapping sends it: a changed address then follows the link.
            body[EMAIL] = _normal_email(record.email)
        try:
            reply = self._call("PUT", f"{CONTACTS}/{_contact_path(record.external_id)}", json={"contact": body})
        except ProviderError as error:
            if error.status == 404:
                return None
            raise
        return Written((reply or {}).get("contact") or {"id": record.external_id}, created=False, new_to_list=False)

    def _create_or_update(self, record: OutgoingRecord, prepared: Prepared) -> Written | None:
        """Create the contact, or update the one holding its address; None when it may not be created.

        A contact that existed is new to the list when it holds no status there: it
        then takes the status for new records, as a created one does.
        """
        body = {**prepared.contact, EMAIL: _normal_email(record.email)}
        if _status_if_new(record) is None:
            existing = self._find_contacts(email=body[EMAIL])
            if not existing:
                return None
        else:
            try:
                reply = self._call("POST", CONTACTS, json={"contact": body})
                return Written((reply or {}).get("contact") or {}, created=True, new_to_list=True)
            except ProviderError as error:
                if not _is_duplicate(error):
                    raise
        reply = self._call("POST", "/contact/sync", json={"contact": body}) or {}
        contact = reply.get("contact") or {}
        status = self._list_status(str(contact.get("id")))
        return Written(contact, created=False, new_to_list=status is None, list_status=status)

    def _list_status(self, contact_id: str) -> str | None:
        """Return the contact's status on the list ("1", "2"...), None when it is not on it."""
        reply = self._call("GET", f"{CONTACTS}/{contact_id}/contactLists") or {}
        for item in reply.get("contactLists") or []:
            if str(item.get("list")) == self.list_id:
                return str(item.get("status"))
        return None

    def _apply_consent(self, contact_id: str, record: OutgoingRecord, *, new_to_list: bool,
                       held: str | None = None) -> str | None:
        """Set the contact's list status as the consent rule asks; return the state it holds after, when known."""
        status = _list_status_to_write(record, new_to_list=new_to_list)
        if status is None:
            return STATE_OF_LIST_STATUS.get(str(held)) if held is not None else None
        body: dict[str, Any] = {"list": self.list_id, "contact": contact_id, "status": status}
        if status == ACTIVE and not new_to_list:
            body["sourceid"] = RESUBSCRIBE_SOURCE
        reply = self._call("POST", "/contactLists", json={"contactList": body}) or {}
        held = str((reply.get("contactList") or {}).get("status") or status)
        return STATE_OF_LIST_STATUS.get(held)

    def _prepared(self, record: OutgoingRecord) -> Prepared:
        """Return the contact body (own fields and `fieldValues`) and the bulk importer's, for `record`.

        Raise ProviderError (a refusal of this record) for a field the account does not have.
        """
        catalog = self._field_catalog()
        contact: dict[str, Any] = {}
        imported: dict[str, Any] = {}
        field_values = []
        for name, value in record.fields.items():
            if name in (EMAIL, TAGS, STATUS):
                continue
            if name in STANDARD_FIELDS:
                contact[name] = imported[IMPORT_NAMES[name]] = _text(value)
            elif name in catalog:
                field_values.append({"field": str(catalog[name]["id"]), "value": _text(value)})
            else:
                raise UnknownField(
                    f"ActiveCampaign has no field {name!r}: it was deleted or renamed there; refresh the connection's "
                    "fields and fix the mapping.")
        if field_values:
            contact["fieldValues"] = field_values
            imported["fields"] = [{"id": item["field"], "value": item["value"]} for item in field_values]
        return Prepared(contact=contact, imported=imported)

    def _import(self, call: list[tuple[int, OutgoingRecord]], results: dict[int, RecordResult]) -> None:
        """Write records through the bulk importer, then give the contacts new to the list their status.

        Before the import, linked contacts are read by id (a call per 100) for their
        address: one whose address changed is written one by one, since the importer
        matches by address and would create a second contact. A record that may not be
        created is looked up by address first. An opt-out, or an explicit opt-in of a
        linked contact, goes in the import itself (`unsubscribe`, `subscribe`).

        After it, `GET /import/info` gives the ids of the contacts it created and the
        addresses it refused: each refused record fails alone. The created contacts are
        read by id (a call per 100) to pair them with their records; a contact the
        import updated without a link is found by its address, with its list status (two
        calls each: the importer names only the contacts it created). Those new to the
        list get the status for new records from a second import of just them.
        """
        prepared: dict[int, Prepared] = {}
        for index, record in call:
            try:
                prepared[index] = self._prepared(record)
            except ProviderError as error:
                results[index] = _refused(record, error)
        entries = [(index, record) for index, record in call if index in prepared]
        linked = {str(contact["id"]): contact for contact in self._contacts_by_id(
            [str(record.external_id) for _, record in entries if record.external_id])}
        ids: dict[int, str] = {}
        imported: list[tuple[int, OutgoingRecord]] = []
        for index, record in entries:
            contact = linked.get(str(record.external_id)) if record.external_id else None
            if contact is not None:
                if _normal_email(contact.get(EMAIL)) != _normal_email(record.email):
                    results[index] = self._write_one(record)
                    continue
                ids[index] = str(contact["id"])
            elif _status_if_new(record) is None:
                found = self._find_contacts(email=_normal_email(record.email))
                if not found:
                    results[index] = _not_created(record)
                    continue
                ids[index] = found[0]
            imported.append((index, record))
        if not imported:
            return
        outcome = self._run_import([self._import_entry(record, prepared[index]) for index, record in imported])
        created = {_normal_email(contact.get(EMAIL)): str(contact["id"])
                   for contact in self._contacts_by_id(outcome.created)}
        states: dict[int, str | None] = {}
        new_to_list: list[tuple[int, OutgoingRecord]] = []
        for index, record in imported:
            email, opted_out = _normal_email(record.email), record.email_consent in OPT_OUT_STATES
            if email in outcome.failed:
                results[index] = _import_refused(record, "refused")
                continue
            if index in ids:
                states[index] = "unsubscribed" if opted_out else "subscribed" if _opts_in_again(record) else None
                continue
            contact_id: str | None
            if email in created:
                contact_id, held = created[email], UNSUBSCRIBED if opted_out else None
            else:
                contact_id = next(iter(self._find_contacts(email=email)), None)
                held = self._list_status(contact_id) if contact_id else None
            if contact_id is None:
                results[index] = RecordResult(
                    key=record.key, ok=False, error_class="MissingFromReply",
                    message="ActiveCampaign's bulk import neither refused nor wrote this contact.", retriable=True)
                continue
            ids[index], states[index] = contact_id, STATE_OF_LIST_STATUS.get(held or "")
            if held is None and _list_status_to_write(record, new_to_list=True) is not None:
                new_to_list.append((index, record))
        given = self._give_list_status(new_to_list)
        for index, record in imported:
            if index not in states:
                continue
            if index in given and given[index] is None:
                # Written, but off the list: left unlinked, it takes the status for new
                # records when it is sent again.
                results[index] = _import_refused(record, "did not give its list status to", retriable=True)
            else:
                results[index] = RecordResult(key=record.key, ok=True, external_id=ids[index],
                                              email_consent=given.get(index, states[index]))

    def _contacts_by_id(self, contact_ids: Sequence[str]) -> list[Mapping[str, Any]]:
        """Return the contacts with these ids as ActiveCampaign gives them, without their side-loads."""
        contacts: list[Mapping[str, Any]] = []
        for start in range(0, len(contact_ids), self.max_page):
            chunk = contact_ids[start:start + self.max_page]
            reply = self._call("GET", CONTACTS, params={"ids": ",".join(chunk), "limit": self.max_page}) or {}
            contacts += reply.get("contacts") or []
        return contacts

    def _give_list_status(self, entries: list[tuple[int, OutgoingRecord]]) -> dict[int, str | None]:
        """Give contacts new to the list the status for new records, in one import; return the states given.

        None for a contact the import refused.
        """
        if not entries:
            return {}
        statuses = {index: _list_status_to_write(record, new_to_list=True) for index, record in entries}
        refused = self._run_import([
            {EMAIL: _normal_email(record.email),
             "subscribe" if statuses[index] == ACTIVE else "unsubscribe": [{"listid": self.list_id}]}
            for index, record in entries
        ])
        return {index: None if _normal_email(record.email) in refused.failed
                else STATE_OF_LIST_STATUS.get(statuses[index] or "")
                for index, record in entries}

    def _import_entry(self, record: OutgoingRecord, prepared: Prepared) -> dict[str, Any]:
        """Return the bulk importer's entry for `record`: fields, tags, and an opt-out or an explicit opt-in."""
        entry: dict[str, Any] = {EMAIL: _normal_email(record.email), **prepared.imported}
        tags = _tags(record)
        if tags:
            entry[TAGS] = tags
        if record.email_consent in OPT_OUT_STATES:
            entry["unsubscribe"] = [{"listid": self.list_id}]
        elif _opts_in_again(record):
            entry["subscribe"] = [{"listid": self.list_id}]
        return entry

    def _run_import(self, contacts: list[dict[str, Any]]) -> ImportOutcome:
        """Import `contacts` and wait; return the contacts created and the addresses refused.

        One import unless the entries exceed the importer's 400,000 bytes, then as few
        as fit. An import ActiveCampaign gave up on, or one still running after
        IMPORT_WAIT_SECONDS, raises TransientError: sending the same records again is
        harmless (the importer matches by address).
        """
        batch_ids = []
        for chunk in _by_size(contacts, IMPORT_MAX_BYTES):
            reply = self._call("POST", "/import/bulk_import", json={"contacts": chunk}) or {}
            if not reply.get("batchId"):
                raise ProviderError(
                    f"ActiveCampaign's bulk import answered without a batch id: {error_summary(reply)}")
            batch_ids.append(str(reply["batchId"]))
        created: list[str] = []
        failed: set[str] = set()
        for batch_id in batch_ids:
            info = self._wait_for_import(batch_id)
            created += [str(item) for item in info.get("success") or []]
            failed |= {_normal_email(email) for email in info.get("failure") or []}
        return ImportOutcome(created=created, failed=failed)

    def _wait_for_import(self, batch_id: str) -> Mapping[str, Any]:
        """Poll `/import/info` until the import is completed, the waits doubling; return its info."""
        waited, delay = 0.0, IMPORT_POLL_FIRST_SECONDS
        while True:
            # "If called immediately after a bulk import, the status may be false".
            self.sleep(delay)
            waited += delay
            info = self._call("GET", "/import/info", params={"batchId": batch_id}) or {}
            status = info.get("status")
            if status == IMPORT_DONE:
                return info
            if status in IMPORT_DEAD:
                raise TransientError(f"ActiveCampaign's bulk import {batch_id} ended {status}.")
            if waited >= IMPORT_WAIT_SECONDS:
                raise TransientError(
                    f"ActiveCampaign's bulk import {batch_id} was not done after {IMPORT_WAIT_SECONDS:.0f} s.")
            delay = min(delay * 2, IMPORT_POLL_CAP_SECONDS)

    # Deleting and finding

    def archive(self, external_id: str) -> None:
        """Delete the contact: ActiveCampaign has no archive.

        A contact deleted there is gone with its list statuses, field values and tags;
        the hub keeps the person and their history, and under "mirror" delete handling
        a person who reappears elsewhere is created again. A contact already gone is
        what archiving wants.
        """
        try:
            self._call("DELETE", f"{CONTACTS}/{_contact_path(external_id)}")
        except ProviderError as error:
            if error.status != 404:
                raise

    def erase(self, external_id: str) -> dict[str, Any]:
        """Delete the contact for good; return ActiveCampaign's answer in short.

        ActiveCampaign has one delete: the contact goes with its list statuses, field
        values and tags. An id it no longer knows was deleted already: "already_gone",
        not an error, so an erasure retried is harmless.
        """
        summary: dict[str, Any] = {"request": "DELETE /contacts/{id}"}
        try:
            response = self.http.request("DELETE", f"{CONTACTS}/{_contact_path(external_id)}")
        except ProviderError as error:
            if error.status != 404:
                raise self._clearer(error, "DELETE", CONTACTS) from None
            return {**summary, "status": 404, "outcome": "already_gone"}
        return {**summary, "status": response.status_code, "outcome": "erased"}

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        """Return the ids of the contacts with this address, or with this phone number.

        The address is looked up exactly (`email=`). The phone through ActiveCampaign's
        search (`search=`, which matches names, organization, phone or email, in part):
        by its last four digits as they may be written, together ("5678") or split once
        by a space, a hyphen or a dot ("56 78", "5-678"), which covers numbers written in
        groups of two, three or four; of what it finds, only contacts whose phone holds
        exactly the E.164 number's digits are kept. A number written without its country
        code is not taken for this one: a deletion request must not reach someone else.
        One whose last four digits are split twice ("5 6 78") is not found by searching;
        a contact Syncapp ever synced is found by its link whatever its form.
        """
        found: list[str] = []
        if email:
            found += self._find_contacts(email=_normal_email(email))
        digits = _digits(phone)
        if digits:
            found += self._find_by_phone(digits)
        return list(dict.fromkeys(found))

    def _find_by_phone(self, digits: str) -> list[str]:
        tail = digits[-4:]
        terms = [tail] + [f"{tail[:cut]}{separator}{tail[cut:]}" for cut in range(1, len(tail))
                          for separator in PHONE_SEPARATORS]
        found: list[str] = []
        for term in terms:
            for page in range(PHONE_SEARCH_MAX_PAGES):
                reply = self._call("GET", CONTACTS, params={"search": term, "limit": self.max_page,
                                                             "offset": page * self.max_page}) or {}
                contacts = reply.get("contacts") or []
                found += [str(contact["id"]) for contact in contacts if _digits(contact.get("phone")) == digits]
                if len(contacts) < self.max_page:
                    break
            else:
                # Not a silent miss: the deletion request shows the system as failing.
                raise ProviderError(f"ActiveCampaign's search for {term!r} matched more than "
                                    f"{PHONE_SEARCH_MAX_PAGES * self.max_page} contacts; the phone search stopped.")
        return found

    def _find_contacts(self, *, email: str) -> list[str]:
        reply = self._call("GET", CONTACTS, params={"email": email}) or {}
        return [str(contact["id"]) for contact in reply.get("contacts") or []
                if _normal_email(contact.get(EMAIL)) == email]

    # Errors

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request through the HTTP layer; a refusal's message is ActiveCampaign's own words, in short."""
        return self._call_dated(method, path, **kwargs)[0]

    def _call_dated(self, method: str, path: str, **kwargs: Any) -> tuple[Any, int | None]:
        """As `_call`, with ActiveCampaign's clock when it answered (the reply's Date; see HttpClient.json_dated)."""
        try:
            return self.http.json_dated(method, path, **kwargs)
        except ProviderError as error:
            raise self._clearer(error, method, path) from None

    def _clearer(self, error: ProviderError, method: str, path: str) -> ProviderError:
        """Return `error` with its message made from ActiveCampaign's error body, where it has one.

        ActiveCampaign's errors have no common shape: `{message}`, `{errors: [{title,
        detail, code, source}]}`, or plain text (which the HTTP layer quotes already).
        """
        if type(error) is not ProviderError or error.body is None:
            return error
        summary = redact(error_summary(error.body), (self.config.api_key,))
        where = f"ActiveCampaign {method} {path.split('?')[0]}"
        return ProviderError(f"{where} failed with HTTP {error.status}: {summary}", status=error.status,
                             body=error.body)


@dataclass(frozen=True)
class Prepared:
    """A record's values as the contact endpoints take them, and as the bulk importer does."""

    contact: dict[str, Any]
    imported: dict[str, Any]


@dataclass(frozen=True)
class ImportOutcome:
    """What `/import/info` says of a finished import: the ids it created, the addresses it refused."""

    created: list[str]
    failed: set[str]


@dataclass(frozen=True)
class Written:
    """A contact just written: ActiveCampaign's reply, and what the write did to it."""

    contact: Mapping[str, Any]
    created: bool
    # It holds no status on the list: it takes the status for new records.
    new_to_list: bool
    # Its status on the list before the write, when read ("1", "2"...).
    list_status: str | None = None


class IdKeysetRead:
    """Where a read of contacts by id stands, and the cursor that resumes it.

    `since` is the watermark the read filters from (None: every contact), `after` the
    last id read, `started` when the read began by the reader's clock, `newest` the
    newest `udate` read. A finished read's cursor holds only its new watermark: the
    newest `udate` read (or the old watermark, when newer), never later than `started`;
    a full read of nothing starts its successor from `started`. A read that began from
    its watermark (not resumed after an id) and went to the end moves the watermark to
    ActiveCampaign's clock when its first page was answered, if later (`began_by_provider`):
    every contact updated before then was listed by it, and the next read need not list a
    bulk import's contacts again. `started` is never before the watermark the read
    starts from, which may be ActiveCampaign's clock, ahead of ours.
    """

    VERSION = 1

    def __init__(self, *, since: int | None, started: int, after: str | None = None, newest: int | None = None):
        self.since = since
        self.started = started
        self.after = after
        self.newest = newest
        self.finished = False
        # ActiveCampaign's clock when the first page of a read from the watermark was
        # answered. A read resumed after an id may have missed contacts edited behind
        # its position while it was interrupted: its watermark stays bounded by `started`.
        self.provider_began: int | None = None
        self._dated = after is None

    def began_by_provider(self, answered_ms: int | None) -> None:
        """Record ActiveCampaign's clock when the read's first page was answered (its reply's Date)."""
        if self._dated and self.provider_began is None and answered_ms is not None:
            self.provider_began = answered_ms

    @classmethod
    def open(cls, cursor: str | None, *, now_ms: int) -> IdKeysetRead:
        if not cursor:
            return cls(since=None, started=now_ms)
        try:
            data = json.loads(cursor)
        except ValueError:
            raise InvalidCursor("The saved cursor is not JSON; run a full resync to reset it.") from None
        if not isinstance(data, dict) or data.get("v") != cls.VERSION:
            raise InvalidCursor("The saved cursor has an unknown format; run a full resync to reset it.")
        since, after, started, newest = data.get("since"), data.get("after"), data.get("started"), data.get("newest")
        if not all(value is None or _is_int(value) for value in (since, started, newest)) or not (
                after is None or (isinstance(after, str) and after.isdigit())):
            raise InvalidCursor("The saved cursor is malformed; run a full resync to reset it.")
        if after is None:
            return cls(since=since, started=now_ms if since is None else max(now_ms, since))
        return cls(since=since, started=started if started is not None else now_ms, after=after, newest=newest)

    @property
    def watermark(self) -> int:
        known = [value for value in (self.since, self.newest) if value is not None]
        read = min(max(known), self.started) if known else self.started
        if self.finished and self.provider_began is not None:
            return max(read, self.provider_began)
        return read

    def page_done(self, records: Sequence[RemoteRecord], *, more: bool) -> None:
        """Record a page read; `more` when it was full (the next one may hold more)."""
        for record in records:
            if record.modified_at is not None:
                modified = epoch_ms(record.modified_at)
                self.newest = modified if self.newest is None else max(self.newest, modified)
        if not more:
            self.finished = True
            return
        last = max((int(record.external_id) for record in records), default=None)
        if last is None or (self.after is not None and last <= int(self.after)):
            raise CursorStuck(
                f"A page after contact {self.after} returned no contact past it; the read cannot move on."
            )
        self.after = str(last)

    def cursor(self) -> str:
        if self.finished:
            data: dict[str, Any] = {"v": self.VERSION, "since": self.watermark}
        else:
            data = {"v": self.VERSION, "since": self.since, "after": self.after, "started": self.started,
                    "newest": self.newest}
        return json.dumps(data, separators=(",", ":"))


def field_name(item: Mapping[str, Any]) -> str:
    """Return the name Syncapp gives a custom field: its personalization tag, else `field:<id>`."""
    perstag = str(item.get("perstag") or "").strip().strip("%")
    return perstag or f"{FIELD_PREFIX}{item.get('id')}"


def perstag_for(label: str, taken: set[str]) -> str:
    """Return a personalization tag for a field titled `label`: its letters and digits, capitals, unique among `taken`.

    A label without ASCII letters or digits gives FIELD; a clash takes a number (COMPANY_2...).
    """
    stem = re.sub(r"_+", "_", re.sub(r"[^A-Z0-9]", "_", label.strip().upper())).strip("_")
    stem = stem[:PERSTAG_STEM_LENGTH].rstrip("_") or "FIELD"
    candidate, number = stem, 2
    while candidate in taken:
        candidate, number = f"{stem}_{number}", number + 1
    return candidate


def _custom_field_info(item: Mapping[str, Any], options: tuple[str, ...]) -> FieldInfo:
    field_type = str(item.get("type") or "text")
    return FieldInfo(
        name=field_name(item),
        label=str(item.get("title") or field_name(item)),
        type=field_type,
        kind=KIND_OF_FIELD_TYPE.get(field_type, "text"),
        options=options,
        required=str(item.get("isrequired") or "0") == "1",
    )


def error_summary(body: Any) -> str:
    """Return ActiveCampaign's error body in short: its message, or each error's title, detail and code."""
    if isinstance(body, Mapping):
        parts = [str(body["message"])] if body.get("message") else []
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            parts += [f"{name}: {value}" for name, value in errors.items()]
        for item in errors if isinstance(errors, list) else ():
            if isinstance(item, Mapping):
                words = [str(item[key]) for key in ("title", "detail") if item.get(key)]
                if item.get("detail") and item.get("detail") == item.get("title"):
                    words = words[:1]
                text = ": ".join(words) or "refused"
                parts.append(f"{text} ({item['code']})" if item.get("code") else text)
            elif item:
                parts.append(str(item))
        text = "; ".join(parts) or json.dumps(body, ensure_ascii=False)
    else:
        text = str(body).strip() or "no explanation given"
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT - 1] + "…"


def _is_duplicate(error: ProviderError) -> bool:
    """Return whether a create was refused because a contact holds the address already."""
    body = error.body if isinstance(error.body, Mapping) else {}
    return error.status == 422 and any(
        isinstance(item, Mapping) and item.get("code") == "duplicate" for item in body.get("errors") or [])


def _refused(record: OutgoingRecord, error: ProviderError) -> RecordResult:
    body = error.body if isinstance(error.body, Mapping) else {}
    codes = [str(item["code"]) for item in body.get("errors") or [] if isinstance(item, Mapping) and item.get("code")]
    error_class = codes[0] if codes else f"HTTP {error.status}" if error.status else type(error).__name__
    return RecordResult(
        key=record.key, ok=False, external_id=record.external_id, error_class=error_class,
        message=f"ActiveCampaign refused {_normal_email(record.email)}: {error}", retriable=False,
    )


def _import_refused(record: OutgoingRecord, what: str, *, retriable: bool = False) -> RecordResult:
    return RecordResult(
        key=record.key, ok=False, error_class="import_refused",
        message=f"ActiveCampaign's bulk import {what} {_normal_email(record.email)}.", retriable=retriable,
    )


def _not_created(record: OutgoingRecord) -> RecordResult:
    # Not retriable: the same record cannot be created. The engine keeps it pending and
    # sends it again once a status for new records is chosen (the payload's digest changes).
    return RecordResult(
        key=record.key, ok=False, error_class="not_created",
        message=(f"{_normal_email(record.email)} not created in ActiveCampaign: the hub does not know this person's "
                 "email consent and no status for new members is chosen. Choose the status new members get on the "
                 "sync page."),
        retriable=False,
    )


def _status_if_new(record: OutgoingRecord) -> str | None:
    """Return the consent state a contact new to the list gets; None: a new contact is not created."""
    return record.email_consent_if_new or record.email_consent


def _list_status_to_write(record: OutgoingRecord, *, new_to_list: bool) -> str | None:
    """Return the list status to set ("1", "2"), or None to leave the contact's alone.

    New to the list: the status for new records. On it: only an opt-out, or an explicit
    opt-in over one.
    """
    if new_to_list:
        return LIST_STATUS_FOR_NEW.get(_status_if_new(record) or "")
    if record.email_consent in OPT_OUT_STATES:
        return UNSUBSCRIBED
    if _opts_in_again(record):
        return ACTIVE
    return None


def _by_size(entries: list[dict[str, Any]], limit: int) -> list[list[dict[str, Any]]]:
    """Split import entries, in order, into as few lists as keep each one's JSON within `limit` bytes."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        # As requests encodes it: ASCII, with ", " and ": " separators.
        entry_size = len(json.dumps(entry).encode()) + 2
        if chunks[-1] and size + entry_size > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry_size
    return chunks


def _opts_in_again(record: OutgoingRecord) -> bool:
    """Return whether `record` is an explicit opt-in of a linked contact (over its opt-out)."""
    return bool(record.external_id) and record.email_consent == "subscribed" and record.explicit_opt_in


def _echo(record: OutgoingRecord, contact: Mapping[str, Any], prepared: Prepared) -> dict[str, Any]:
    """Return the values ActiveCampaign now holds for what was sent, as far as its reply says."""
    fields = {name: contact.get(name, prepared.contact.get(name)) for name in STANDARD_FIELDS if name in record.fields}
    fields[EMAIL] = contact.get(EMAIL) or _normal_email(record.email)
    return fields


def _tags(record: OutgoingRecord) -> list[str]:
    tags = record.fields.get(TAGS)
    if not tags:
        return []
    names = [str(tag).strip() for tag in tags] if isinstance(tags, (list, tuple, set)) else [str(tags).strip()]
    return list(dict.fromkeys(name for name in names if name))


def _text(value: Any) -> str:
    """Return a value as ActiveCampaign's text ("" clears it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set)):
        # Checkbox and listbox fields hold their options this way.
        return "||" + "||".join(str(option) for option in value) + "||" if value else ""
    return str(value)


def _contact_path(external_id: str | None) -> str:
    return quote(str(external_id), safe="")


def _normal_email(email: Any) -> str:
    return str(email or "").strip().lower()


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _iso_seconds(ms: int) -> str:
    """Return a time as ActiveCampaign's filters take it: ISO 8601 to the second, with its offset."""
    return from_epoch_ms(ms - ms % 1000).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _setting_number(settings: Mapping[str, Any], name: str, default: float) -> float:
    """Return a non-negative number from the connection's settings, or `default` when unset."""
    value = settings.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or not number >= 0:
        raise ProviderError(
            f"The ActiveCampaign connection setting {name} must be a number of 0 or more, not {value!r}."
        )
    return number


def parse_time(value: Any) -> datetime | None:
    """Read an ActiveCampaign time ("2018-09-28T17:30:52-05:00", its offset kept); None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
