"""Textline API v1 subscribers (a fictional SMS platform, emulated by `tests.plugins.textline_emulator`):
fields, full and delta reads, upserts by phone, deletion.

A provider used only by the tests, registered by them (`tests.plugins.fixtures`), to
prove that the provider interface carries a system keyed by phone. The API root is
`https://api.textline.example/v1` (a sandbox's is `<sandbox>/textline/v1`); requests
carry the account's key as `Authorization: Bearer <key>`.

Fields keep Textline's names: `phone_number` (E.164, the identity key), `first_name`,
`last_name` and `sms_status` ("subscribed" or "unsubscribed": the SMS consent). Textline
holds no email: `OutgoingRecord.email` and its email consent are ignored, and no email
consent state is writable. A record is written by its phone (`OutgoingRecord.phone`):
a contact without one is not applicable here (`keys`), and a contact whose phone
changed is a new subscriber, the old one staying as it was, because Textline updates
only by phone.

Reads list the subscribers by id (`after`, 100 a page). A full read lists every
subscriber; a delta read those updated since the watermark less an overlap
(`updated_after`, `settings["overlap_seconds"]`, 30 unless set). Paging by id within a
fixed filter moves nothing when a subscriber is edited during the read; the cursor is
ActiveCampaign's (`IdKeysetRead`), which reads the same way: the watermark saved is the
newest `updated_at` read, never later than when the read began, so a subscriber edited
behind the read's position is reached by the next one. Textline deletes outright and
lists no deletions: a delta never delivers an archived record.

Writes: up to 100 records in one `POST /subscribers/upsert`, which answers each item on
its own; an item refused (a malformed phone, a new subscriber without `sms_status`) is a
failed result of class "rejected", the others are written.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from connections.providers.activecampaign import IdKeysetRead
from connections.providers.base import (
    AuthenticationError,
    ChangePage,
    FieldInfo,
    OutgoingRecord,
    Provider,
    ProviderConfig,
    ProviderError,
    RecordKeys,
    RecordResult,
    RemoteRecord,
)
from connections.providers.cursors import CursorStuck, InvalidCursor, from_epoch_ms
from connections.redaction import redact

SUBSCRIBERS = "/subscribers"
PHONE, FIRST_NAME, LAST_NAME, SMS_STATUS = "phone_number", "first_name", "last_name", "sms_status"
# What a write may carry besides the phone, which is the key and never a changed value.
WRITTEN_FIELDS = (FIRST_NAME, LAST_NAME, SMS_STATUS)
KIND_OF_TYPE = {"phone": "phone", "text": "text"}
DEFAULT_OVERLAP_SECONDS = 30


class TextlineProvider(Provider):
    name = "textline"
    label = "Textline"
    default_base_url = "https://api.textline.example/v1"
    keys = RecordKeys({"phone": PHONE}, to_create=("phone",), to_update=("phone",))
    max_batch = 100
    max_page = 100
    # The emulator's default limit: 20 requests a second.
    rate_limit = (20, 1)

    def __init__(self, config: ProviderConfig, http, *, fields: Sequence[str] = (),
                 clock: Callable[[], float] = time.time):
        super().__init__(config, http, fields=fields)
        # The reader's clock: a watermark is never later than when its read began.
        self.clock = clock

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        if not config.api_key:
            raise AuthenticationError("The Textline connection has no API key.")
        return {"Authorization": f"Bearer {config.api_key}"}

    def discover_fields(self) -> list[FieldInfo]:
        """Return Textline's subscriber fields; `sms_status` is the SMS consent."""
        items = (self._call("GET", "/fields") or {}).get("fields") or []
        return [FieldInfo(name=str(item["name"]), label=str(item.get("label") or item["name"]),
                          type=str(item.get("type") or "text"),
                          kind="consent" if item["name"] == SMS_STATUS else KIND_OF_TYPE.get(item.get("type"), "text"),
                          options=tuple(str(option) for option in item.get("options") or ()),
                          required=bool(item.get("required")))
                for item in items]

    # Reading

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        """List the subscribers updated since `cursor` (every one when None), by id; 100 a page."""
        overlap_ms = int(_overlap_seconds(self.config.settings) * 1000)
        try:
            read = IdKeysetRead.open(cursor, now_ms=int(self.clock() * 1000))
        except InvalidCursor as error:
            raise ProviderError(str(error)) from None
        while not read.finished:
            params: dict[str, Any] = {"limit": self.max_page}
            if read.after is not None:
                params["after"] = read.after
            if read.since is not None:
                params["updated_after"] = _iso_ms(read.since - overlap_ms)
            reply = self._call("GET", SUBSCRIBERS, params=params) or {}
            records = [_record(item) for item in reply.get("subscribers") or []]
            try:
                read.page_done(records, more=reply.get("next_after") is not None)
            except CursorStuck as error:
                raise ProviderError(str(error)) from None
            yield ChangePage(records=records, cursor=read.cursor())

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        """Return the subscribers with these ids (`ids=1,2,3`, 100 a call); unknown ids are left out."""
        wanted = [str(external_id) for external_id in external_ids if str(external_id).isdigit()]
        records: list[RemoteRecord] = []
        for start in range(0, len(wanted), self.max_page):
            reply = self._call("GET", SUBSCRIBERS, params={"ids": ",".join(wanted[start:start + self.max_page])})
            records += [_record(item) for item in (reply or {}).get("subscribers") or []]
        return records

    # Writing

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        """Upsert up to 100 records by phone in one call; one result each, in order."""
        if len(records) > self.max_batch:
            raise ValueError(f"Textline takes at most {self.max_batch} records per batch, got {len(records)}.")
        if not records:
            return []
        items = [_item(record) for record in records]
        results = (self._call("POST", f"{SUBSCRIBERS}/upsert", json={"subscribers": items}) or {}).get("results")
        if not isinstance(results, list) or len(results) != len(records):
            raise ProviderError(f"Textline answered an upsert of {len(records)} subscribers with "
                                f"{len(results) if isinstance(results, list) else 'no'} results.")
        return [_result(record, result) for record, result in zip(records, results, strict=True)]

    # Deleting and finding

    def archive(self, external_id: str) -> None:
        """Delete the subscriber: Textline has no archive. One already gone is what archiving wants."""
        try:
            self._call("DELETE", f"{SUBSCRIBERS}/{quote(str(external_id), safe='')}")
        except ProviderError as error:
            if error.status != 404:
                raise

    def erase(self, external_id: str) -> dict[str, Any]:
        """Delete the subscriber for good; an id Textline no longer knows is "already_gone"."""
        summary: dict[str, Any] = {"request": "DELETE /subscribers/{id}"}
        try:
            response = self.http.request("DELETE", f"{SUBSCRIBERS}/{quote(str(external_id), safe='')}")
        except ProviderError as error:
            if error.status != 404:
                raise self._clearer(error, "DELETE", SUBSCRIBERS) from None
            return {**summary, "status": 404, "outcome": "already_gone"}
        return {**summary, "status": response.status_code, "outcome": "erased"}

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        """Return the ids of the subscribers with this phone (`phone_number=`, exact); Textline holds no email."""
        if not phone:
            return []
        reply = self._call("GET", SUBSCRIBERS, params={PHONE: phone, "limit": 1}) or {}
        return [str(item["id"]) for item in reply.get("subscribers") or []]

    # Errors

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request through the HTTP layer; a refusal's message is Textline's own."""
        try:
            return self.http.json(method, path, **kwargs)
        except ProviderError as error:
            raise self._clearer(error, method, path) from None

    def _clearer(self, error: ProviderError, method: str, path: str) -> ProviderError:
        """Return `error` with Textline's `{"error": {code, message}}` as its message, where it has one."""
        detail = error.body.get("error") if isinstance(error.body, Mapping) else None
        if type(error) is not ProviderError or not isinstance(detail, Mapping):
            return error
        summary = redact(f"{detail.get('message')} ({detail.get('code')})", (self.config.api_key,))
        return ProviderError(f"Textline {method} {path} failed with HTTP {error.status}: {summary}",
                             status=error.status, body=error.body)


def _record(item: Mapping[str, Any]) -> RemoteRecord:
    return RemoteRecord(external_id=str(item["id"]),
                        fields={name: item.get(name) for name in (PHONE, *WRITTEN_FIELDS)},
                        modified_at=parse_time(item.get("updated_at")))


def _result(record: OutgoingRecord, result: Mapping[str, Any]) -> RecordResult:
    error = result.get("error")
    if isinstance(error, Mapping) or "id" not in result:
        detail = error if isinstance(error, Mapping) else {}
        return RecordResult(key=record.key, ok=False, external_id=record.external_id, error_class="rejected",
                            message=f"Textline refused {record.phone or 'a subscriber without a phone'}: "
                                    f"{detail.get('message') or 'no reason given'} ({detail.get('code')})")
    subscriber = result.get("subscriber") or {}
    written = [PHONE, *(name for name in WRITTEN_FIELDS if name in record.fields)]
    return RecordResult(key=record.key, ok=True, external_id=str(result["id"]),
                        fields={name: subscriber.get(name) for name in written})


def _item(record: OutgoingRecord) -> dict[str, str]:
    """Return the upsert item of a record: its phone, and the fields it carries."""
    item = {PHONE: record.phone}
    for name in WRITTEN_FIELDS:
        value = record.fields.get(name)
        if name not in record.fields or (name == SMS_STATUS and value in (None, "")):
            # No status says nothing: the subscriber keeps theirs (and a new one is refused).
            continue
        item[name] = "" if value is None else str(value)
    return item


def _iso_ms(ms: int) -> str:
    """Return a time as `updated_after` takes it: ISO 8601 in UTC, to the millisecond."""
    return from_epoch_ms(ms).isoformat(timespec="milliseconds")


def _overlap_seconds(settings: Mapping[str, Any]) -> float:
    value = settings.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ProviderError(f"The Textline connection setting overlap_seconds must be a number of 0 or more, "
                            f"not {value!r}.")
    return float(value)


def parse_time(value: Any) -> datetime | None:
    """Read a Textline time ("2026-12-04T10:00:00.123Z"); None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
