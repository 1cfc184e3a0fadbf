"""The one interface every provider client implements, and the plain records it speaks.

Providers know HTTP and their provider's API, never the hub models or the engine: they
take and return the dataclasses below. Field values are keyed by the provider's own
field names (HubSpot property names; Mailchimp `email_address`, `status`, `tags` and
merge tags such as `FNAME`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import requests

    from connections.oauth import TokenGrant


@dataclass(frozen=True)
class ProviderConfig:
    """What a client needs to reach one account: plain values, secrets included."""

    base_url: str
    api_key: str = ""
    access_token: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    rate_limit_requests: int | None = None
    rate_limit_window_seconds: int | None = None
    max_concurrency: int | None = None
    # Names the budget shared by every worker using this account (the connection id).
    budget_key: str = ""
    # Where the budget is kept: "shared", "process" or "none" (connections.ratelimit).
    rate_budget: str = "shared"


# The kinds of value a field holds, whatever each provider calls its types: the mapping
# editor checks transforms and targets against these.
FIELD_KINDS = ("text", "number", "date", "datetime", "birthday", "bool", "enum", "phone", "email", "consent",
               "tags", "address", "url")


@dataclass(frozen=True)
class FieldInfo:
    """One field a system reports through discovery."""

    name: str
    label: str
    # The provider's own type name (HubSpot `string`, Mailchimp `text`...).
    type: str = "string"
    # One of FIELD_KINDS.
    kind: str = "text"
    options: tuple[str, ...] = ()
    read_only: bool = False
    # Computed by the system from other values (HubSpot `calculated`): never written.
    calculated: bool = False
    required: bool = False
    # The longest text the field holds, where the system says (Mailchimp `options.size`).
    max_length: int | None = None

    @property
    def writable(self) -> bool:
        return not (self.read_only or self.calculated)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "type": self.type, "kind": self.kind,
            "options": list(self.options), "read_only": self.read_only, "calculated": self.calculated,
            "required": self.required, "max_length": self.max_length,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldInfo:
        return cls(
            name=str(data["name"]), label=str(data.get("label") or data["name"]), type=str(data.get("type") or ""),
            kind=str(data.get("kind") or "text"), options=tuple(str(o) for o in data.get("options") or ()),
            read_only=bool(data.get("read_only")), calculated=bool(data.get("calculated")),
            required=bool(data.get("required")), max_length=data.get("max_length"),
        )


@dataclass(frozen=True)
class RemoteRecord:
    external_id: str
    fields: Mapping[str, Any]
    # For an archived record, when it was archived.
    modified_at: datetime | None = None
    archived: bool = False
    # An id that survives an email change where `external_id` does not (Mailchimp's
    # contact_id, while its member id is the MD5 of the address); "" when the
    # external id itself is stable.
    stable_id: str = ""
    # When the person opted in there, as the system reports it (Mailchimp's timestamp_opt).
    opted_in_at: datetime | None = None


@dataclass(frozen=True)
class ChangePage:
    """One page of changed records and the cursor to resume after it."""

    records: list[RemoteRecord]
    cursor: str
    total: int | None = None


@dataclass(frozen=True)
class OutgoingRecord:
    """A record to upsert. `key` is the caller's handle, echoed back in the result."""

    key: Any
    email: str
    fields: Mapping[str, Any]
    external_id: str | None = None
    # The contact's phone in E.164 ("" when it has none): the key of a phone-keyed system.
    phone: str = ""
    # The email consent state to apply, already decided by the engine's consent rule:
    # None leaves the remote state alone (new records get the connection's default).
    # Existing records take only the states in the provider's `writable_consent_states`.
    email_consent: str | None = None
    # The engine found the person's explicit opt-in newer than their opt-out: a
    # "subscribed" may then reach an opted-out record, as the provider's
    # `explicit_opt_in_state` (Mailchimp: pending, which sends a confirmation email).
    explicit_opt_in: bool = False
    # The email consent state to create the record with when it is new here: the hub's
    # consent where known, else the sync's chosen new-member status (see
    # `Provider.new_record_consent_states`). None: the record must not be created.
    email_consent_if_new: str | None = None


@dataclass(frozen=True)
class RecordResult:
    key: Any
    ok: bool
    external_id: str | None = None
    # Values as the provider now holds them, when its reply says (the new merge base).
    fields: Mapping[str, Any] | None = None
    # The record's stable id, when the reply gives it (see RemoteRecord.stable_id).
    stable_id: str = ""
    # The email consent state the record holds after the write, when the reply says:
    # a new record may take the connection's default, which is then no news on reading.
    email_consent: str | None = None
    error_class: str = ""
    message: str = ""
    retriable: bool = False


class ProviderError(Exception):
    """A call failed. `retriable` tells whether the same call may succeed later."""

    retriable = False

    def __init__(self, message: str, *, status: int | None = None, retriable: bool | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        # The provider's parsed error reply, for callers that pick out the records it
        # names; never shown as is (the message is the redacted summary).
        self.body = body
        if retriable is not None:
            self.retriable = retriable


class TransientError(ProviderError):
    """5xx, 429, timeouts and resets that outlasted the retries."""

    retriable = True


class AuthenticationError(ProviderError):
    """The credentials were refused (401/403): the connection needs attention."""


class MergeNotSupported(ProviderError):
    """The provider's API cannot merge two records into one."""


class FieldCreationNotSupported(ProviderError):
    """The provider's API cannot add a field (or not one of the kind asked for)."""


@dataclass(frozen=True)
class OAuthSpec:
    """How a provider's connections are authorized with OAuth 2.0 (run by `connections.oauth`).

    The URLs are the provider's own. A connection whose base URL is at the configured
    sandbox (`settings.SANDBOX_URL`) uses `sandbox_paths` on the sandbox's origin instead,
    and the sandbox's OAuth app. What a provider does beyond the standard flow is in its
    hooks, `Provider.oauth_grant_complete` and `Provider.oauth_token_error`.
    """

    authorize_url: str
    token_url: str
    # The scopes the sync needs, and nothing more; () for a provider without scopes.
    scopes: tuple[str, ...] = ()
    # Further endpoints the provider's `oauth_grant_complete` calls, by name
    # (Mailchimp's "metadata_url"); an installation may move any of them, as the two
    # above, with settings.OAUTH_ENDPOINTS.
    extra_urls: Mapping[str, str] = field(default_factory=dict)
    # The same endpoints in the sandbox's layout, as paths on its origin: "authorize_url",
    # "token_url" and each name of `extra_urls`. Empty: the sandbox does not emulate them.
    sandbox_paths: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordKeys:
    """What a system keys its records by (ARCHITECTURE.md, Identity), as hub identity keys.

    The hub knows two identity keys, "email" and "phone". `fields` names the external
    field that holds each key the system stores: it is read as identity (normalized,
    matched on) whether or not a mapping reads it. `to_create` are the keys a contact
    needs before a record is made for it there, and `to_update` the keys it needs for
    its record there to be written again: a system that upserts by email cannot take a
    contact without one. A contact lacking them is "not applicable" there: it waits,
    unsent and without an error, until it has them.
    """

    fields: Mapping[str, str]
    to_create: tuple[str, ...] = ()
    to_update: tuple[str, ...] = ()

    @property
    def email_field(self) -> str:
        """The external field holding the email address; "" where the system holds none."""
        return self.fields.get("email", "")

    @property
    def phone_field(self) -> str:
        """The external field holding the phone number, when it is an identity key there; else ""."""
        return self.fields.get("phone", "")


class Provider(ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    default_base_url: ClassVar[str]
    # What its records are keyed by, and what a contact needs to be written here.
    keys: ClassVar[RecordKeys]
    # The most records one write call accepts.
    max_batch: ClassVar[int]
    # The most records one `upsert_batch` takes, in several write calls of `max_batch`
    # when larger: what the provider batches across records (HubSpot's unsubscribes,
    # Mailchimp's batch operations) then spans those calls instead of costing one call
    # more each. None: `max_batch`.
    push_group: ClassVar[int | None] = None
    # The largest page one read call returns.
    max_page: ClassVar[int]
    # Published rate limit: requests per window (seconds), and concurrent requests.
    rate_limit: ClassVar[tuple[int, int] | None] = None
    max_concurrency: ClassVar[int | None] = None
    # Seconds to wait for a reply: the provider's own call timeout where it has one.
    read_timeout: ClassVar[float] = 30.0
    # The email consent states `upsert_batch` can give an existing record, and read back
    # as given. The engine sends no other (see syncapp.engine.consent.outgoing_consent):
    # a state the system cannot hold would differ again after every run, and be sent
    # again forever.
    writable_consent_states: ClassVar[frozenset[str]] = frozenset()
    # What a "subscribed" with `explicit_opt_in` turns an opted-out record into (None:
    # the provider cannot re-subscribe anyone; the record stays opted out).
    explicit_opt_in_state: ClassVar[str | None] = None
    # The email consent states a marketer may choose for records created here while the
    # hub does not know the person's consent (Mailchimp: pending, transactional,
    # subscribed). Empty: the system has no subscription status to give.
    new_record_consent_states: ClassVar[tuple[str, ...]] = ()
    # How connections authorize with OAuth; None: the provider takes other credentials
    # (an API key) and is not offered on the Connect page.
    oauth: ClassVar[OAuthSpec | None] = None

    @classmethod
    def oauth_grant_complete(
        cls, grant: TokenGrant, *, urls: Mapping[str, str], session: requests.Session, timeout: Any
    ) -> TokenGrant:
        """Return the grant of a finished code exchange, completed with what else the provider needs.

        `urls` are the flow's endpoints by name (the spec's, or the sandbox's for a
        connection to it); `session` is the guarded session every request goes through,
        with `timeout` for each. Mailchimp asks its metadata endpoint for the account's
        API root here. Raise ProviderError with a message safe to show when it fails.
        """
        return grant

    @classmethod
    def oauth_token_error(cls, status: int, body: Any) -> dict[str, str] | None:
        """Return a token endpoint's error reply (`body`, parsed JSON) as RFC 6749's `{error, error_description}`.

        Called only for an error status whose body has no "error" member; None leaves
        the reply as it is. HubSpot answers `{status: "BAD_REFRESH_TOKEN", message}`.
        """
        return None

    def __init__(self, config: ProviderConfig, http, *, fields: Sequence[str] = ()):
        self.config = config
        self.http = http
        # The external fields the caller needs. Providers that must name the fields
        # they read (HubSpot's properties) ask for these; the others return all fields.
        self.fields = tuple(fields)

    @classmethod
    def base_url_for(cls, config: ProviderConfig) -> str:
        """Return the API root to call: the configured one, else the provider's own."""
        return (config.base_url or cls.default_base_url).rstrip("/")

    @classmethod
    @abstractmethod
    def auth_headers(cls, config: ProviderConfig) -> dict[str, str]:
        """Return the headers that authenticate requests with this config's credentials."""

    @abstractmethod
    def discover_fields(self) -> list[FieldInfo]:
        """Return the fields a mapping can use."""

    @abstractmethod
    def read_changed(self, cursor: str | None) -> Iterator[ChangePage]:
        """Yield pages of records changed since `cursor` (all records when None)."""

    def full_read_cursor(self, cursor: str | None) -> str | None:
        """Return the cursor a read of every record starts from, `cursor` being the one in use.

        None (the default) reads everything from the beginning, which is right where a
        full read is a delta read from the start: it covers all the old cursor's window.
        A provider whose full read leaves out something its delta reads deliver
        (HubSpot's list leaves archived records out) returns a cursor that still owes it.
        """
        return None

    @abstractmethod
    def read_by_ids(self, external_ids: Sequence[str]) -> list[RemoteRecord]:
        """Return the records with these ids; unknown ids are left out."""

    @abstractmethod
    def upsert_batch(self, records: Sequence[OutgoingRecord]) -> list[RecordResult]:
        """Create or update up to `push_group` (else `max_batch`) records; one result per record."""

    @abstractmethod
    def archive(self, external_id: str) -> None:
        """Archive (soft-delete) one record."""

    @abstractmethod
    def find_person(self, *, email: str | None, phone: str | None) -> list[str]:
        """Return the ids of the records holding this email or this phone, found by searching the system.

        `email` is normalized, `phone` in E.164. A deletion request uses it to reach the
        records Syncapp never linked; a system whose API cannot search by one of them
        says so in its docstring, and its records are then found by their links only.
        """

    @abstractmethod
    def erase(self, external_id: str) -> dict[str, Any]:
        """Permanently delete one record and everything the provider keeps about it.

        Return a summary of the provider's answer for the deletion receipt (`request`,
        `status`, `outcome`: "erased" or "already_gone"); never a credential, nor the
        person's values. Raise ProviderError (TransientError when it may succeed later)
        as the other calls do.
        """

    def create_field(self, *, label: str, kind: str) -> FieldInfo:
        """Add a field named `label` holding values of `kind` (one of FIELD_KINDS); return it as discovered.

        Raise FieldCreationNotSupported where the API cannot add fields, or not of that kind.
        """
        raise FieldCreationNotSupported(f"{self.label} fields cannot be created from Syncapp.")

    def merge_records(self, primary_id: str, other_id: str) -> str:
        """Merge the record `other_id` into `primary_id`; return the surviving record's id.

        The other record is gone afterwards. Raise MergeNotSupported where the API has no merge.
        """
        raise MergeNotSupported(f"{self.label} cannot merge two records through its API.")
