"""Pages over large tables cost the same at ten rows and at ten million.

Issue 12's "pages at a million", as specifications rather than timings (bench/
pages_bench.py times them): the contact list at its sort, deep in the list and searched,
and every admin list with its filters and search, each
- runs the same number of queries however many rows there are (no query per row);
- never counts a large table whole (counts stop at a cap) nor runs SELECT DISTINCT
  over one (a date hierarchy, Django's stock list filter);
- is served by an index for each sort and filter: no table scan, no sort of every
  matching row (a search may sort its matches); checked on SQLite's plan with and
  without the statistics ANALYZE keeps, and on PostgreSQL's with scans turned off.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from connections.models import Connection
from syncapp.models import Contact, RecordError, RecordLink, Sync, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER
from syncapp.selectors import ContactCursor
from tests.syncapp.page_queries import (
    distinct_scans,
    filtering_scans,
    full_counts,
    plan,
    request,
    sorts,
    touches_large_table,
)
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db

# More than one page of the admin (100 rows) and of the contact list (50).
MANY = 120
# Enough rows for SQLite's statistics to tell a few rows from many: with fewer, a scan of
# the whole (tiny) table is rightly its cheapest plan.
ANALYZED = 2_000
DEEP = "deep"  # stands for a cursor or page number computed once the rows exist

# (name, role of the user who sees it, URL name, query); "search" pages may sort their matches.
PAGES = [
    ("contacts", MARKETER, "contact_list", {}),
    ("contacts, deep page", MARKETER, "contact_list", {"after": DEEP}),
    ("contacts, previous page", MARKETER, "contact_list", {"before": DEEP}),
    ("contacts, search by email", MARKETER, "contact_list", {"q": "person1"}),
    ("contacts, search by names", MARKETER, "contact_list", {"q": "ada love"}),
    ("contacts, search by phone", MARKETER, "contact_list", {"q": "(415) 555-01"}),
    ("contacts, search, deep page", MARKETER, "contact_list", {"q": "ada", "after": DEEP}),
    ("runs", MARKETER, "admin:syncapp_syncrun_changelist", {}),
    ("runs, second page", MARKETER, "admin:syncapp_syncrun_changelist", {"p": "2"}),
    ("runs by status", MARKETER, "admin:syncapp_syncrun_changelist", {"status__exact": "failed"}),
    ("runs by trigger", MARKETER, "admin:syncapp_syncrun_changelist", {"trigger__exact": "manual"}),
    ("runs by sync", MARKETER, "admin:syncapp_syncrun_changelist", {"sync__id__exact": DEEP}),
    ("record errors", MARKETER, "admin:syncapp_recorderror_changelist", {}),
    ("record errors by severity", MARKETER, "admin:syncapp_recorderror_changelist", {"severity__exact": "warning"}),
    ("record errors retriable", MARKETER, "admin:syncapp_recorderror_changelist", {"retriable__exact": "1"}),
    ("record errors resolved", MARKETER, "admin:syncapp_recorderror_changelist", {"resolved__exact": "1"}),
    ("record errors by class", MARKETER, "admin:syncapp_recorderror_changelist", {"error_class": "invalid_email"}),
    ("record errors by connection", MARKETER, "admin:syncapp_recorderror_changelist",
     {"connection__id__exact": DEEP}),
    ("record errors of a run", MARKETER, "admin:syncapp_recorderror_changelist", {"run__id__exact": DEEP}),
    ("record errors, search", MARKETER, "admin:syncapp_recorderror_changelist", {"q": "hs-7"}),
    ("audit events", COMPLIANCE, "admin:audit_auditevent_changelist", {}),
    ("audit events, second page", COMPLIANCE, "admin:audit_auditevent_changelist", {"p": "2"}),
    ("audit events by action", COMPLIANCE, "admin:audit_auditevent_changelist", {"action": "contact.updated"}),
    ("audit events by system", COMPLIANCE, "admin:audit_auditevent_changelist", {"system": "HubSpot"}),
    ("audit events by object type", COMPLIANCE, "admin:audit_auditevent_changelist", {"object_type": "run"}),
    ("audit events, search", COMPLIANCE, "admin:audit_auditevent_changelist", {"q": "7"}),
    ("syncs", MARKETER, "admin:syncapp_sync_changelist", {}),
    ("syncs, filtered and searched", MARKETER, "admin:syncapp_sync_changelist", {"paused__exact": "0", "q": "Hub"}),
    ("connections", MARKETER, "admin:connections_connection_changelist", {"provider": "hubspot", "q": "Hub"}),
    ("mappings", MARKETER, "admin:mappings_fieldmapping_changelist", {"direction__exact": "in", "q": "first"}),
]
# A search may sort its matches: an index finds them, in the order of what was searched.
SEARCHES = {name for name, _, _, query in PAGES if "q" in query}


@pytest.fixture
def sync():
    return workspace_make()


def grow(sync: Sync, rows: int) -> None:
    """Add `rows` contacts (each linked to both systems), runs, record errors, audit events, and a few syncs."""
    Sync.objects.bulk_create(Sync(name=f"Sync {Sync.objects.count() + n}") for n in range(rows // 20))
    hubspot, mailchimp = Connection.objects.get(name="HubSpot"), Connection.objects.get(name="Mailchimp")
    start = Contact.objects.count()
    contacts = Contact.objects.bulk_create(
        Contact(email=f"person{start + n}@example.com", first_name="Ada" if n % 2 else "Bob",
                last_name="Lovelace" if n % 3 else "Babbage", phone=f"+1415555{start + n:04d}")
        for n in range(rows)
    )
    RecordLink.objects.bulk_create(
        RecordLink(contact=contact, connection=system, external_id=f"{system.provider}-{contact.pk}")
        for contact in contacts for system in (hubspot, mailchimp)
    )
    statuses, triggers = ("succeeded", "failed", "partial"), ("schedule", "manual", "webhook")
    runs = SyncRun.objects.bulk_create(
        SyncRun(sync=sync, status=statuses[n % 3], trigger=triggers[n % 3]) for n in range(rows)
    )
    RecordError.objects.bulk_create(
        RecordError(run=runs[n // 20], connection=(hubspot, mailchimp)[n % 2], contact=contacts[n],
                    external_id=f"hs-{contacts[n].pk}", error_class=("invalid_email", "rejected")[n % 2],
                    severity=("error", "warning")[n % 2], message="Refused", retriable=bool(n % 2),
                    resolved=bool(n % 3 == 0))
        for n in range(rows)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(action=("contact.updated", "run.finished")[n % 2], system=("HubSpot", "Mailchimp")[n % 2],
                   object_type=("contact", "run")[n % 2], object_id=str(n), contact_id=contacts[n].pk,
                   run_id=runs[n].pk, changes={"first_name": ["Bob", "Ada"]})
        for n in range(rows)
    )


def resolved(query: dict, sync: Sync) -> dict:
    """Return `query` with DEEP replaced by a value of the rows that exist now."""
    deep = {
        "after": lambda: str(ContactCursor.of(Contact.objects.order_by("-updated_at", "-id")[10])),
        "before": lambda: str(ContactCursor.of(Contact.objects.order_by("-updated_at", "-id")[60])),
        "sync__id__exact": lambda: str(sync.pk),
        "connection__id__exact": lambda: str(Connection.objects.get(name="HubSpot").pk),
        "run__id__exact": lambda: str(SyncRun.objects.order_by("id")[1].pk),
    }
    return {name: deep[name]() if value == DEEP else value for name, value in query.items()}


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(user_with_role(role.lower(), role, staff=True))
    return client


@pytest.mark.parametrize(("name", "role", "url_name", "query"), PAGES, ids=[page[0] for page in PAGES])
def test_a_page_runs_as_many_queries_at_many_rows_as_at_few(sync, name, role, url_name, query):
    client = client_for(role)
    grow(sync, 70)
    few = request(client, reverse(url_name), resolved(query, sync))
    grow(sync, MANY)
    many = request(client, reverse(url_name), resolved(query, sync))
    assert few.status == many.status == 200
    assert len(many.queries) == len(few.queries), "\n".join(many.queries)


@pytest.mark.parametrize(("name", "role", "url_name", "query"), PAGES, ids=[page[0] for page in PAGES])
def test_a_page_neither_counts_nor_lists_the_distinct_values_of_a_whole_large_table(sync, name, role, url_name,
                                                                                       query):
    grow(sync, MANY)
    page = request(client_for(role), reverse(url_name), resolved(query, sync))
    assert page.status == 200
    assert full_counts(page.queries) == []
    assert distinct_scans(page.queries) == []


# SQLite's plans with and without ANALYZE; PostgreSQL's are checked with sequential scans
# off, which statistics do not change, so once.
STATISTICS = [False, True] if connection.vendor == "sqlite" else [False]


@pytest.mark.parametrize("statistics", STATISTICS, ids=["with statistics" if s else "without statistics"
                                                        for s in STATISTICS])
@pytest.mark.parametrize(("name", "role", "url_name", "query"), PAGES, ids=[page[0] for page in PAGES])
def test_every_sort_and_filter_of_a_page_is_served_by_an_index(sync, name, role, url_name, query, statistics):
    grow(sync, ANALYZED if statistics else MANY)
    if statistics:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    page = request(client_for(role), reverse(url_name), resolved(query, sync))
    assert page.status == 200
    for sql in filter(touches_large_table, page.queries):
        lines = plan(sql, may_sort=name in SEARCHES)
        assert filtering_scans(sql, lines) == [], f"{sql}\n" + "\n".join(lines)
        if name not in SEARCHES:
            assert sorts(lines) == [], f"{sql}\n" + "\n".join(lines)
