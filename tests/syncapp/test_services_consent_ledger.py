"""The consent ledger's writes: audit rows come after every contact and link they lock.

The audit chain's head is one row, locked by each audit write until the commit. A
transaction that took it and then waited for a contact could deadlock with a reviewer's
resolution, which locks the contact and its links first and audits last. The ledger
writes its audit rows last, as every transaction does (docs/security.md).
"""
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.services import audit_record
from syncapp.models import Conflict, Contact, RecordLink
from syncapp.roles import REVIEWER
from syncapp.services.conflicts import conflict_resolve
from syncapp.services.consent_ledger import (
    ReportedState,
    consent_by_address_apply,
    consent_reports_apply,
    consent_statement_record,
)
from tests.audit_order import statements_after_the_head
from tests.syncapp.conflict_rows import conflict_make, contact_make, two_way_make
from tests.workspace import user_with_role


@pytest.fixture
def workspace():
    return two_way_make()


@pytest.fixture
def twins(workspace):
    """Two contacts holding one address (a duplicate pair not merged yet), both subscribed."""
    first = contact_make(workspace, "ann@example.com", first_name="Ann", email_consent="subscribed")
    second = Contact.objects.create(email="ann@example.com", first_name="Annie", email_consent="subscribed")
    RecordLink.objects.create(contact=second, connection=workspace.mailchimp, external_id="mailchimp-second")
    return first, second


def consent_and_marks(contact: Contact) -> tuple[str, dict[str, bool]]:
    """Return the contact's email consent, and for each of its systems whether a sync has its link marked."""
    contact.refresh_from_db()
    links = RecordLink.objects.filter(contact=contact).select_related("connection")
    return contact.email_consent, {link.connection.name: link.pending_pushes.exists() for link in links}


@pytest.mark.django_db
class TestAuditRowsComeLast:
    def test_a_users_statement_locks_both_holders_of_the_address_before_it_audits(self, twins):
        first, second = twins
        with CaptureQueriesContext(connection) as queries:
            consent_statement_record(contact=first, channel="email", state="unsubscribed", user=None,
                                     note="Phone call")

        assert statements_after_the_head(queries) == []
        assert consent_and_marks(first) == ("unsubscribed", {"HubSpot": True, "Mailchimp": True})
        assert consent_and_marks(second) == ("unsubscribed", {"Mailchimp": True})
        # One append: the statement, then what the address gave the other contact.
        assert list(AuditEvent.objects.order_by("id").values_list("action", "contact_id")) == [
            ("consent.recorded", first.pk), ("contact.updated", second.pk)]

    def test_a_write_reply_locks_both_holders_of_the_address_before_it_audits(self, workspace, twins):
        first, second = twins
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            changed = consent_reports_apply(
                reports=[ReportedState(contact_id=second.pk, state="unsubscribed", agreed="subscribed")],
                system="Mailchimp", connection_id=workspace.mailchimp.pk)

        assert changed == [second.pk]
        assert statements_after_the_head(queries) == []
        # Mailchimp told it: only the other systems are sent the new state.
        assert consent_and_marks(second) == ("unsubscribed", {"Mailchimp": False})
        assert consent_and_marks(first) == ("unsubscribed", {"HubSpot": True, "Mailchimp": True})
        assert list(AuditEvent.objects.order_by("id").values_list("contact_id", flat=True)) == [second.pk, first.pk]

    def test_the_address_rule_writes_its_rows_after_the_links_or_hands_them_to_the_caller(self, twins):
        first, second = twins
        Contact.objects.filter(pk=second.pk).update(email_consent="unsubscribed")
        second.refresh_from_db()
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            assert consent_by_address_apply(contacts=[second]) == [first.pk]
        assert statements_after_the_head(queries) == []
        assert AuditEvent.objects.get().contact_id == first.pk

        Contact.objects.filter(pk=first.pk).update(email_consent="subscribed")
        handed = []
        with transaction.atomic():
            consent_by_address_apply(contacts=[second], audits=handed)
        assert [row.contact_id for row in handed] == [first.pk]
        assert AuditEvent.objects.count() == 1


def _in_thread(errors: list, work) -> threading.Thread:
    def run():
        try:
            work()
        except Exception as error:  # the test asserts there were none
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_lock_waiters(count: int, timeout: float = 20.0) -> None:
    """Wait until `count` sessions of this database wait on a lock (PostgreSQL's view of it)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # The activity view is read once per transaction unless its snapshot is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{count} sessions never waited on a lock")


@pytest.mark.django_db(transaction=True)
def test_a_write_reply_and_a_reviewers_resolution_on_one_address_do_not_deadlock(workspace, twins):
    """On PostgreSQL, with real row locks: the reply for one contact, the resolution for its twin.

    The test holds the chain's head first, so that both wait for it in a known order:
    the reply first. Had the reply taken the head before the twin's contact row, it
    would hold the head while waiting for that row, which the resolution holds while
    waiting for the head: PostgreSQL would abort one of them as a deadlock.
    """
    if connection.vendor != "postgresql":
        pytest.skip("Row locks and deadlocks are PostgreSQL's; SQLite serializes writers.")
    first, second = twins
    conflict = conflict_make(workspace, first, hubspot="Anna", mailchimp="Annie")
    reviewer = user_with_role("rita", REVIEWER)
    errors: list[Exception] = []

    def reply():
        with transaction.atomic():
            consent_reports_apply(
                reports=[ReportedState(contact_id=second.pk, state="unsubscribed", agreed="subscribed")],
                system="Mailchimp", connection_id=workspace.mailchimp.pk)

    def resolution():
        conflict_resolve(conflict=conflict, value="Anna", resolution=Conflict.Resolution.SIDE, user=reviewer,
                         reason="HubSpot has the signed form")

    with transaction.atomic():
        audit_record(action="test.head_held", object_type="test", object_id="1")
        threads = [_in_thread(errors, reply)]
        _wait_for_lock_waiters(1)
        threads.append(_in_thread(errors, resolution))
        _wait_for_lock_waiters(2)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()

    assert errors == []
    first.refresh_from_db()
    assert (first.first_name, first.email_consent) == ("Anna", "unsubscribed")
    assert Conflict.objects.get(pk=conflict.pk).status == Conflict.Status.RESOLVED
