"""Everything one page of a pull writes, gathered in memory and then written in bulk.

A pull page's concerns (services.page_applier: matching and merging; page_deletes:
archived and restored records; page_marks: what this sync must push) each add to one
`PageChanges`; the applier writes it once, in a fixed number of queries whatever the
page's size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from audit.services import AuditRow
from syncapp.models import Contact, RecordLink
from syncapp.services.conflict_book import ConflictBook
from syncapp.services.plan import EndpointPlan, SyncPlan
from syncapp.services.record_errors import ErrorItem
from syncapp.services.tracker import RunTracker


@dataclass(slots=True, eq=False)
class NewLink:
    """A RecordLink to insert, as a plain row (see bulk_insert_rows): a page makes up to
    two per contact, and model instances cost more to build than to write."""

    contact: Contact
    connection_id: int
    external_id: str | None = None
    stable_id: str = ""
    merge_base: dict[str, Any] = field(default_factory=dict)
    remote_modified_at: Any = None
    email_consent_base: str = ""
    rejected_payload_hash: str = ""
    archived: bool = False
    last_pushed_at: Any = None
    created_at: Any = None
    updated_at: Any = None
    # Set once the row is inserted (bulk_insert_rows with set_ids).
    pk: int | None = None

    @property
    def contact_id(self) -> int | None:
        return self.contact.pk


class PageChanges:
    """The rows one page creates or changes, and its counts, before anything is written."""

    def __init__(self, *, tracker: RunTracker, plan: SyncPlan, reader: EndpointPlan):
        self.tracker = tracker
        self.plan = plan
        self.reader = reader
        self.connection = reader.connection
        self.now = timezone.now()
        self.errors: list[ErrorItem] = []
        self.created = self.updated = self.unchanged = self.conflicts = 0
        self.new_contacts: list[Contact] = []
        self.changed_contacts: dict[int, Contact] = {}
        self.changed_columns: set[str] = set()
        self.new_links: list[NewLink] = []
        self.changed_links: dict[int, RecordLink] = {}
        self.changed_link_columns: set[str] = set()
        # (contact, action, changes) for audit rows, built once new contacts have ids.
        self.audits: list[tuple[Contact, str, dict[str, list[Any]]]] = []
        # External ids of the records imported, with or without warnings.
        self.synced_ids: list[str] = []
        # id(contact) -> its link to the system being read, new or existing.
        self.reader_links: dict[int, RecordLink | NewLink] = {}
        # (contact, ConsentEvent fields) for the ledger, built once new contacts have ids.
        self.ledger: list[tuple[Contact, dict[str, Any]]] = []
        # New contacts made for a second record of this system with the same email, and
        # the external id of the record they duplicate: listed for review.
        self.duplicates: list[tuple[Contact, str]] = []
        self.book: ConflictBook = ConflictBook(sync_id=plan.sync.pk, run_id=tracker.run.pk, contact_ids=[])
        # Contacts whose record here came back after being archived.
        self.restored: list[int] = []
        # The page's audit rows, built by the applier's write; apply_page writes them last of all.
        self.audit_rows: list[AuditRow] = []
        # Links this sync is to push (saved or still to insert), and links that lose every
        # sync's mark (nothing is to be sent there): written after the links.
        self.marking: list[RecordLink | NewLink] = []
        self.unmarking: list[int] = []

    def link_changed(self, link: RecordLink, columns: set[str]) -> None:
        link.updated_at = self.now
        self.changed_links[link.pk] = link
        self.changed_link_columns.update(columns | {"updated_at"})

    def other_writers(self) -> list[int]:
        """The connection ids of the systems this sync writes, the one being read left out."""
        return [writer.connection.pk for writer in self.plan.writers if writer.connection.pk != self.connection.pk]
