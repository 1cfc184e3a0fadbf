"""Pushing pending contacts, in batches, over the fake providers."""
import re

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from audit.suppression import suppress
from connections.providers.base import AuthenticationError, OutgoingRecord, ProviderError, TransientError
from mappings.models import FieldMapping
from syncapp.models import ConsentEvent, Contact, RecordError, RecordLink, Sync, SyncConnection, SyncRun
from syncapp.services.pending import pending_mark
from syncapp.services.plan import sync_plan_build
from syncapp.services.push import HubRow, PendingLink, _apply, _archive_remote, _pending, upsert_isolating
from syncapp.services.runs import run_execute, run_request
from syncapp.services.tracker import RunTracker
from tests.audit_order import statements_after_the_head
from tests.syncapp.fake_providers import FakeAudience, World, fake_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World(page_size=50, max_batch=4)


@pytest.fixture
def sync():
    return fake_workspace()


def execute(sync, world) -> SyncRun:
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def seed(world, count):
    for i in range(count):
        world.add(str(i), email=f"p{i}@example.com", firstname=f"P{i}", lastname="Lee")


def audience_links():
    return RecordLink.objects.filter(connection__name="Audience")


def pending_audience_links():
    """The audience's links a sync has marked for a push."""
    return audience_links().filter(pending_pushes__isnull=False)


def pending_link(contact, connection, **fields) -> RecordLink:
    """Create a link marked for a push by every sync writing its system."""
    link = RecordLink.objects.create(contact=contact, connection=connection, **fields)
    pending_mark(links=RecordLink.objects.filter(pk=link.pk))
    return link


class TestBatches:
    def test_pending_contacts_go_out_in_full_batches(self, sync, world):
        seed(world, 10)
        run = execute(sync, world)
        assert [len(call) for call in world.upsert_calls] == [4, 4, 2]
        assert run.pushed_count == 10
        assert run.api_calls == {"CRM": 1, "Audience": 3}
        assert len(world.members) == 10
        member = world.members["p3@example.com"]
        assert {k: member[k] for k in ("email_address", "status", "FNAME", "LNAME")} == {
            "email_address": "p3@example.com", "status": "subscribed", "FNAME": "P3", "LNAME": "Lee",
        }

    def test_a_smaller_sync_batch_size_is_honoured(self, world):
        sync = fake_workspace(batch_size=3)
        seed(world, 7)
        execute(sync, world)
        assert [len(call) for call in world.upsert_calls] == [3, 3, 1]

    def test_accepted_records_get_their_id_base_and_lose_the_mark(self, sync, world):
        seed(world, 1)
        execute(sync, world)
        link = audience_links().get()
        assert link.external_id == world.members["p0@example.com"]["id"]
        assert link.merge_base == {"email_address": "p0@example.com", "FNAME": "P0", "LNAME": "Lee"}
        assert not link.pending_pushes.exists() and link.last_pushed_at is not None
        pushed = AuditEvent.objects.get(action="contact.pushed")
        assert pushed.system == "Audience"
        assert pushed.changes == {"email_address": [None, "p0@example.com"], "FNAME": [None, "P0"],
                                  "LNAME": [None, "Lee"]}

    def test_a_second_run_without_changes_makes_no_write_calls(self, sync, world):
        seed(world, 6)
        execute(sync, world)
        calls = len(world.upsert_calls)
        run = execute(sync, world)
        assert len(world.upsert_calls) == calls
        assert run.api_calls["Audience"] == 0

    def test_a_pending_link_whose_values_the_system_holds_is_settled_without_a_call(self, sync, world):
        seed(world, 2)
        execute(sync, world)
        pending_mark(links=audience_links())
        run = execute(sync, world)
        assert run.api_calls["Audience"] == 0
        assert not pending_audience_links().exists()


class TestRejections:
    def test_a_rejected_record_is_an_error_keeps_its_mark_and_is_not_resent_unchanged(self, sync, world):
        seed(world, 3)
        world.reject["p1@example.com"] = "p1@example.com looks fake or invalid, please enter a real email address."
        first = execute(sync, world)
        assert first.status == SyncRun.Status.PARTIAL
        error = RecordError.objects.get()
        assert error.error_class == "Invalid Resource" and error.connection.name == "Audience"
        assert error.contact.email == "p1@example.com"
        link = audience_links().get(contact__email="p1@example.com")
        assert link.pending_pushes.exists() and link.rejected_payload_hash

        calls = len(world.upsert_calls)
        second = execute(sync, world)
        assert len(world.upsert_calls) == calls
        assert second.api_calls["Audience"] == 0

    def test_a_rejected_record_is_resent_once_it_changes(self, sync, world):
        seed(world, 2)
        world.reject["p1@example.com"] = "bad"
        execute(sync, world)
        del world.reject["p1@example.com"]
        world.add("1", firstname="Fixed")
        run = execute(sync, world)
        assert world.upsert_calls[-1] == ["p1@example.com"]
        assert world.members["p1@example.com"]["FNAME"] == "Fixed"
        assert RecordError.objects.get().resolved
        assert run.status == SyncRun.Status.SUCCEEDED

    def test_a_retriable_failure_is_retried_next_run(self, sync, world):
        seed(world, 2)
        world.retriable_failures.add("p0@example.com")
        execute(sync, world)
        assert audience_links().get(contact__email="p0@example.com").pending_pushes.exists()
        world.retriable_failures.clear()
        execute(sync, world)
        assert world.upsert_calls[-1] == ["p0@example.com"]
        assert "p0@example.com" in world.members

    def test_a_batch_refused_outright_is_narrowed_to_the_bad_record(self, sync, world):
        seed(world, 4)
        world.poison.add("p2@example.com")
        run = execute(sync, world)
        assert set(world.members) == {"p0@example.com", "p1@example.com", "p3@example.com"}
        error = RecordError.objects.get()
        assert error.contact.email == "p2@example.com" and "invalid member" in error.message
        assert run.pushed_count == 3

    def test_a_contact_without_email_is_not_applicable_to_an_email_keyed_system_not_an_error(self, sync, world):
        contact = Contact.objects.create(email=None, phone="+14155550100")
        link = pending_link(contact, sync.connections.get(name="Audience"))
        run = execute(sync, world)
        assert world.upsert_calls == []
        assert not RecordError.objects.exists()
        assert run.status == SyncRun.Status.SUCCEEDED
        # It waits unmarked: the read that gives it an email marks it again.
        assert not link.pending_pushes.exists()

    def test_a_no_email_error_from_an_earlier_version_is_resolved_once_the_contact_is_not_applicable(
        self, sync, world
    ):
        contact = Contact.objects.create(email=None, phone="+14155550100")
        audience = sync.connections.get(name="Audience")
        pending_link(contact, audience)
        before = SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL, status=SyncRun.Status.PARTIAL)
        earlier = RecordError.objects.create(run=before, connection=audience, contact=contact, error_class="no_email",
                                             message="Not sent: the contact has no email address.")
        execute(sync, world)
        earlier.refresh_from_db()
        assert earlier.resolved

    def test_two_contacts_landing_on_one_remote_record_are_not_both_linked(self, sync, world):
        audience = sync.connections.get(name="Audience")
        for first_name in ("One", "Two"):
            contact = Contact.objects.create(email="same@example.com", first_name=first_name)
            pending_link(contact, audience)
        execute(sync, world)
        assert audience_links().exclude(external_id=None).count() == 1
        assert RecordError.objects.get().error_class == "already_linked"


class TestFailures:
    def test_transient_failures_keep_every_mark_for_the_next_run(self, sync, world):
        seed(world, 3)
        world.fail_upsert = TransientError("Fake audience: 503 after 5 attempts", status=503)
        run = execute(sync, world)
        assert run.status == SyncRun.Status.FAILED
        assert "503" in run.error and run.error.startswith("Audience: ")
        assert pending_audience_links().count() == 3
        world.fail_upsert = None
        assert execute(sync, world).status == SyncRun.Status.SUCCEEDED
        assert len(world.members) == 3

    def test_pushing_the_same_batch_twice_duplicates_nothing(self, sync, world):
        seed(world, 5)
        execute(sync, world)
        # As if the worker died after the provider accepted the batch: nothing recorded.
        audience_links().update(external_id=None, merge_base={})
        pending_mark(links=audience_links())
        execute(sync, world)
        assert len(world.members) == 5
        assert audience_links().exclude(external_id=None).count() == 5


def companies_sync(sync) -> Sync:
    """Create a second sync of the same CRM and audience, with its own mappings: the company only."""
    crm, audience = sync.connections.get(name="CRM"), sync.connections.get(name="Audience")
    companies = Sync.objects.create(name="Companies", schedule_minutes=0)
    SyncConnection.objects.create(sync=companies, connection=crm, read=True, write=False)
    SyncConnection.objects.create(sync=companies, connection=audience, read=False, write=True)
    for connection, hub_field, external_field, direction in (
        (crm, "email", "email", "in"), (crm, "company", "company", "in"),
        (audience, "email", "email_address", "out"), (audience, "company", "COMPANY", "out"),
    ):
        FieldMapping.objects.create(sync=companies, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, is_owner=connection == crm)
    return companies


class TestSyncsSharingASystem:
    """Two syncs write the audience, each with its own mappings: each pushes what it marked, and only that."""

    def test_a_change_waits_for_the_sync_that_read_it_whatever_the_other_does(self, sync, world):
        companies = companies_sync(sync)
        world.add("1", email="ann@example.com", firstname="Ann", lastname="Lee", company="Acme")
        execute(sync, world)
        execute(companies, world)
        world.add("1", firstname="Annie")
        world.fail_upsert = RuntimeError("stop before pushing")
        assert execute(sync, world).status == SyncRun.Status.FAILED
        world.fail_upsert = None
        link = audience_links().get()
        assert list(link.pending_pushes.values_list("sync__name", flat=True)) == [sync.name]

        # The other sync reads the same edit: nothing of its own to send, and the names'
        # change is neither sent with its mappings nor settled in its place.
        world.upsert_calls.clear()
        execute(companies, world)
        assert world.upsert_calls == []
        assert list(link.pending_pushes.values_list("sync__name", flat=True)) == [sync.name]

        run = execute(sync, world)
        assert (run.pushed_count, world.upsert_calls) == (1, [["ann@example.com"]])
        member = world.members["ann@example.com"]
        assert (member["FNAME"], member["LNAME"], member["COMPANY"]) == ("Annie", "Lee", "Acme")
        assert not link.pending_pushes.exists()

    def test_each_sync_sends_its_own_fields(self, sync, world):
        companies = companies_sync(sync)
        world.add("1", email="ann@example.com", firstname="Ann", company="Acme")
        execute(companies, world)
        assert {k: v for k, v in world.members["ann@example.com"].items() if k.isupper()} == {"COMPANY": "Acme"}
        execute(sync, world)
        assert {k: v for k, v in world.members["ann@example.com"].items() if k.isupper()} == {
            "COMPANY": "Acme", "FNAME": "Ann"}
        assert not audience_links().get().pending_pushes.exists()


class TestConsentOutgoing:
    def test_an_unsubscribed_contact_is_unsubscribed_there(self, sync, world):
        world.members["ann@example.com"] = {"id": "x", "email_address": "ann@example.com", "status": "subscribed"}
        world.add("1", email="ann@example.com", hs_email_optout="true")
        execute(sync, world)
        assert world.members["ann@example.com"]["status"] == "unsubscribed"
        assert audience_links().get().email_consent_base == "unsubscribed"

    def test_a_remote_opt_out_is_never_lifted(self, sync, world):
        contact = Contact.objects.create(email="ann@example.com", email_consent="subscribed")
        pending_link(contact, sync.connections.get(name="Audience"), external_id="m1",
                     email_consent_base="unsubscribed")
        world.members["ann@example.com"] = {"id": "m1", "email_address": "ann@example.com", "status": "unsubscribed"}
        execute(sync, world)
        assert world.members["ann@example.com"]["status"] == "unsubscribed"


class TestUpsertIsolating:
    def records(self, *emails):
        return [OutgoingRecord(key=i, email=email, fields={}) for i, email in enumerate(emails)]

    def test_authentication_failures_are_raised(self):
        world = World()
        world.fail_upsert = AuthenticationError("401")
        with pytest.raises(AuthenticationError):
            upsert_isolating(FakeAudience(world), self.records("a@x.io", "b@x.io"))

    def test_retriable_errors_are_raised_not_bisected(self):
        world = World()
        world.fail_upsert = ProviderError("429", retriable=True)
        with pytest.raises(ProviderError):
            upsert_isolating(FakeAudience(world), self.records("a@x.io", "b@x.io"))
        assert len(world.upsert_calls) == 1

    def test_one_result_per_record_in_order(self):
        world = World()
        world.poison.add("c@x.io")
        results = upsert_isolating(FakeAudience(world), self.records("a@x.io", "b@x.io", "c@x.io", "d@x.io"))
        assert [(r.key, r.ok) for r in results] == [(0, True), (1, True), (2, False), (3, True)]


class TestConsentReportedInReplies:
    """A state the audience reports in reply to a write is taken in as a read one is."""

    @pytest.fixture
    def world(self):
        world = World(page_size=50, max_batch=4)
        world.report_status = True
        return world

    def linked(self, sync, world, email="ann@example.com", **fields):
        world.add("1", email=email, firstname="Ann", **fields)
        execute(sync, world)
        return Contact.objects.get(email=email)

    def test_an_unsubscribe_the_write_did_not_ask_for_reaches_the_hub_and_the_other_links(self, sync, world):
        ann = self.linked(sync, world)
        back = Sync.objects.create(name="Audience to CRM", schedule_minutes=0)
        SyncConnection.objects.create(sync=back, connection=sync.connections.get(name="Audience"), write=False)
        SyncConnection.objects.create(sync=back, connection=sync.connections.get(name="CRM"), read=False)
        assert audience_links().get().email_consent_base == "subscribed"
        world.members["ann@example.com"]["status"] = "unsubscribed"  # on the audience's own page
        world.add("1", firstname="Anna")
        run = execute(sync, world)

        ann.refresh_from_db()
        assert ann.email_consent == "unsubscribed"
        event = ConsentEvent.objects.get(contact=ann, state="unsubscribed")
        assert (event.system, event.evidence, event.previous_state, event.hub_state, event.run_id) == (
            "Audience", ConsentEvent.Evidence.API_READ, "subscribed", "unsubscribed", run.pk)
        # The CRM link is marked for the sync writing the CRM (this one only reads it).
        crm = RecordLink.objects.get(contact=ann, connection__name="CRM")
        assert list(crm.pending_pushes.values_list("sync__name", flat=True)) == ["Audience to CRM"]
        assert not audience_links().get().pending_pushes.exists()
        assert AuditEvent.objects.get(contact_id=ann.pk, action="contact.updated", system="Audience").changes == {
            "email_consent": ["unknown", "unsubscribed"]}

    def test_the_default_status_of_a_new_member_is_no_statement(self, sync, world):
        ann = self.linked(sync, world)
        assert Contact.objects.get(pk=ann.pk).email_consent == "unknown"
        event = ConsentEvent.objects.get(contact=ann)
        assert (event.state, event.evidence, event.hub_state) == (
            "subscribed", ConsentEvent.Evidence.SYNC_WRITE, "unknown")

    def test_an_opted_out_member_met_when_creating_opts_the_contact_out(self, sync, world):
        world.members["ann@example.com"] = {"id": "x", "email_address": "ann@example.com", "status": "unsubscribed"}
        ann = self.linked(sync, world)
        assert ann.email_consent == "unsubscribed"

    def test_a_reply_never_resubscribes(self, sync, world):
        ann = self.linked(sync, world, hs_email_optout="true")
        world.members["ann@example.com"]["status"] = "subscribed"
        world.add("1", firstname="Anna")
        execute(sync, world)
        ann.refresh_from_db()
        assert ann.email_consent == "unsubscribed"

    def test_the_twin_holding_the_address_takes_it_too(self, sync, world):
        world.add("1", email="ann@example.com", firstname="Ann")
        world.add("2", email="ANN@example.com", firstname="Twin")
        execute(sync, world)
        _ann = RecordLink.objects.get(connection__name="CRM", external_id="1").contact
        twin = RecordLink.objects.get(connection__name="CRM", external_id="2").contact
        world.members["ann@example.com"]["status"] = "cleaned"
        world.add("1", firstname="Anna")
        execute(sync, world)
        twin.refresh_from_db()
        assert twin.email_consent == "cleaned"


class TestPeopleErasedOnRequest:
    def test_a_pending_contact_holding_a_suppressed_identifier_is_never_sent(self, sync, world):
        seed(world, 3)
        world.fail_upsert = RuntimeError("stop before pushing")
        assert execute(sync, world).status == SyncRun.Status.FAILED
        assert pending_audience_links().count() == 3
        # Made pending before the person was erased (or typed in by hand): defence in depth.
        suppress(email="p1@example.com", phone=None)
        Contact.objects.filter(email="p2@example.com").update(phone="+14155550100")
        suppress(email=None, phone="+14155550100")
        world.fail_upsert = None
        world.upsert_calls.clear()
        execute(sync, world)
        assert world.upsert_calls == [["p0@example.com"]]
        assert set(world.members) == {"p0@example.com"}
        assert not pending_audience_links().exists()


def running(sync, world):
    """Return the tracker of a run under way and the audience's endpoint plan, as run_execute makes them."""
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING)
    run.status = SyncRun.Status.RUNNING
    tracker = RunTracker(run)
    tracker.plan = plan = sync_plan_build(sync=sync, provider_for=world.provider_for)
    return tracker, plan.writers[0]


def statement_index(queries, table: str, starts: str, *, locking: bool = False) -> int:
    """Return the position of the first statement on `table` starting with `starts` (FOR UPDATE ones with `locking`)."""
    for index, query in enumerate(queries.captured_queries):
        # Statements run for many rows at once are captured as "N times: ...".
        sql = re.sub(r"^\d+ times: ", "", query["sql"])
        if sql.startswith(starts) and f'"{table}"' in sql and (not locking or "FOR UPDATE" in sql):
            return index
    raise AssertionError(f"no {starts} on {table}")


class TestAuditRowsComeLast:
    """A batch's transaction writes its audit rows after every other row: the chain's
    head is locked until the commit, and a transaction holding it must wait for nothing
    (docs/security.md)."""

    @pytest.fixture
    def world(self):
        world = World(page_size=50, max_batch=4)
        world.report_status = True
        return world

    def test_a_batch_audits_after_its_links_contacts_errors_and_counts(self, sync, world):
        world.add("1", email="ann@example.com", firstname="Ann")
        world.add("2", email="ANN@example.com", firstname="Twin")
        world.add("3", email="bo@example.com", firstname="Bo")
        execute(sync, world)
        ann = RecordLink.objects.get(connection__name="CRM", external_id="1").contact
        twin = RecordLink.objects.get(connection__name="CRM", external_id="2").contact
        # Ann unsubscribed on the audience's own page (its reply says so, and the address
        # rule gives the twin the same); Bo's next write is refused.
        world.members["ann@example.com"]["status"] = "unsubscribed"
        world.add("1", firstname="Anna")
        world.add("3", firstname="Bob")
        world.reject["bo@example.com"] = "bad"
        world.fail_upsert = RuntimeError("stop before pushing")
        execute(sync, world)
        world.fail_upsert = None
        tracker, writer = running(sync, world)
        batch = list(_pending(tracker=tracker, writer=writer))
        assert {item.payload.email for item in batch} == {"ann@example.com", "bo@example.com"}
        results = upsert_isolating(writer.provider, [item.record() for item in batch])
        events_before = AuditEvent.objects.count()

        with CaptureQueriesContext(db_connection) as queries:
            _apply(tracker, writer, batch, results, progress=True)

        assert statements_after_the_head(queries) == []
        ann.refresh_from_db()
        twin.refresh_from_db()
        assert (ann.email_consent, twin.email_consent) == ("unsubscribed", "unsubscribed")
        assert RecordError.objects.get().contact.email == "bo@example.com"
        assert SyncRun.objects.get(pk=tracker.run.pk).pushed_count == 1
        # The reply's statement, what the address gave the twin, and the push, in one append.
        assert list(AuditEvent.objects.order_by("id")[events_before:].values_list("action", "contact_id")) == [
            ("contact.updated", ann.pk), ("contact.updated", twin.pk), ("contact.pushed", ann.pk)]

    def test_a_batch_locks_the_contacts_before_the_links_as_a_page_does(self, sync, world):
        world.add("1", email="ann@example.com", firstname="Ann")
        execute(sync, world)
        world.members["ann@example.com"]["status"] = "unsubscribed"
        world.add("1", firstname="Anna")
        world.fail_upsert = RuntimeError("stop before pushing")
        execute(sync, world)
        world.fail_upsert = None
        tracker, writer = running(sync, world)
        batch = list(_pending(tracker=tracker, writer=writer))
        results = upsert_isolating(writer.provider, [item.record() for item in batch])

        with CaptureQueriesContext(db_connection) as queries:
            _apply(tracker, writer, batch, results, progress=True)

        # A page updates the contacts, then their links; a batch whose reply changes a
        # contact takes the same order, so the two never wait for each other crosswise.
        links_updated = statement_index(queries, "syncapp_recordlink", "UPDATE")
        if db_connection.features.has_select_for_update:
            assert statement_index(queries, "syncapp_contact", "SELECT", locking=True) < links_updated
        else:
            # SQLite locks the whole database at the first write; the contacts are read first all the same.
            assert statement_index(queries, "syncapp_contact", "SELECT") < links_updated
        assert Contact.objects.get().email_consent == "unsubscribed"

    def test_archiving_there_audits_after_the_links_errors_and_counts(self, sync, world, monkeypatch):
        seed(world, 2)
        execute(sync, world)
        links = list(audience_links().order_by("contact__email"))
        RecordLink.objects.filter(pk__in=[link.pk for link in links]).update(archived=True)
        pending_mark(links=audience_links())
        tracker, writer = running(sync, world)
        archive = writer.provider.archive

        def archive_or_refuse(external_id):
            if external_id == links[1].external_id:
                raise ProviderError("404 Not Found", status=404)
            archive(external_id)

        monkeypatch.setattr(writer.provider, "archive", archive_or_refuse)
        pending = [PendingLink(link.pk, link.contact_id, link.external_id, link.stable_id, link.merge_base,
                               link.email_consent_base, link.rejected_payload_hash, True, contact=HubRow({}))
                   for link in links]

        with CaptureQueriesContext(db_connection) as queries:
            _archive_remote(tracker, writer, pending)

        assert statements_after_the_head(queries) == []
        assert world.members["p0@example.com"]["status"] == "archived"
        assert [link.pending_pushes.exists() for link in audience_links().order_by("contact__email")] == [
            False, True]
        assert RecordError.objects.get().error_class == "archive_failed"
        assert AuditEvent.objects.filter(action="contact.archived").get().contact_id == links[0].contact_id


@pytest.mark.django_db(transaction=True)
def test_a_contact_changed_while_its_batch_is_on_the_wire_is_newer_than_the_links_agreement(sync, world, monkeypatch):
    """Found by review of the echoes: a link's agreement was dated by the reply, after a
    change made to its contact while the batch was on the wire; the base then held the
    older payload, the system's read-back equalled it, and it passed for an echo, so the
    change (whose mark the push clears) was never sent. The agreement now dates from when
    the payload was read.
    """
    seed(world, 1)
    original = FakeAudience.upsert_batch

    def edited_meanwhile(provider, records):
        Contact.objects.filter(email="p0@example.com").update(first_name="Changed", updated_at=timezone.now())
        return original(provider, records)

    monkeypatch.setattr(FakeAudience, "upsert_batch", edited_meanwhile)
    execute(sync, world)

    link = audience_links().get()
    contact = Contact.objects.get(email="p0@example.com")
    assert link.merge_base["FNAME"] == "P0"
    assert contact.updated_at > link.updated_at
