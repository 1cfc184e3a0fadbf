"""Deletion requests: filing, each system's attempts and retries, completion, receipts and alerts.

The systems are the sandbox's HubSpot and Mailchimp, reached through the real providers;
tests/integration/test_deletion.py follows a whole request and the resync after it.
"""
from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from audit.deletion import (
    FAILING_AFTER_ATTEMPTS,
    InvalidDeletionRequest,
    deletion_alerts_send,
    deletion_due_date,
    deletion_request_complete,
    deletion_request_file,
    deletion_requests_needing_attention,
    deletion_requests_to_complete,
    deletion_retry_delay,
    deletion_schedules_ensure,
    deletion_task_execute,
    deletion_tasks_due,
)
from audit.models import AuditEvent, DeletionRequest, DeletionTask, Suppression
from audit.receipts import receipt_document, receipt_document_verify, receipt_verify
from audit.suppression import identifier_key, is_suppressed
from syncapp.roles import COMPLIANCE, MARKETER
from tests.integration.workspace import hubspot_create, run_now, sandbox_sync
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

ADA = "ada@example.com"
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
    assert "ada" not in every_audit_text() and "4155550100" not in every_audit_text()


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
