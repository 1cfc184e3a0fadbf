"""Deletion requests (GDPR Art. 17, CCPA): filed once, carried out in every system, kept out for good.

Filing, in one transaction: the request with its identifiers normalized, one task per
connection, the identifiers on the suppression list at once (so that no sync brings the
person back, nor sends them anywhere, while the request is carried out), and a
`deletion.requested` audit row naming the keyed hashes, never the address.

The person's contacts are those subject access finds (`audit.people.person_contact_ids`):
the contacts holding the email or the phone, those that held the email before a change,
and every contact merged with one of them.

Each task is a queued job: find the person in its system by link (the external ids of
the person's contacts) and by searching the system (`Provider.find_person`, which
reaches records Syncapp never linked), erase every record found with the provider's
erasure call, and keep each answer as it comes (a worker killed midway loses none). A
failed attempt, whatever the error, waits and tries again with exponential backoff: the
`deletion_retry_due` schedule hands out every task whose time has come, including one
whose worker died (its lease ran out) and one whose first hand-out was lost; it also
gives a task to each system connected since the request was filed. A request is never
dropped: a system that keeps refusing marks it failing, shown on the dashboard and
mailed to the compliance group daily.

When every system has answered, the hub is erased in one transaction: the person's
contacts go with their links (merge bases), conflicts and consent ledger; record-error
messages, duplicate notes and other contacts' conflicts naming them are blanked; the
trail's events about them lose their values (`audit.services.audit_events_erase`). The
request's plain identifiers are blanked, the systems' record ids are kept as keyed hashes
only (`audit.suppression.external_id_key`: a Mailchimp member id is an unkeyed MD5 of
the address), and the signed receipt is written (audit.receipts).

Every record holding the email or the phone is erased, whoever else shares that phone:
the request form says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import smtplib
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q, TextField
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone

from audit import people
from audit import services as audit_services
from audit.models import DeletionRequest, DeletionTask
from audit.receipts import receipt_build, receipt_document, receipt_sign
from audit.suppression import EMAIL, PHONE, external_id_key, identifier_key, suppress, suppression_keys
from connections.models import Connection
from connections.providers.base import Provider, ProviderError
from connections.registry import provider_for as registry_provider_for
from syncapp import queue
from syncapp.engine.identity import InvalidEmail, InvalidPhone, normalize_email, normalize_phone
from syncapp.models import Conflict, Contact, DuplicatePair, RecordError, RecordLink
from syncapp.roles import COMPLIANCE

logger = logging.getLogger(__name__)

Regulation = DeletionRequest.Regulation
Status = DeletionRequest.Status
TaskStatus = DeletionTask.Status

# Days to answer, by regulation: GDPR Art. 12(3) one month, CCPA 45 days.
DUE_DAYS = {Regulation.GDPR: 30, Regulation.CCPA: 45}
# A task being worked on is not handed out again before this; a worker that died
# holding it gives it back when it runs out.
TASK_LEASE = timedelta(minutes=15)
# A task still waiting for its first attempt this long after filing was lost on its
# way to a worker (a broker restarted): the retry schedule hands it out.
FIRST_ATTEMPT_LOST_AFTER = timedelta(minutes=10)
# Exponential backoff between attempts: 1, 2, 4... minutes, at most 6 hours.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=6)
# A task that failed this many attempts marks its request failing.
FAILING_AFTER_ATTEMPTS = 3
# The client does not retry on its own: the task's backoff does, minutes apart.
HTTP_RETRIES = 0
# What erased text is replaced by, in the rows that are kept.
ERASED_TEXT = "(erased on request)"
# A provider's outcomes of an erasure (Provider.erase).
ERASED, ALREADY_GONE = "erased", "already_gone"

EXECUTE_TASK = "audit.tasks.deletion_task_execute_task"
COMPLETE_TASK = "audit.tasks.deletion_request_complete_task"
RETRY_SCHEDULE = "deletion:retries"
RETRY_TASK = "audit.tasks.deletion_retry_due_task"
ALERT_SCHEDULE = "deletion:alerts"
ALERT_TASK = "audit.tasks.deletion_alerts_task"
ALERT_EVERY = timedelta(days=1)


class InvalidDeletionRequest(ValueError):
    """A request that cannot be filed; `field` names the form field at fault ("" for the whole)."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


def deletion_due_date(*, regulation: str, filed_on: date) -> date:
    """Return the default due date of a request filed on `filed_on`."""
    return filed_on + timedelta(days=DUE_DAYS[regulation])


def deletion_identifiers_clean(*, email: str | None, phone: str | None) -> tuple[str, str]:
    """Return the email normalized and the phone in E.164 ("" for either left blank).

    Raise InvalidDeletionRequest naming the field when one is malformed, or when both are
    blank. A phone needs its country code: the request names no region to read it in.
    """
    email, phone = (email or "").strip(), (phone or "").strip()
    if not email and not phone:
        raise InvalidDeletionRequest("Give the person's email address, phone number, or both.")
    if email:
        try:
            email = normalize_email(email)
        except InvalidEmail as error:
            raise InvalidDeletionRequest(f"This is not an email address: {error}.", field="email") from None
    if phone:
        try:
            phone = normalize_phone(phone, None)
        except InvalidPhone as error:
            raise InvalidDeletionRequest(
                f"This is not a phone number in international form (+ and the country code): {error}.",
                field="phone",
            ) from None
    return email, phone


def deletion_request_file(
    *, email: str | None, phone: str | None, regulation: str, reference: str, due_date: date | None, user
) -> DeletionRequest:
    """File a request to erase a person everywhere; queue its work in every connection.

    The identifiers go on the suppression list now: no sync reads the person in or
    writes them out from here on, whatever the request's progress.
    """
    email, phone = deletion_identifiers_clean(email=email, phone=phone)
    if regulation not in DUE_DAYS:
        raise InvalidDeletionRequest(f"Unknown regulation {regulation!r}.", field="regulation")
    reference = (reference or "").strip()
    if not reference:
        raise InvalidDeletionRequest("Give the requester's or the ticket's reference.", field="reference")
    if any(value and value.lower() in reference.lower() for value in (email, phone)):
        # The reference is kept after the request is carried out; the identifiers are not.
        raise InvalidDeletionRequest("The reference must not repeat the email or the phone: it is kept after the "
                                     "person is erased. Use the ticket's number.", field="reference")
    today = timezone.localdate()
    due_date = due_date or deletion_due_date(regulation=regulation, filed_on=today)
    if due_date < today:
        raise InvalidDeletionRequest("The due date is in the past.", field="due_date")
    with transaction.atomic():
        request = DeletionRequest.objects.create(
            regulation=regulation, reference=reference, due_date=due_date, email=email, phone=phone,
            email_key=identifier_key(EMAIL, email) if email else "",
            phone_key=identifier_key(PHONE, phone) if phone else "", requested_by=user,
        )
        tasks = DeletionTask.objects.bulk_create(
            DeletionTask(request=request, connection=connection, connection_name=connection.name,
                         provider=connection.provider)
            for connection in Connection.objects.order_by("name")
        )
        suppress(email=email, phone=phone, request=request)
        audit_services.audit_record(
            action="deletion.requested", obj=request, actor=user,
            changes={
                "regulation": [None, regulation], "reference": [None, reference],
                "due_date": [None, due_date.isoformat()],
                "email_key": [None, request.email_key or None], "phone_key": [None, request.phone_key or None],
                "systems": [None, [task.connection_name for task in tasks]],
            },
        )
        task_ids = [task.pk for task in tasks]
        if task_ids:
            transaction.on_commit(lambda: [queue.enqueue(EXECUTE_TASK, task_id) for task_id in task_ids])
        else:
            transaction.on_commit(lambda: queue.enqueue(COMPLETE_TASK, request.pk))
    return request


def deletion_task_execute(
    task_id: int, *, now: datetime | None = None, provider_for: Callable[..., Provider] = registry_provider_for
) -> DeletionTask | None:
    """Make one attempt at a system's part of a request; complete the request when it was the last.

    Nothing is done to a task already answered, one another worker holds, or one whose
    retry time has not come (`now`). Return the task as left, or None when it is gone.
    """
    now = now or timezone.now()
    task = _task_claim(task_id, now)
    if task is None:
        return DeletionTask.objects.filter(pk=task_id).first()
    found = list(task.found)
    responses = list(task.responses)
    try:
        _find_and_erase(task, found, responses, provider_for)
    except Exception as error:  # noqa: BLE001 - any error, not only a provider's, must reach the retries
        # Left here, the task would wait for its lease to run out, again and again,
        # never marked failing nor telling why.
        _task_failed(task, error, found, responses, now=timezone.now())
        return task
    _task_answered(task, found, responses, now=timezone.now())
    deletion_request_complete(request_id=task.request_id)
    return task


def deletion_request_complete(*, request_id: int, now: datetime | None = None) -> DeletionRequest:
    """Erase the person from the hub and write the signed receipt, once every system has answered.

    Does nothing while a system has not (or when already done): safe to call any time,
    from any worker.
    """
    with transaction.atomic():
        request = DeletionRequest.objects.select_for_update(of=("self",)).select_related("requested_by").get(
            pk=request_id)
        if request.status == Status.COMPLETED:
            return request
        # A system connected since the filing may hold the person too: it is searched first.
        if _tasks_for_new_connections(request):
            return request
        tasks = list(request.tasks.order_by("connection_name", "pk"))
        if any(task.status not in DeletionTask.DONE for task in tasks):
            return request
        now = now or timezone.now()
        person_ids = _person_contact_ids(request)
        held = list(Contact.objects.filter(pk__in=person_ids).order_by("pk").values_list("pk", "email"))
        contact_ids = [pk for pk, _ in held]
        # The contacts' own addresses are the person's too (one found by an old address
        # holds a new one): the rows kept must not name them either. Not their phones:
        # a number may be shared with somebody this request does not name.
        values = sorted({value for value in (request.email, request.phone) if value}
                        | {email for _, email in held if email})
        hub_counts = _hub_erase(tasks, contact_ids, values)
        # Again, in case SUPPRESSION_KEYS turned over since filing: the current key holds them.
        suppress(email=request.email, phone=request.phone, request=request)
        identifiers = [
            {"kind": kind, "key_id": suppression_keys()[0].key_id, "key_hash": identifier_key(kind, value)}
            for kind, value in ((EMAIL, request.email), (PHONE, request.phone)) if value
        ]
        # After the hub's erasure, which looks for the ids the systems found.
        _tasks_ids_keyed(tasks)
        # The audit trail last: the redaction takes the chain's head, locked until the
        # commit (docs/security.md). Only the request's row is written after it, for the
        # receipt counts the rows redacted; this transaction locked it first.
        # Contacts merged away earlier are gone already; the trail's events about them are not.
        hub_counts["audit_events_redacted"] = audit_services.audit_events_erase(contact_ids=sorted(person_ids),
                                                                                values=values)
        # After the redaction: these rows name the contacts by id only.
        audit_services.audit_record_many(
            audit_services.audit_row_build(
                action="contact.erased", object_type="contact", object_id=str(contact_id),
                object_repr=f"Contact {contact_id}", contact_id=contact_id,
                changes={"deletion_request": [None, request.pk]},
            )
            for contact_id in contact_ids
        )
        request.receipt = receipt_build(request=request, tasks=tasks, identifiers=identifiers,
                                        contact_ids=contact_ids, hub_counts=hub_counts, completed_at=now)
        request.receipt_signature = receipt_sign(request.receipt)
        request.email = request.phone = ""
        request.contact_ids = contact_ids
        request.hub_erased_at = request.completed_at = now
        request.status = Status.COMPLETED
        request.save(update_fields=["receipt", "receipt_signature", "email", "phone", "contact_ids", "hub_erased_at",
                                    "completed_at", "status"])
        audit_services.audit_record(
            action="deletion.completed", obj=request,
            changes={
                "status": [None, Status.COMPLETED],
                "systems": [None, {task.connection_name: task.status for task in tasks}],
                "contacts_erased": [None, len(contact_ids)],
                "receipt_signature": [None, request.receipt_signature],
            },
        )
    return request


def deletion_tasks_due(*, now: datetime) -> list[int]:
    """Return the ids of the tasks to hand out now: retries due, leases run out, first hand-outs lost."""
    waiting = DeletionTask.objects.exclude(status__in=DeletionTask.DONE).exclude(request__status=Status.COMPLETED)
    due = Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True,
                                         request__created_at__lte=now - FIRST_ATTEMPT_LOST_AFTER)
    return list(waiting.filter(due).order_by("next_attempt_at", "pk").values_list("pk", flat=True))


def deletion_requests_to_complete(*, now: datetime) -> list[int]:
    """Return the requests whose systems have all answered but which were not completed (a worker died)."""
    return list(
        DeletionRequest.objects.exclude(status=Status.COMPLETED)
        .exclude(tasks__status__in=[TaskStatus.PENDING, TaskStatus.RETRYING, TaskStatus.FAILED])
        .filter(created_at__lte=now - FIRST_ATTEMPT_LOST_AFTER)
        .values_list("pk", flat=True)
    )


def deletion_retry_due(*, now: datetime | None = None) -> list[int]:
    """Queue every task whose time has come, and the completion of requests left unfinished; return the tasks.

    Systems connected since a request was filed get their task first (queued as it is
    made), so that no request completes without them.
    """
    now = now or timezone.now()
    added = deletion_tasks_for_new_connections()
    task_ids = [task_id for task_id in deletion_tasks_due(now=now) if task_id not in added]
    for task_id in task_ids:
        queue.enqueue(EXECUTE_TASK, task_id)
    task_ids = [*added, *task_ids]
    for request_id in deletion_requests_to_complete(now=now):
        queue.enqueue(COMPLETE_TASK, request_id)
    return task_ids


def deletion_tasks_for_new_connections() -> list[int]:
    """Give every open request a task in each system connected since it was filed; return the tasks made."""
    connections = Connection.objects.count()
    lacking = (DeletionRequest.objects.exclude(status=Status.COMPLETED)
               .annotate(systems=Count("tasks", filter=Q(tasks__connection__isnull=False)))
               .filter(systems__lt=connections).order_by("pk").values_list("pk", flat=True))
    added = []
    for request_id in lacking:
        with transaction.atomic():
            request = (DeletionRequest.objects.select_for_update().exclude(status=Status.COMPLETED)
                       .filter(pk=request_id).first())
            if request is not None:
                added += [task.pk for task in _tasks_for_new_connections(request)]
    return added


def deletion_requests_needing_attention(*, today: date | None = None):
    """Return the open requests that are overdue or failing, the most urgent first."""
    today = today or timezone.localdate()
    return (DeletionRequest.objects.exclude(status=Status.COMPLETED)
            .filter(Q(due_date__lt=today) | Q(status=Status.FAILING)).order_by("due_date", "pk"))


def deletion_request_list():
    """Return the requests, newest first, with how many of their systems have answered."""
    return DeletionRequest.objects.select_related("requested_by").annotate(
        systems=Count("tasks"), systems_answered=Count("tasks", filter=Q(tasks__status__in=DeletionTask.DONE)),
    ).order_by("-pk")


def deletion_progress(*, request: DeletionRequest) -> dict[str, Any]:
    """Return what the request's page polls: its status, and a version that changes with any task."""
    tasks = list(request.tasks.order_by("pk").values_list("pk", "status", "attempts", "next_attempt_at"))
    state = repr((request.status, request.completed_at, tasks)).encode()
    return {
        "status": request.status,
        "status_label": request.get_status_display(),
        "completed": request.status == Status.COMPLETED,
        "systems": len(tasks),
        "systems_answered": sum(1 for _, status, _, _ in tasks if status in DeletionTask.DONE),
        "version": hashlib.sha256(state).hexdigest()[:16],
    }


def deletion_receipt_download(*, request: DeletionRequest, user) -> dict[str, Any]:
    """Return the signed receipt document of a completed request; the download is audited."""
    if request.status != Status.COMPLETED:
        raise InvalidDeletionRequest("The receipt is written when every system has answered; this request is "
                                     f"{request.get_status_display().lower()}.")
    with transaction.atomic():
        audit_services.audit_record(action="deletion.receipt_downloaded", obj=request, actor=user,
                                    changes={"receipt_signature": [None, request.receipt_signature]})
    return receipt_document(request)


def deletion_alerts_send(*, now: datetime | None = None) -> list[int]:
    """Mail the compliance group about the requests overdue or failing, each at most once a day.

    Return the ids of the requests the mail named; none are marked when nobody could be
    told (no compliance user with an address, or the mail failed), so the next run tries again.
    """
    now = now or timezone.now()
    requests = list(deletion_requests_needing_attention(today=timezone.localdate(now))
                    .filter(Q(alerted_at__isnull=True) | Q(alerted_at__lte=now - ALERT_EVERY)))
    if not requests:
        return []
    recipients = sorted(set(
        get_user_model().objects.filter(is_active=True, groups__name=COMPLIANCE).exclude(email="")
        .values_list("email", flat=True)
    ))
    if not recipients:
        logger.warning("%d deletion requests need attention; no compliance user has an email address to tell.",
                       len(requests))
        return []
    today = timezone.localdate(now)
    base = getattr(settings, "SITE_URL", "")
    lines = ["These deletion requests need attention:", ""]
    for request in requests:
        state = "overdue" if request.due_date < today else "a system keeps failing"
        if request.due_date < today and request.status == Status.FAILING:
            state = "overdue, and a system keeps failing"
        lines.append(f"- #{request.pk} ({request.get_regulation_display()}, reference {request.reference}), "
                     f"due {request.due_date.isoformat()}: {state}. "
                     f"{base}{reverse('audit:deletion_detail', args=[request.pk])}")
    lines += ["", "Each request is retried on its own; a failing system may need its connection fixed."]
    subject = f"Deletion requests need attention: {len(requests)} overdue or failing"
    try:
        send_mail(subject, "\n".join(lines), None, recipients)
    except (OSError, smtplib.SMTPException):
        logger.exception("The deletion request alert could not be mailed.")
        return []
    DeletionRequest.objects.filter(pk__in=[request.pk for request in requests]).update(alerted_at=now)
    return [request.pk for request in requests]


def deletion_schedules_ensure() -> None:
    """Keep the retry schedule (every minute) and the alert schedule (every hour); idempotent."""
    queue.schedule_every(name=RETRY_SCHEDULE, func=RETRY_TASK, args=(), minutes=1)
    queue.schedule_every(name=ALERT_SCHEDULE, func=ALERT_TASK, args=(), minutes=60)


def deletion_retry_delay(attempts: int) -> timedelta:
    """Return the wait after the `attempts`-th failed attempt: 1, 2, 4... minutes, capped."""
    return min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))


def _task_claim(task_id: int, now: datetime) -> DeletionTask | None:
    """Take the task for one attempt (its lease), or return None when it is not to be run now."""
    with transaction.atomic():
        task = (DeletionTask.objects.select_for_update(of=("self",)).select_related("request", "connection")
                .filter(pk=task_id).first())
        if (task is None or task.status in DeletionTask.DONE or task.request.status == Status.COMPLETED
                or (task.next_attempt_at is not None and task.next_attempt_at > now)):
            return None
        task.attempts += 1
        task.next_attempt_at = now + TASK_LEASE
        task.save(update_fields=["attempts", "next_attempt_at"])
        if task.request.status == Status.OPEN:
            DeletionRequest.objects.filter(pk=task.request_id, status=Status.OPEN).update(status=Status.IN_PROGRESS)
    return task


def _find_and_erase(task: DeletionTask, found: list[str], responses: list[dict[str, Any]],
                    provider_for: Callable[..., Provider]) -> None:
    """Find the person's records in the task's system and erase each; `found` and `responses` grow as it goes.

    Both are saved as they grow: a worker killed midway loses no answer, and the next
    attempt knows the records the earlier ones found.
    """
    request, connection = task.request, task.connection
    if connection is None:
        # The connection was removed after the request was filed: nothing Syncapp can reach.
        return
    found_earlier = set(found)
    linked = RecordLink.objects.filter(connection=connection, contact_id__in=_person_contact_ids(request)).exclude(
        external_id=None).order_by("pk").values_list("external_id", flat=True)
    provider = provider_for(connection, max_retries=HTTP_RETRIES)
    try:
        searched = provider.find_person(email=request.email or None, phone=request.phone or None)
        for external_id in [*linked, *searched]:
            if str(external_id) not in found:
                found.append(str(external_id))
        _task_progress_save(task, found, responses)
        answered = {response["external_id"] for response in responses}
        for external_id in found:
            if external_id in answered:
                continue
            summary = provider.erase(external_id)
            if summary.get("outcome") == ALREADY_GONE and external_id in found_earlier:
                # Found by an earlier attempt, and gone now: that attempt's erasure was
                # carried out and its answer lost (a timeout, a dropped connection).
                summary["erased_by_an_earlier_attempt"] = True
            responses.append({"external_id": external_id, "at": timezone.now().isoformat(), **summary})
            _task_progress_save(task, found, responses)
    finally:
        provider.http.close()


def _task_progress_save(task: DeletionTask, found: list[str], responses: list[dict[str, Any]]) -> None:
    DeletionTask.objects.filter(pk=task.pk).update(found=found, responses=responses)


def _is_erasure(response: dict[str, Any]) -> bool:
    return response.get("outcome") == ERASED or bool(response.get("erased_by_an_earlier_attempt"))


def _task_answered(task: DeletionTask, found: list[str], responses: list[dict[str, Any]], *, now: datetime) -> None:
    erased = any(_is_erasure(response) for response in responses)
    with transaction.atomic():
        task.status = TaskStatus.ERASED if erased else TaskStatus.NOT_FOUND
        task.found, task.responses = found, responses
        task.erased_at = now if erased else None
        task.next_attempt_at = None
        task.save(update_fields=["status", "found", "responses", "erased_at", "next_attempt_at"])
        _request_status_refresh(task.request_id)
        # Last: the chain's head stays locked until the commit (docs/security.md).
        audit_services.audit_record(
            action="deletion.system_answered", obj=task.request, system=task.connection_name,
            changes={"system": [None, task.connection_name], "status": [None, task.status],
                     "records": [None, len(found)], "attempts": [None, task.attempts]},
        )


def _task_failed(task: DeletionTask, error: Exception, found: list[str], responses: list[dict[str, Any]], *,
                 now: datetime) -> None:
    """Keep what was done, and wait before trying again (a refusal too: a reconnection may fix it).

    An error that is not the provider's (a client that cannot be made, a bug) fails the
    task as a refusal does: the request shows failing, with the error's kind and message.
    """
    message = str(error) if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
    with transaction.atomic():
        task.status = TaskStatus.RETRYING if getattr(error, "retriable", False) else TaskStatus.FAILED
        task.found, task.responses = found, responses
        task.last_error = _without_identifiers(message, task.request)[:2000]
        task.next_attempt_at = now + deletion_retry_delay(task.attempts)
        task.save(update_fields=["status", "found", "responses", "last_error", "next_attempt_at"])
        _request_status_refresh(task.request_id)
    logger.warning("Deletion request %s, %s: attempt %d failed (%s); next at %s.", task.request_id,
                   task.connection_name, task.attempts, task.last_error[:200], task.next_attempt_at.isoformat())


def _request_status_refresh(request_id: int) -> None:
    """Mark the request failing while a system refuses or keeps failing, in progress otherwise."""
    tasks = DeletionTask.objects.filter(request_id=request_id).values_list("status", "attempts")
    failing = any(status == TaskStatus.FAILED or (status == TaskStatus.RETRYING and attempts >= FAILING_AFTER_ATTEMPTS)
                  for status, attempts in tasks)
    DeletionRequest.objects.filter(pk=request_id, status__in=[Status.OPEN, Status.IN_PROGRESS, Status.FAILING]).update(
        status=Status.FAILING if failing else Status.IN_PROGRESS)


def _tasks_for_new_connections(request: DeletionRequest) -> list[DeletionTask]:
    """Give each system connected since the request was filed its task, audited and queued; return them.

    Call it holding the request's row lock (one task per system and request).
    """
    connections = Connection.objects.exclude(
        pk__in=DeletionTask.objects.filter(request=request, connection__isnull=False).values("connection_id")
    ).order_by("name")
    tasks = DeletionTask.objects.bulk_create(
        DeletionTask(request=request, connection=connection, connection_name=connection.name,
                     provider=connection.provider)
        for connection in connections
    )
    if tasks:
        audit_services.audit_record(action="deletion.systems_added", obj=request,
                                    changes={"systems": [None, [task.connection_name for task in tasks]]})
        task_ids = [task.pk for task in tasks]
        transaction.on_commit(lambda: [queue.enqueue(EXECUTE_TASK, task_id) for task_id in task_ids])
    return tasks


def _tasks_ids_keyed(tasks: list[DeletionTask]) -> None:
    """Replace the record ids the tasks found by their keyed hashes, now that no system is to be asked again."""
    for task in tasks:
        task.found = [external_id_key(external_id) for external_id in task.found]
        task.responses = [{**response, "external_id": external_id_key(response["external_id"])}
                          for response in task.responses]
        task.save(update_fields=["found", "responses"])


def _person_contact_ids(request: DeletionRequest) -> set[int]:
    """Return the ids of the contacts that are or were the person (audit.people), merged-away ones included."""
    ids: set[int] = set()
    for kind, value in ((people.EMAIL, request.email), (people.PHONE, request.phone)):
        if value:
            ids |= people.person_contact_ids(people.Person(kind, value))
    return ids


def _hub_erase(tasks: list[DeletionTask], contact_ids: list[int], values: list[str]) -> dict[str, int]:
    """Delete the contacts (their links, conflicts and consent ledger go with them); blank what names them elsewhere."""
    mentions = Q(contact_id__in=contact_ids)
    for task in tasks:
        if task.connection_id and task.found:
            mentions |= Q(connection_id=task.connection_id, external_id__in=task.found)
    for value in values:
        mentions |= Q(message__icontains=value)
    record_errors = RecordError.objects.filter(mentions).exclude(message=ERASED_TEXT).update(message=ERASED_TEXT)
    pairs = DuplicatePair.objects.filter(Q(contact_a_id__in=contact_ids) | Q(contact_b_id__in=contact_ids)).update(
        detail=ERASED_TEXT)
    links = RecordLink.objects.filter(contact_id__in=contact_ids).count()
    Contact.objects.filter(pk__in=contact_ids).delete()
    return {"contacts_erased": len(contact_ids), "links_erased": links, "record_errors_blanked": record_errors,
            "duplicate_notes_blanked": pairs, "conflicts_blanked": _conflicts_blank(values)}


CONFLICT_VALUES = ("sides", "base_value", "hub_value", "chosen_value")


def _conflicts_blank(values: list[str]) -> int:
    """Take the person's values out of the conflicts left (other contacts'); return how many were changed.

    A system may have proposed the person's address for somebody else's record. Each
    text naming a value is replaced whole; an open conflict with such a side is closed
    as settled, so that nobody resolves it with the erased text.
    """
    if not values:
        return 0
    mentions = Q(pk__in=[])
    for value in values:
        # JSON text as stored: SQLite's escapes non-ASCII letters, PostgreSQL's does not.
        for form in {value, json.dumps(value)[1:-1]}:
            for column in CONFLICT_VALUES:
                mentions |= Q(**{f"{column}_text__icontains": form})
    conflicts = Conflict.objects.alias(**{f"{column}_text": Cast(column, TextField()) for column in CONFLICT_VALUES})
    changed = 0
    for conflict in conflicts.filter(mentions).select_for_update():
        for column in CONFLICT_VALUES:
            setattr(conflict, column, _without_values(getattr(conflict, column), values))
        if conflict.is_open:
            conflict.status = Conflict.Status.SETTLED
            conflict.resolution = Conflict.Resolution.SETTLED
            conflict.reason = "Closed: a system's value in it belonged to a person erased on request."
            conflict.resolved_at = timezone.now()
        conflict.save(update_fields=[*CONFLICT_VALUES, "status", "resolution", "reason", "resolved_at", "updated_at"])
        changed += 1
    return changed


def _without_values(data: Any, values: list[str]) -> Any:
    """Return `data` (JSON) with every text naming one of `values`, in any letter case, replaced by ERASED_TEXT."""
    if isinstance(data, str):
        return ERASED_TEXT if any(value.lower() in data.lower() for value in values) else data
    if isinstance(data, list):
        return [_without_values(item, values) for item in data]
    if isinstance(data, dict):
        return {key: _without_values(item, values) for key, item in data.items()}
    return data


def _without_identifiers(text: str, request: DeletionRequest) -> str:
    """Return a provider's message with the person's identifiers taken out (it may quote them)."""
    for value in (request.email, request.phone):
        if value:
            text = re.sub(re.escape(value), "[the person's identifier]", text, flags=re.IGNORECASE)
    return text
