"""A deletion request carried through both sandbox providers, and the person kept out for good after it."""
import json
from datetime import timedelta

import pytest
import requests

from audit.deletion import deletion_request_file, deletion_task_execute, deletion_tasks_due
from audit.models import AuditEvent, DeletionRequest, DeletionTask
from audit.receipts import receipt_verify
from audit.suppression import external_id_key
from connections.providers.mailchimp import subscriber_hash
from syncapp.models import ConsentEvent, Contact, DuplicatePair, RecordError, RecordLink, SyncRun
from syncapp.roles import COMPLIANCE
from syncapp.services.runs import run_execute, run_request
from tests.integration.workspace import hubspot_create, run_now, sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

ADA = "ada@example.com"
ADA_PHONE = "+14155550100"
# A HubSpot record of hers Syncapp never linked: it is found by searching her phone.
ADA_AT_WORK = "ada.work@example.com"
GRACE = "grace@example.com"


def carry_out(request: DeletionRequest, *, rounds: int = 6) -> DeletionRequest:
    """Run every task, then every retry as its time comes, as the workers and the schedule would."""
    for task in request.tasks.order_by("pk"):
        deletion_task_execute(task.pk)
    for _ in range(rounds):
        request.refresh_from_db()
        if request.status == DeletionRequest.Status.COMPLETED:
            return request
        waiting = request.tasks.exclude(status__in=DeletionTask.DONE)
        moment = min(task.next_attempt_at for task in waiting) + timedelta(seconds=1)
        for task_id in deletion_tasks_due(now=moment):
            deletion_task_execute(task_id, now=moment)
    raise AssertionError(f"request {request.pk} did not complete: {list(request.tasks.values())}")


def holds(records: list[dict], *values: str) -> list[dict]:
    text = [json.dumps(record).lower() for record in records]
    return [record for record, dumped in zip(records, text, strict=True) if any(v.lower() in dumped for v in values)]


def test_a_deletion_request_reaches_both_systems_and_the_person_stays_out(sandbox):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [
        {"email": ADA, "firstname": "Ada", "lastname": "Lovelace", "phone": ADA_PHONE},
        {"email": GRACE, "firstname": "Grace", "lastname": "Hopper"},
    ])
    run_now(sync)
    ada = Contact.objects.get(email=ADA)
    assert RecordLink.objects.filter(contact=ada).count() == 2
    assert {member["email_address"] for member in sandbox.mailchimp_members()} == {ADA, GRACE}
    hubspot_create(sandbox, [{"email": ADA_AT_WORK, "mobilephone": ADA_PHONE}])
    # Hub rows that name her besides her contact.
    RecordError.objects.create(run=SyncRun.objects.get(), connection=ada.links.first().connection,
                               error_class="rejected", message=f"Mailchimp refused {ADA}: too many signups")
    grace = Contact.objects.get(email=GRACE)
    DuplicatePair.objects.create(contact_a=ada, contact_b=grace, reason="same_phone",
                                 detail=f"Phone {ADA_PHONE} on {ADA} and {GRACE}")

    # Mailchimp fails twice before answering.
    sandbox.faults(provider="mailchimp", rate=1.0, statuses=[503], count=2)
    carol = user_with_role("carol", COMPLIANCE)
    request = deletion_request_file(email=ADA, phone=ADA_PHONE, regulation="gdpr", reference="DSR-2026-001",
                                    due_date=None, user=carol)
    request = carry_out(request)

    hubspot_task = request.tasks.get(connection_name="HubSpot")
    mailchimp_task = request.tasks.get(connection_name="Mailchimp")
    assert (hubspot_task.status, hubspot_task.attempts, len(hubspot_task.found)) == ("erased", 1, 2)
    assert (mailchimp_task.status, mailchimp_task.attempts) == ("erased", 3)
    # The member id is an MD5 of her address: kept only as a keyed hash once the request completes.
    assert mailchimp_task.found == [external_id_key(subscriber_hash(ADA))]
    injected = requests.get(f"{sandbox.url}/_sandbox/faults", timeout=10).json()["faults"]["mailchimp"]["injected"]
    assert injected == 2

    # Gone from both systems, as their own listings show.
    contacts = sandbox.hubspot_contacts()
    assert holds(contacts, ADA, ADA_PHONE, ADA_AT_WORK) == []
    assert [contact["properties"]["email"] for contact in contacts] == [GRACE]
    assert {entry["email"] for entry in sandbox.hubspot_gdpr_deleted()} == {ADA, ADA_AT_WORK}
    assert [member["email_address"] for member in sandbox.mailchimp_members()] == [GRACE]
    assert sandbox.mailchimp_forgotten() == [subscriber_hash(ADA)]

    # Gone from the hub: contact, links, consent ledger; other rows no longer name her.
    assert not Contact.objects.filter(pk=ada.pk).exists()
    assert not Contact.objects.filter(email=ADA).exists() and not Contact.objects.filter(phone=ADA_PHONE).exists()
    assert not RecordLink.objects.filter(contact_id=ada.pk).exists()
    assert not ConsentEvent.objects.filter(contact_id=ada.pk).exists()
    assert ADA not in " ".join(RecordError.objects.values_list("message", flat=True))
    assert DuplicatePair.objects.get().detail == "(erased on request)"
    trail = " ".join(f"{event.object_repr} {json.dumps(event.changes)}" for event in AuditEvent.objects.all())
    assert ADA not in trail and ADA_PHONE not in trail
    assert AuditEvent.objects.filter(action="contact.erased", contact_id=ada.pk).exists()

    # The request keeps no plain identifier; its receipt says what each system answered.
    assert (request.email, request.phone, request.contact_ids) == ("", "", [ada.pk])
    assert receipt_verify(request)
    systems = {system["connection"]: system for system in request.receipt["systems"]}
    assert systems["Mailchimp"]["attempts"] == 3 and systems["Mailchimp"]["erased_at"]
    assert [response["outcome"] for response in systems["HubSpot"]["responses"]] == ["erased", "erased"]
    assert request.receipt["hub"]["contacts_erased"] == 1
    assert ADA not in json.dumps(request.receipt) and ADA_PHONE not in json.dumps(request.receipt)

    # She comes back into both systems by herself; a full resync neither imports her
    # nor sends her anywhere, and counts her as suppressed.
    sandbox.hubspot_signup(email=ADA, phone=ADA_PHONE, firstname="Ada", lastname="Lovelace")
    sandbox.mailchimp_signup(ADA, merge_fields={"FNAME": "Ada"})
    member_before = next(m for m in sandbox.mailchimp_members() if m["email_address"] == ADA)
    sandbox.reset_stats()
    run, _ = run_request(sync=sync, trigger=SyncRun.Trigger.FULL, enqueue=False, full_read=True)
    run = run_execute(run_id=run.pk)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.read_count, run.suppressed_count, run.created_count, run.pushed_count) == (2, 1, 0, 0)
    assert not Contact.objects.filter(email=ADA).exists() and not Contact.objects.filter(phone=ADA_PHONE).exists()
    assert list(Contact.objects.values_list("email", flat=True)) == [GRACE]
    member_after = next(m for m in sandbox.mailchimp_members() if m["email_address"] == ADA)
    assert member_after == member_before
    mailchimp_calls = sandbox.stats()["requests"].get("mailchimp", {})
    assert not [route for route in mailchimp_calls if not route.startswith("GET")], mailchimp_calls
    assert ADA not in " ".join(f"{event.object_repr} {json.dumps(event.changes)}"
                               for event in AuditEvent.objects.filter(run_id=run.pk))

