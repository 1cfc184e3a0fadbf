"""A pull page of 100 records costs a few statements, at most the same number whatever it holds.

Issue 12, item 1 ("Engine throughput"), as a specification rather than a timing
(bench/sync_bench.py times it): the statements one page costs on the run's own path
(`apply_page`, then the early push's look for full batches), for a page of new
contacts, one of the same contacts changed, and one of them unchanged (echoes), each
with the shared hostile records mixed in (refused addresses, a duplicate, bad phones).
A statement run for many rows (`executemany`) counts once per row: the database runs
each one. A page with nothing to write to a table skips that statement, so an unchanged
page costs fewer; none costs more than MOST (docs/benchmarks.md lists them).
"""
from __future__ import annotations

import re

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from audit import chain
from audit.models import AuditChainHead
from audit.services import CHAIN_HEAD_ID
from connections.providers.base import ChangePage, RemoteRecord
from syncapp.models import Contact, RecordError, RecordLink, SyncRun
from syncapp.services import tracker
from syncapp.services.plan import sync_plan_build
from syncapp.services.pull import apply_page, prepare_page
from syncapp.services.push import Pusher
from syncapp.services.runs import run_request
from syncapp.services.tracker import RunTracker
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db

PAGE = 100
# Transaction control is not a statement on the data.
CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


@pytest.fixture
def world():
    # A batch larger than a page: the early push only looks, it sends nothing here.
    return World(page_size=PAGE, max_batch=500)


@pytest.fixture
def sync():
    return fake_workspace()


def statements(queries: CaptureQueriesContext) -> int:
    """Count the statements run: an executemany once per row, transaction control left out."""
    count = 0
    for query in queries.captured_queries:
        sql = query["sql"]
        if sql.lstrip().upper().startswith(CONTROL):
            continue
        many = re.match(r"(\d+) times: ", sql)
        count += int(many.group(1)) if many else 1
    return count


def page_records(hostile_contacts: list[dict], first_name: str) -> list[RemoteRecord]:
    """A page: the hostile records, then ordinary ones up to PAGE, with `first_name` on the ordinary ones."""
    records = [RemoteRecord(f"h{number}", {k: v for k, v in row.items() if k != "why"})
               for number, row in enumerate(hostile_contacts)]
    records += [
        RemoteRecord(f"p{number}", {"email": f"person{number}@example.com", "firstname": first_name,
                                    "lastname": "Lee", "phone": f"+1415555{number:04d}",
                                    "hs_email_optout": "false"})
        for number in range(PAGE - len(records))
    ]
    return records


class Run:
    """One running run of the sync, applying pages as `pull_endpoint` does, with the early push after each."""

    def __init__(self, sync, world):
        run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
        SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING)
        run.status = SyncRun.Status.RUNNING
        self.tracker = RunTracker(run)
        self.tracker.plan = self.plan = sync_plan_build(sync=sync, provider_for=world.provider_for)
        self.reader = self.plan.readers[0]
        self.pusher = Pusher(tracker=self.tracker, plan=self.plan, writer=self.plan.writers[0])

    def page(self, records: list[RemoteRecord]) -> CaptureQueriesContext:
        """Apply one page of `records`; return the statements it ran."""
        prepared = prepare_page(reader=self.reader, page=ChangePage(records=records, cursor="next"))
        with CaptureQueriesContext(db_connection) as queries:
            marked = apply_page(tracker=self.tracker, plan=self.plan, reader=self.reader, prepared=prepared)
            self.pusher.send_early(marked.get(self.pusher.writer.connection.pk, 0))
        return queries

    def close(self) -> None:
        self.pusher.close()


@pytest.fixture
def run(sync, world, monkeypatch):
    # The run's counts are saved every few seconds, not per page (tracker.CHECKPOINT_SECONDS):
    # the pages here count only the first save, however slow the machine.
    monkeypatch.setattr(tracker, "CHECKPOINT_SECONDS", 3600)
    # The audit chain's head, as a migrated database has it (a flushed test database
    # may not: the first audit write then makes it, two statements more).
    AuditChainHead.objects.get_or_create(id=CHAIN_HEAD_ID, defaults={"last_hash": chain.GENESIS})
    run = Run(sync, world)
    yield run
    run.close()


# At most this many statements a page, whatever it holds: 17 on a run's first page of new
# contacts today, the echoes' lookup and the lock of the run's row that fences the page's
# commit included (issue 12 aims for 6: see docs/benchmarks.md, "Engine throughput").
MOST = 17


def test_a_page_costs_few_statements_whatever_it_holds(run, hostile_contacts):
    new = run.page(page_records(hostile_contacts, "New"))
    assert Contact.objects.count() > 70 and RecordError.objects.filter(resolved=False).exists()
    changed = run.page(page_records(hostile_contacts, "Changed"))
    assert set(Contact.objects.filter(email__startswith="person").values_list("first_name", flat=True)) == {"Changed"}
    unchanged = run.page(page_records(hostile_contacts, "Changed"))
    assert RecordLink.objects.filter(connection__name="CRM").count() == Contact.objects.count()

    counts = {"new": statements(new), "changed": statements(changed), "unchanged": statements(unchanged)}
    listing = "\n".join(f"{name}: {counts[name]}\n" + "\n".join(f"    {query['sql'][:150]}" for query in queries)
                        for name, queries in (("new", new), ("changed", changed), ("unchanged", unchanged)))
    print(listing)
    assert max(counts.values()) <= MOST, listing


def test_a_page_runs_no_statement_per_record(run, hostile_contacts):
    run.page(page_records(hostile_contacts, "New"))
    changed = run.page(page_records(hostile_contacts, "Changed"))
    assert not [query["sql"] for query in changed if re.match(r"\d+ times: ", query["sql"])]
