"""Deletion requests: filing, each system's attempts and retries, completion, receipts and alerts.

The systems are the sandbox's HubSpot and Mailchimp, reached through the real providers;
tests/integration/test_deletion.py follows a whole request and the resync after it.
"""
import json
import re
from datetime import date, timedelta

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from audit.deletion import (
    FAILING_AFTER_ATTEMPTS,
    TASK_LEASE,
    InvalidDeletionRequest,
    _task_answered,
    deletion_alerts_send,
    deletion_due_date,
    deletion_request_complete,
    deletion_request_file,
    deletion_requests_needing_attention,
    deletion_requests_to_complete,
    deletion_retry_delay,
    deletion_retry_due,
    deletion_schedules_ensure,
    deletion_task_execute,
    deletion_tasks_due,
)
from audit.models import AuditEvent, DeletionRequest, DeletionTask, Suppression
from audit.receipts import receipt_document, receipt_document_verify, receipt_verify
from audit.suppression import external_id_key, identifier_key, is_suppressed
from connections.providers.mailchimp import subscriber_hash
from connections.registry import provider_for as registry_provider_for
from syncapp.models import Conflict, Contact
from syncapp.roles import COMPLIANCE, MARKETER
from tests.audit.trail_rows import email_change, event
from tests.audit_order import statements_after_the_head
from tests.integration.workspace import hubspot_create, hubspot_edit, run_now, sandbox_sync
from tests.syncapp.conflict_rows import conflict_make, contact_make, side, two_way_make
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

ADA = "ada@example.com"


def names_ada(text: str) -> bool:
    """Whether `text` holds Ada's name or address; "ada" inside a hex digest is no trace of her."""
    return re.search(r"(?i)\bada\b", text) is not None


ADA_PHONE = "+14155550100"


@pytest.fixture
def compliance():
    return user_with_role("carol", COMPLIANCE)


def file(user, **fields):
    values = {"email": ADA, "phone": "", "regulation": "gdpr", "reference": "TICKET-1", "due_date": None}
    values.update(fields)
    return deletion_request_file(user=user, **values)


def execute_all(request, **options):
    """Make one attempt at every task of the request, as the workers would."""
    return [deletion_task_execute(task.pk, **options) for task in request.tasks.order_by("pk")]


def every_audit_text() -> str:
    return " ".join(f"{event.object_repr} {event.changes}" for event in AuditEvent.objects.all()).lower()


# Filing


def test_filing_creates_a_task_per_connection_and_suppresses_the_person_at_once(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})
    request = file(compliance, email=" Ada@Example.COM ", phone="+1 (415) 555-0100", regulation="ccpa")
    assert (request.email, request.phone) == (ADA, ADA_PHONE)
    assert request.status == DeletionRequest.Status.OPEN
    assert request.due_date == timezone.localdate() + timedelta(days=45)
    assert (request.email_key, request.phone_key) == (identifier_key("email", ADA), identifier_key("phone", ADA_PHONE))
    assert [(task.connection_name, task.provider, task.status) for task in request.tasks.all()] == [
        ("HubSpot", "hubspot", "pending"), ("Mailchimp", "mailchimp", "pending")]
    # From now on no sync reads the person in or writes them out.
    assert is_suppressed(email=ADA) and is_suppressed(phone=ADA_PHONE)
    assert Suppression.objects.filter(request=request).count() == 2


def test_filing_is_audited_with_keyed_hashes_never_the_address(compliance):
    request = file(compliance, phone=ADA_PHONE)
    event = AuditEvent.objects.get(action="deletion.requested")
    assert (event.actor, event.object_id) == (compliance, str(request.pk))
    assert event.changes["email_key"] == [None, request.email_key]
    assert not names_ada(every_audit_text()) and "4155550100" not in every_audit_text()


def test_filing_queues_one_job_per_system(compliance, queued_tasks, django_capture_on_commit_callbacks):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})
    with django_capture_on_commit_callbacks(execute=True):
        request = file(compliance)
    queued = sorted((task["func"], task["args"]) for task in queued_tasks())
    assert queued == sorted(("audit.tasks.deletion_task_execute_task", (task.pk,)) for task in request.tasks.all())


def test_due_dates_default_to_30_days_for_gdpr_and_45_for_ccpa():
    filed = date(2026, 1, 31)
    assert deletion_due_date(regulation="gdpr", filed_on=filed) == date(2026, 3, 2)
    assert deletion_due_date(regulation="ccpa", filed_on=filed) == date(2026, 3, 17)


def test_an_edited_due_date_is_kept(compliance):
    due = timezone.localdate() + timedelta(days=10)
    assert file(compliance, due_date=due).due_date == due


@pytest.mark.parametrize(("fields", "field"), [
    ({"email": "", "phone": ""}, ""),
    ({"email": "ada@"}, "email"),
    ({"email": "ada@example.com, bob@example.com"}, "email"),
    ({"email": "", "phone": "555-0100"}, "phone"),
    ({"email": "", "phone": "+1 415 555 0100 ext. 9"}, "phone"),
    ({"email": "", "phone": "call me"}, "phone"),
    ({"regulation": "hipaa"}, "regulation"),
    ({"reference": "  "}, "reference"),
    ({"reference": "Request from ADA@example.com"}, "reference"),
    ({"due_date": date(2020, 1, 1)}, "due_date"),
])
def test_malformed_requests_are_refused_naming_the_field(compliance, fields, field):
    with pytest.raises(InvalidDeletionRequest) as refused:
        file(compliance, **fields)
    assert refused.value.field == field and str(refused.value)
    assert not DeletionRequest.objects.exists() and not Suppression.objects.exists()


# Carrying a request out


@pytest.mark.integration
def test_a_person_nobody_holds_completes_not_found_everywhere_with_a_receipt(sandbox, compliance):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": "someone@example.com", "phone": "+14155550199"}])
    run_now(sync)
    request = file(compliance, email="nobody@example.com", phone="+14155550111")
    execute_all(request)
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.COMPLETED
    assert [(task.connection_name, task.status, task.found, task.erased_at) for task in request.tasks.all()] == [
        ("HubSpot", "not_found", [], None), ("Mailchimp", "not_found", [], None)]
    assert [(system["connection"], system["status"]) for system in request.receipt["systems"]] == [
        ("HubSpot", "not_found"), ("Mailchimp", "not_found")]
    assert request.receipt["hub"]["contacts_erased"] == 0
    assert receipt_verify(request)
    # Nobody was blocklisted or forgotten on the way: nothing was found to erase.
    assert sandbox.hubspot_gdpr_deleted() == [] and sandbox.mailchimp_forgotten() == []
    assert len(sandbox.hubspot_contacts()) == 1 and len(sandbox.mailchimp_members()) == 1


@pytest.mark.integration
def test_a_record_never_linked_is_found_by_searching_the_system(sandbox, compliance):
    sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": "ada.work@example.com", "mobilephone": ADA_PHONE}])
    request = file(compliance, email="", phone=ADA_PHONE)
    execute_all(request)
    hubspot_task = request.tasks.get(connection_name="HubSpot")
    assert hubspot_task.status == "erased" and len(hubspot_task.found) == 1
    assert hubspot_task.responses[0]["outcome"] == "erased"
    assert sandbox.hubspot_contacts() == []


@pytest.mark.integration
def test_a_system_that_is_down_makes_the_request_wait_and_retry_never_lose_it(sandbox, compliance):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA, "firstname": "Ada"}])
    run_now(sync)
    sandbox.faults(provider="mailchimp", rate=1.0, statuses=[503])
    request = file(compliance)
    hubspot_task, mailchimp_task = execute_all(request)
    assert hubspot_task.status == "erased"
    assert (mailchimp_task.status, mailchimp_task.attempts) == ("retrying", 1)
    assert "503" in mailchimp_task.last_error and ADA not in mailchimp_task.last_error
    # Not due before its backoff; due after it.
    assert deletion_tasks_due(now=timezone.now()) == []
    moment = timezone.now()
    for attempt in range(2, FAILING_AFTER_ATTEMPTS + 1):
        moment += deletion_retry_delay(attempt - 1) + timedelta(seconds=1)
        assert deletion_tasks_due(now=moment) == [mailchimp_task.pk]
        mailchimp_task = deletion_task_execute(mailchimp_task.pk, now=moment)
        assert (mailchimp_task.status, mailchimp_task.attempts) == ("retrying", attempt)
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.FAILING
    assert list(deletion_requests_needing_attention()) == [request]
    # Still held in the hub while a system has not answered: found by its link next time.
    assert request.email == ADA and mailchimp_task.next_attempt_at > moment
    sandbox.clear_faults()
    moment = mailchimp_task.next_attempt_at
    assert deletion_task_execute(mailchimp_task.pk, now=moment).status == "erased"
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.COMPLETED
    assert request.tasks.get(connection_name="Mailchimp").attempts == FAILING_AFTER_ATTEMPTS + 1
    assert sandbox.mailchimp_members() == []


@pytest.mark.integration
def test_a_refusal_fails_the_system_and_is_still_retried(sandbox, compliance):
    sandbox_sync(sandbox)
    from connections.models import Connection

    Connection.objects.filter(name="Mailchimp").update(api_key="wrong-key-us1")
    request = file(compliance)
    _, mailchimp_task = execute_all(request)
    assert mailchimp_task.status == "failed" and mailchimp_task.next_attempt_at is not None
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.FAILING
    Connection.objects.filter(name="Mailchimp").update(api_key=sandbox.mailchimp_key)
    assert deletion_task_execute(mailchimp_task.pk, now=mailchimp_task.next_attempt_at).status == "not_found"
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.COMPLETED


def test_a_task_is_not_run_twice_at_once_nor_before_its_time(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    request = file(compliance)
    task = request.tasks.get()
    later = timezone.now() + timedelta(hours=1)
    DeletionTask.objects.filter(pk=task.pk).update(next_attempt_at=later)
    assert deletion_task_execute(task.pk).attempts == 0


def test_lost_hand_outs_and_dead_workers_are_found_by_the_retry_schedule(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})
    request = file(compliance)
    hubspot_task, mailchimp_task = request.tasks.order_by("pk")
    now = timezone.now()
    # Just filed: the queue has them.
    assert deletion_tasks_due(now=now) == []
    # Never picked up: the first hand-out was lost.
    assert deletion_tasks_due(now=now + timedelta(minutes=11)) == [hubspot_task.pk, mailchimp_task.pk]
    # One taken by a worker that died: handed out again when its lease runs out.
    DeletionTask.objects.filter(pk=hubspot_task.pk).update(attempts=1, next_attempt_at=now + timedelta(minutes=15))
    DeletionTask.objects.filter(pk=mailchimp_task.pk).update(status="erased")
    assert deletion_tasks_due(now=now + timedelta(minutes=14)) == []
    assert deletion_tasks_due(now=now + timedelta(minutes=16)) == [hubspot_task.pk]


def test_a_request_whose_systems_all_answered_but_was_not_completed_is_completed_later(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    request = file(compliance)
    request.tasks.update(status="not_found")
    later = timezone.now() + timedelta(minutes=11)
    assert deletion_requests_to_complete(now=later) == [request.pk]
    assert deletion_request_complete(request_id=request.pk).status == DeletionRequest.Status.COMPLETED
    assert deletion_requests_to_complete(now=later) == []


def test_a_systems_answer_is_audited_after_the_task_and_the_requests_status(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    request = file(compliance)
    task = DeletionTask.objects.select_related("request").get(request=request)

    with CaptureQueriesContext(db_connection) as queries:
        _task_answered(task, [], [], now=timezone.now())

    # The chain's head stays locked until the commit (docs/security.md).
    assert statements_after_the_head(queries) == []
    request.refresh_from_db()
    assert (task.status, request.status) == ("not_found", DeletionRequest.Status.IN_PROGRESS)


def test_completion_audits_after_every_row_but_the_request_it_locked_first(compliance):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    Contact.objects.create(email=ADA, first_name="Ada")
    request = file(compliance)
    request.tasks.update(status="erased", found=["101"], responses=[{"external_id": "101", "outcome": "erased"}])

    with CaptureQueriesContext(db_connection) as queries:
        request = deletion_request_complete(request_id=request.pk)

    assert request.status == DeletionRequest.Status.COMPLETED
    assert 'FROM "audit_deletionrequest"' in queries.captured_queries[1]["sql"]
    # The receipt counts the audit rows redacted, which only the head can tell: it is
    # saved on the request's row, locked at the start, so waiting for nobody.
    assert [sql.split(" SET ")[0] for sql in statements_after_the_head(queries)] == [
        'UPDATE "audit_deletionrequest"']
    assert request.tasks.get().found == [external_id_key("101")]
    assert not Contact.objects.exists() and is_suppressed(email=ADA)


def test_a_workspace_without_connections_completes_at_once_with_the_hub_erased(compliance):
    from syncapp.models import Contact

    Contact.objects.create(email=ADA, first_name="Ada")
    Contact.objects.create(email="bob@example.com", phone=ADA_PHONE)
    Contact.objects.create(email="carl@example.com")
    request = file(compliance, phone=ADA_PHONE)
    request = deletion_request_complete(request_id=request.pk)
    assert request.status == DeletionRequest.Status.COMPLETED
    assert list(Contact.objects.values_list("email", flat=True)) == ["carl@example.com"]
    assert request.receipt["systems"] == [] and request.receipt["hub"]["contacts_erased"] == 2
    assert (request.email, request.phone) == ("", "")


def test_backoff_doubles_from_a_minute_up_to_six_hours():
    assert [deletion_retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert deletion_retry_delay(30) == timedelta(hours=6)


# Receipts


def test_a_receipt_verifies_and_fails_after_any_edit(compliance):
    request = deletion_request_complete(request_id=file(compliance).pk)
    assert receipt_verify(request)
    document = receipt_document(request)
    assert receipt_document_verify(document)
    assert document["signature"]["algorithm"] == "HMAC-SHA256"
    assert ADA not in str(document)
    # Keys reordered (as a database or an editor may) do not matter; a changed value does.
    document["receipt"] = dict(reversed(list(document["receipt"].items())))
    assert receipt_document_verify(document)
    document["receipt"]["hub"]["contacts_erased"] = 7
    assert not receipt_document_verify(document)
    request.receipt["request"]["reference"] = "TICKET-2"
    assert not receipt_verify(request)
    stored = DeletionRequest.objects.get(pk=request.pk)
    stored.receipt_signature = "0" * 64
    assert not receipt_verify(stored)
    assert not receipt_document_verify({"receipt": {}, "signature": "x"})


def test_a_receipt_signed_with_another_key_does_not_verify(compliance, settings):
    request = deletion_request_complete(request_id=file(compliance).pk)
    settings.RECEIPT_SIGNING_KEY = "another-key-" + "x" * 40
    assert not receipt_verify(request)


# Alerts and schedules


def test_overdue_and_failing_requests_are_mailed_to_compliance_once_a_day(compliance):
    user_with_role("dora", COMPLIANCE)
    user_with_role("mark", MARKETER)
    user_with_role("nomail", COMPLIANCE).__class__.objects.filter(username="nomail").update(email="")
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    overdue = file(compliance, reference="T-OVERDUE")
    DeletionRequest.objects.filter(pk=overdue.pk).update(due_date=timezone.localdate() - timedelta(days=1))
    failing = file(compliance, email="bob@example.com", reference="T-FAILING")
    DeletionRequest.objects.filter(pk=failing.pk).update(status=DeletionRequest.Status.FAILING)
    file(compliance, email="cleo@example.com", reference="T-FINE")
    now = timezone.now()
    assert sorted(deletion_alerts_send(now=now)) == sorted([overdue.pk, failing.pk])
    (message,) = mail.outbox
    assert sorted(message.to) == ["carol@example.com", "dora@example.com"]
    assert "T-OVERDUE" in message.body and "T-FAILING" in message.body and "T-FINE" not in message.body
    assert "ada@example.com" not in message.body and "bob@example.com" not in message.body
    assert f"/audit/deletions/{overdue.pk}/" in message.body
    # Once a day per request.
    assert deletion_alerts_send(now=now + timedelta(hours=23)) == []
    assert sorted(deletion_alerts_send(now=now + timedelta(hours=25))) == sorted([overdue.pk, failing.pk])
    assert len(mail.outbox) == 2


def test_without_anyone_to_tell_no_request_is_marked_alerted(compliance):
    from django.contrib.auth.models import User

    User.objects.update(email="")
    request = file(compliance)
    DeletionRequest.objects.filter(pk=request.pk).update(due_date=timezone.localdate() - timedelta(days=1))
    assert deletion_alerts_send() == []
    assert not mail.outbox and DeletionRequest.objects.get().alerted_at is None


def test_the_retry_and_alert_schedules_are_kept():
    Schedule.objects.filter(name__startswith="deletion:").delete()
    deletion_schedules_ensure()
    deletion_schedules_ensure()
    schedules = dict(Schedule.objects.filter(name__startswith="deletion:").values_list("name", "func"))
    assert schedules == {"deletion:retries": "audit.tasks.deletion_retry_due_task",
                         "deletion:alerts": "audit.tasks.deletion_alerts_task"}
    assert Schedule.objects.get(name="deletion:retries").minutes == 1


# The person as subject access finds them (audit.people)


def test_contacts_that_held_the_email_before_or_were_merged_with_its_holder_are_erased(compliance):
    moved = Contact.objects.create(email=ADA, first_name="Ada")
    email_change(moved, "ada.new@example.com")
    # A contact created with her address was merged into another, and deleted.
    survivor = Contact.objects.create(email="lovelace@example.com")
    merged_away = Contact.objects.create(email=ADA)
    event("contact.created", contact=merged_away, changes={"email": [None, ADA]})
    event("contact.merged", contact=survivor, changes={"merged_contact_id": [None, merged_away.pk]})
    merged_away.delete()
    Contact.objects.create(email="bob@example.com")

    request = deletion_request_complete(request_id=file(compliance).pk)

    assert list(Contact.objects.values_list("email", flat=True)) == ["bob@example.com"]
    assert request.contact_ids == sorted([moved.pk, survivor.pk])
    assert request.receipt["hub"]["contacts_erased"] == 2
    assert not names_ada(every_audit_text()) and "lovelace" not in every_audit_text()
    erased = set(AuditEvent.objects.filter(action="contact.erased").values_list("contact_id", flat=True))
    assert erased == {moved.pk, survivor.pk}


@pytest.mark.integration
def test_a_record_linked_to_a_contact_that_held_the_email_before_is_found_by_its_link(sandbox, compliance):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA, "firstname": "Ada"}])
    run_now(sync)
    (record,) = sandbox.hubspot_contacts()
    hubspot_edit(sandbox, record["id"], email="ada.new@example.com")
    run_now(sync)
    assert Contact.objects.get().email == "ada.new@example.com"

    # Her old address: HubSpot's search no longer finds it, the hub's link does.
    request = file(compliance)
    execute_all(request)

    assert request.tasks.get(connection_name="HubSpot").status == "erased"
    assert sandbox.hubspot_contacts() == [] and sandbox.mailchimp_members() == []
    assert not Contact.objects.exists()


# An attempt that goes wrong


class WorkerKilled(BaseException):
    """What a worker's process sees of its kill: nothing of it runs afterwards."""


def providers_with(**replacements):
    """Return a provider_for giving the real providers with some methods wrapped.

    Each keyword names a method, and gives a function of (provider, original method)
    returning the method to use instead.
    """
    def provider_for(connection, **options):
        provider = registry_provider_for(connection, **options)
        for name, replace in replacements.items():
            setattr(provider, name, replace(provider, getattr(provider, name)))
        return provider
    return provider_for


def test_a_system_whose_client_cannot_be_made_fails_its_task_and_is_retried(compliance):
    # A provider this installation no longer has: not a ProviderError.
    connection_make("Pipedrive", "pipedrive")
    request = file(compliance)
    before = timezone.now()

    (task,) = execute_all(request)

    assert task.status == "failed" and "Unknown provider 'pipedrive'" in task.last_error
    assert before + deletion_retry_delay(1) <= task.next_attempt_at <= timezone.now() + deletion_retry_delay(1)
    request.refresh_from_db()
    assert request.status == DeletionRequest.Status.FAILING


@pytest.mark.integration
def test_an_unexpected_error_is_kept_without_the_persons_identifiers(sandbox, compliance):
    sandbox_sync(sandbox)

    def search(provider, original):
        def find_person(**identifiers):
            raise KeyError(f"no index for {ADA.upper()} / {ADA_PHONE}")
        return find_person

    request = file(compliance, phone=ADA_PHONE)
    task = deletion_task_execute(request.tasks.get(connection_name="HubSpot").pk,
                                 provider_for=providers_with(find_person=search))

    assert task.status == "failed" and "KeyError" in task.last_error
    assert ADA not in task.last_error.lower() and ADA_PHONE not in task.last_error
    assert DeletionTask.objects.get(pk=task.pk).next_attempt_at > timezone.now()


@pytest.mark.integration
def test_each_answer_is_kept_as_it_comes_so_a_killed_worker_loses_none(sandbox, compliance):
    sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA}, {"email": "ada.work@example.com", "mobilephone": ADA_PHONE}])
    erasures = []

    def killed_after_one(provider, original):
        def erase(external_id):
            if erasures:
                raise WorkerKilled
            erasures.append(external_id)
            return original(external_id)
        return erase

    request = file(compliance, phone=ADA_PHONE)
    task = request.tasks.get(connection_name="HubSpot")
    with pytest.raises(WorkerKilled):
        deletion_task_execute(task.pk, provider_for=providers_with(erase=killed_after_one))

    task.refresh_from_db()
    assert len(task.found) == 2
    assert [(response["external_id"], response["outcome"]) for response in task.responses] == [
        (erasures[0], "erased")]
    # Its lease runs out: the next attempt erases the other record only.
    task = deletion_task_execute(task.pk, now=timezone.now() + TASK_LEASE + timedelta(seconds=1))
    assert task.status == "erased"
    assert [response["outcome"] for response in task.responses] == ["erased", "erased"]
    assert sandbox.hubspot_contacts() == [] and len(sandbox.hubspot_gdpr_deleted()) == 2


@pytest.mark.integration
def test_a_record_erased_by_an_attempt_whose_reply_was_lost_counts_as_erased(sandbox, compliance):
    sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA, "firstname": "Ada"}])

    def then_lose_the_next_reply(provider, original):
        def find_person(**identifiers):
            found = original(**identifiers)
            # HubSpot carries the erasure out; its reply never arrives.
            sandbox.faults(provider="hubspot", lost_reply_rate=1.0, count=1)
            return found
        return find_person

    request = file(compliance)
    task = deletion_task_execute(request.tasks.get(connection_name="HubSpot").pk,
                                 provider_for=providers_with(find_person=then_lose_the_next_reply))
    assert (task.status, len(task.found), task.responses) == ("retrying", 1, [])
    assert sandbox.hubspot_contacts() == []

    task = deletion_task_execute(task.pk, now=task.next_attempt_at)

    assert [response["outcome"] for response in task.responses] == ["already_gone"]
    assert task.status == "erased" and task.erased_at is not None


# Systems connected after the request was filed


def test_a_system_connected_after_filing_is_searched_before_the_request_completes(
        compliance, queued_tasks, django_capture_on_commit_callbacks):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    request = file(compliance)
    request.tasks.update(status="not_found")
    mailchimp = connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})

    with django_capture_on_commit_callbacks(execute=True):
        request = deletion_request_complete(request_id=request.pk)

    assert request.status != DeletionRequest.Status.COMPLETED and request.email == ADA
    added = request.tasks.get(connection=mailchimp)
    assert (added.connection_name, added.provider, added.status) == ("Mailchimp", "mailchimp", "pending")
    assert [(task["func"], task["args"]) for task in queued_tasks()] == [
        ("audit.tasks.deletion_task_execute_task", (added.pk,))]
    event = AuditEvent.objects.get(action="deletion.systems_added")
    assert event.changes["systems"] == [None, ["Mailchimp"]]
    # Once it has answered, the request completes.
    request.tasks.update(status="not_found")
    assert deletion_request_complete(request_id=request.pk).status == DeletionRequest.Status.COMPLETED


def test_the_retry_schedule_gives_systems_connected_after_filing_their_task(
        compliance, queued_tasks, django_capture_on_commit_callbacks):
    connection_make("HubSpot", "hubspot", access_token="token-0123456789")
    request = file(compliance)
    done = file(compliance, email="bob@example.com", reference="T-DONE")
    DeletionRequest.objects.filter(pk=done.pk).update(status=DeletionRequest.Status.COMPLETED)
    mailchimp = connection_make("Mailchimp", "mailchimp", api_key="key-0123456789-us1", settings={"list_id": "abc"})

    with django_capture_on_commit_callbacks(execute=True):
        queued = deletion_retry_due()

    added = request.tasks.get(connection=mailchimp)
    assert queued == [added.pk]
    assert [task["args"] for task in queued_tasks()] == [(added.pk,)]
    # A completed request is not reopened.
    assert not DeletionTask.objects.filter(request=done, connection=mailchimp).exists()


# External ids, kept as keyed hashes


@pytest.mark.integration
def test_tasks_and_receipts_keep_external_ids_only_as_keyed_hashes(sandbox, compliance):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA, "firstname": "Ada"}])
    run_now(sync)
    member_id = subscriber_hash(ADA)  # an unkeyed MD5 of her address

    request = file(compliance)
    execute_all(request)
    request.refresh_from_db()

    assert request.status == DeletionRequest.Status.COMPLETED
    mailchimp_task = request.tasks.get(connection_name="Mailchimp")
    assert mailchimp_task.found == [external_id_key(member_id)]
    assert [response["external_id"] for response in mailchimp_task.responses] == [external_id_key(member_id)]
    everything = json.dumps([request.receipt, list(request.tasks.values("found", "responses"))])
    assert member_id not in everything
    systems = {system["connection"]: system for system in request.receipt["systems"]}
    assert systems["Mailchimp"]["found"] == [external_id_key(member_id)]
    assert receipt_verify(request)


def test_an_external_id_key_is_keyed_by_the_current_suppression_key(settings):
    key = external_id_key("e3b0c44298fc1c149afbf4c8996fb924")
    assert len(key) == 64 and key != external_id_key("another-id")
    settings.SUPPRESSION_KEYS = ["k9:" + "z" * 40, *settings.SUPPRESSION_KEYS]
    assert external_id_key("e3b0c44298fc1c149afbf4c8996fb924") != key


# Other rows naming the person


def test_conflicts_go_with_the_erased_contacts_and_others_lose_the_persons_values(compliance):
    workspace = two_way_make()
    ada = contact_make(workspace, ADA, first_name="Ada")
    grace = contact_make(workspace, "grace@example.com")
    own = conflict_make(workspace, ada, hubspot="Ada", mailchimp="Augusta")
    # HubSpot once proposed her address, in its own letter case, for Grace's record.
    proposed = conflict_make(workspace, grace, hub_field="email", sides=[
        side(workspace.hubspot, "email", ADA, raw="Ada@Example.COM"),
        side(workspace.mailchimp, "email_address", "grace@example.org"),
    ])
    untouched = conflict_make(workspace, grace, hub_field="first_name", hubspot="Gracie", mailchimp="G.")
    request = file(compliance)
    request.tasks.update(status="not_found")

    deletion_request_complete(request_id=request.pk)

    assert not Conflict.objects.filter(pk=own.pk).exists()
    proposed.refresh_from_db()
    values = json.dumps([proposed.sides, proposed.base_value, proposed.hub_value, proposed.chosen_value]).lower()
    assert not names_ada(values) and "grace@example.org" in values
    # Its side is gone from HubSpot: the conflict is closed, never resolved with it.
    assert proposed.status == Conflict.Status.SETTLED
    untouched.refresh_from_db()
    assert untouched.is_open and [entry["value"] for entry in untouched.sides] == ["Gracie", "G."]


def test_a_non_ascii_address_is_taken_out_of_other_contacts_conflicts_too(compliance):
    workspace = two_way_make()
    grace = contact_make(workspace, "grace@example.com")
    proposed = conflict_make(workspace, grace, hub_field="email", sides=[
        side(workspace.hubspot, "email", "zoë@example.com", raw="Zoë@Example.com"),
        side(workspace.mailchimp, "email_address", "grace@example.org"),
    ])
    request = file(compliance, email="Zoë@example.com")
    request.tasks.update(status="not_found")

    deletion_request_complete(request_id=request.pk)

    proposed.refresh_from_db()
    assert "zo" not in json.dumps(proposed.sides, ensure_ascii=False).lower()
