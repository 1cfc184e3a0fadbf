"""In-memory providers for the engine's service tests: fast, deterministic, countable.

They implement the provider interface over plain dicts, so a service test can drive a
whole run against a real database without a network. The integration tests use the
real providers against the sandbox process instead.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connections.providers.base import (
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

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class CountingHttp:
    """Stands in for HttpClient: counts the calls a provider makes."""

    def __init__(self):
        self.request_count = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True


class World:
    """The state of two fake systems: a CRM to read and an audience to write."""

    def __init__(self, *, page_size: int = 3, max_batch: int = 4):
        self.page_size = page_size
        self.max_batch = max_batch
        # CRM: external id -> (version, fields); versions grow with every edit.
        self.crm: dict[str, tuple[int, dict[str, Any]]] = {}
        self.version = 0
        # Audience: lowercased email -> member.
        self.members: dict[str, dict[str, Any]] = {}
        self.upsert_calls: list[list[str]] = []
        self.reject: dict[str, str] = {}
        self.retriable_failures: set[str] = set()
        # Raised by the next read of that page number (1-based), or by every upsert.
        self.fail_on_page: dict[int, Exception] = {}
        self.fail_upsert: Exception | None = None
        # Emails whose presence in a batch makes the whole batch refused.
        self.poison: set[str] = set()
        # The audience's replies tell each member's status after the write, as Mailchimp's do.
        self.report_status = False
        # The fields each system reports through discovery: name -> type. Tests remove or
        # retype one to make the schema drift.
        self.crm_fields = {name: "string" for name in (
            "email", "firstname", "lastname", "phone", "company", "hs_email_optout", "sms_status")}
        self.audience_fields = {name: "text" for name in (
            "email_address", "status", "tags", "FNAME", "LNAME", "PHONE", "COMPANY", "SMS")}

    def add(self, external_id: str, **fields: Any) -> None:
        """Create or edit a CRM record (an edit merges into its fields)."""
        self.version += 1
        current = self.crm.get(external_id, (0, {}))[1]
        self.crm[external_id] = (self.version, {**current, **fields})

    def provider_for(self, connection, fields: Sequence[str] = ()) -> Provider:
        cls = {"fakecrm": FakeCrm, "fakeaudience": FakeAudience}[connection.provider]
        return cls(self)


class FakeCrm(Provider):
    name = "fakecrm"
    label = "Fake CRM"
    default_base_url = "http://fake.invalid"
    keys = RecordKeys({"email": "email"}, to_create=("email",))
    max_batch = 100
    max_page = 3

    def __init__(self, world: World):
        super().__init__(ProviderConfig(base_url=self.default_base_url), CountingHttp())
        self.world = world

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        return {}

    def discover_fields(self) -> list[FieldInfo]:
        return [FieldInfo(name, name, type) for name, type in self.world.crm_fields.items()]

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        since = int(cursor or 0)
        changed = sorted((version, external_id, fields) for external_id, (version, fields) in self.world.crm.items()
                         if version > since)
        size = self.world.page_size
        for number, start in enumerate(range(0, max(len(changed), 1), size), start=1):
            self.http.request_count += 1
            failure = self.world.fail_on_page.pop(number, None)
            if failure is not None:
                raise failure
            rows = changed[start:start + size]
            records = [
                RemoteRecord(external_id, dict(fields), modified_at=T0 + timedelta(seconds=version))
                for version, external_id, fields in rows
            ]
            yield ChangePage(records=records, cursor=str(rows[-1][0]) if rows else str(since), total=len(changed))

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        return [RemoteRecord(i, dict(self.world.crm[i][1])) for i in external_ids if i in self.world.crm]

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        raise ProviderError("The fake CRM is read-only.")

    def archive(self, external_id: str) -> None:
        raise ProviderError("The fake CRM is read-only.")

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        return [external_id for external_id, (_, fields) in self.world.crm.items()
                if (email and fields.get("email") == email) or (phone and fields.get("phone") == phone)]

    def erase(self, external_id: str) -> dict:
        raise ProviderError("The fake CRM is read-only.")


class FakeAudience(Provider):
    """Upserts members by email, like Mailchimp's batch subscribe."""

    name = "fakeaudience"
    label = "Fake audience"
    default_base_url = "http://fake.invalid"
    keys = RecordKeys({"email": "email_address"}, to_create=("email",), to_update=("email",))
    max_page = 10
    # As Mailchimp: an existing member can be unsubscribed or cleaned (see _upsert).
    writable_consent_states = frozenset({"unsubscribed", "cleaned"})

    def __init__(self, world: World):
        super().__init__(ProviderConfig(base_url=self.default_base_url), CountingHttp())
        self.world = world
        self.max_batch = world.max_batch

    @classmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        return {}

    def discover_fields(self) -> list[FieldInfo]:
        return [FieldInfo(name, name, type) for name, type in self.world.audience_fields.items()]

    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        self.http.request_count += 1
        records = [RemoteRecord(member["id"], {k: v for k, v in member.items() if k != "id"})
                   for member in self.world.members.values()]
        yield ChangePage(records=records, cursor="read")

    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        return []

    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        assert len(records) <= self.max_batch, "the engine must respect max_batch"
        self.http.request_count += 1
        self.world.upsert_calls.append([record.email for record in records])
        if self.world.fail_upsert is not None:
            raise self.world.fail_upsert
        if any(record.email in self.world.poison for record in records):
            raise ProviderError("400 Bad Request: the batch holds an invalid member", status=400)
        return [self._upsert(record) for record in records]

    def _upsert(self, record: OutgoingRecord) -> RecordResult:
        email = record.email.lower()
        if email in self.world.reject:
            return RecordResult(record.key, ok=False, error_class="Invalid Resource", message=self.world.reject[email])
        if email in self.world.retriable_failures:
            return RecordResult(record.key, ok=False, error_class="busy", message="Try again later.", retriable=True)
        member_id = hashlib.md5(email.encode()).hexdigest()
        member = self.world.members.get(email)
        if member is None:
            member = {"id": member_id, "email_address": email, "status": record.email_consent or "subscribed"}
            self.world.members[email] = member
        elif record.email_consent in ("unsubscribed", "cleaned"):
            member["status"] = record.email_consent
        member.update(record.fields)
        status = member["status"] if self.world.report_status else None
        return RecordResult(record.key, ok=True, external_id=member_id, fields=dict(record.fields),
                            email_consent=status)

    def archive(self, external_id: str) -> None:
        self.http.request_count += 1
        member = next(m for m in self.world.members.values() if m["id"] == external_id)
        member["status"] = "archived"

    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        member = self.world.members.get((email or "").lower())
        return [member["id"]] if member else []

    def erase(self, external_id: str) -> dict:
        self.http.request_count += 1
        email = next(e for e, m in self.world.members.items() if m["id"] == external_id)
        del self.world.members[email]
        return {"request": "erase", "status": 204, "outcome": "erased"}


def fake_workspace(**sync_fields):
    """Create a CRM -> audience sync over the fake providers, mapped like the demo's."""
    from connections.models import Connection
    from mappings.models import FieldMapping
    from syncapp.models import Sync, SyncConnection

    crm = Connection.objects.create(name="CRM", provider="fakecrm", base_url="http://fake.invalid/crm",
                                    access_token="crm-secret-token-123")
    audience = Connection.objects.create(name="Audience", provider="fakeaudience", base_url="http://fake.invalid/aud",
                                         api_key="audience-secret-key-456")
    sync = Sync.objects.create(name="CRM to audience", schedule_minutes=0, **sync_fields)
    SyncConnection.objects.create(sync=sync, connection=crm, read=True, write=False)
    SyncConnection.objects.create(sync=sync, connection=audience, read=False, write=True)
    rows = [
        (crm, "email", "email", "in", ["trim", "lowercase"]),
        (crm, "first_name", "firstname", "in", ["trim"]),
        (crm, "last_name", "lastname", "in", ["trim"]),
        (crm, "phone", "phone", "in", ["phone_e164"]),
        (crm, "email_consent", "hs_email_optout", "in", ["optout_flag"]),
        (audience, "email", "email_address", "out", []),
        (audience, "first_name", "FNAME", "out", []),
        (audience, "last_name", "LNAME", "out", []),
        (audience, "phone", "PHONE", "out", []),
    ]
    for connection, hub_field, external_field, direction, transforms in rows:
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, transforms=transforms,
                                    is_owner=connection is crm)
    return sync
