"""A HubSpot -> Mailchimp sync pointed at the sandbox, and what a consistent result is."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings

from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.engine.email_typos import suggest_fix
from syncapp.engine.identity import InvalidEmail, normalize_email
from syncapp.engine.text import clean_text
from syncapp.models import Contact, DuplicatePair, RecordError, RecordLink, Sync, SyncConnection, SyncRun
from syncapp.services.runs import run_execute, run_request
from tests.databases import test_database_url

REPO = Path(__file__).resolve().parent.parent.parent
SYNC_NAME = "HubSpot to Mailchimp"
DEMO_LEGAL_BASIS = "Test workspace: fictional sandbox contacts"


def sandbox_sync(sandbox, **sync_fields) -> Sync:
    """Create the demo's connections, sync and mappings against `sandbox`."""
    hubspot = Connection.objects.create(name="HubSpot", provider="hubspot", base_url=sandbox.hubspot_url,
                                        access_token=sandbox.hubspot_token)
    mailchimp = Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                                          api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})
    sync = Sync.objects.create(name=SYNC_NAME, schedule_minutes=0, **sync_fields)
    SyncConnection.objects.create(sync=sync, connection=hubspot, read=True, write=False)
    # As the demo does: the sandbox's people are fictional, and a marketer chose to add
    # them as subscribed (without a choice, members of unknown consent are not created).
    SyncConnection.objects.create(sync=sync, connection=mailchimp, read=False, write=True,
                                  new_member_status="subscribed", new_member_legal_basis=DEMO_LEGAL_BASIS)
    rows = [
        (hubspot, "email", "email", "in", ["trim", "lowercase"]),
        (hubspot, "first_name", "firstname", "in", ["trim"]),
        (hubspot, "last_name", "lastname", "in", ["trim"]),
        (hubspot, "phone", "phone", "in", ["phone_e164"]),
        (hubspot, "email_consent", "hs_email_optout", "in", ["optout_flag"]),
        (mailchimp, "email", "email_address", "out", []),
        (mailchimp, "first_name", "FNAME", "out", []),
        (mailchimp, "last_name", "LNAME", "out", []),
        (mailchimp, "phone", "PHONE", "out", []),
    ]
    for connection, hub_field, external_field, direction, transforms in rows:
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, transforms=transforms,
                                    is_owner=connection is hubspot)
    return sync


def run_now(sync: Sync) -> SyncRun:
    """Request and execute a run in this process, as a worker would."""
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert created, f"run {run.pk} was already active"
    return run_execute(run_id=run.pk)


def importable(hubspot_contacts: list[dict]) -> dict[str, list[dict]]:
    """Return {normalized email: HubSpot contacts with it} for the contacts a sync can import.

    Invalid or missing emails, and domain typos, are left out. Several contacts with one
    email are one person: the sync imports one of them (the first it reads) and reports
    the others as duplicates.
    """
    people: dict[str, list[dict]] = {}
    for contact in hubspot_contacts:
        if contact.get("archived"):
            continue
        try:
            email = normalize_email(clean_text(contact["properties"].get("email") or ""))
        except InvalidEmail:
            continue
        if suggest_fix(email) is not None:
            continue  # a domain typo: a record error unless the sync fixes typos
        people.setdefault(email, []).append(contact)
    return people


def expected_member(contact: Contact, hubspot_contacts: dict[str, dict]) -> dict:
    """Return what Mailchimp should hold for a hub contact: its HubSpot record's values."""
    link = contact.links.get(connection__name="HubSpot")
    properties = hubspot_contacts[link.external_id]["properties"]

    def text(name):
        return clean_text(properties.get(name) or "").strip()

    return {
        "FNAME": text("firstname"),
        "LNAME": text("lastname"),
        "PHONE": contact.phone or "",
    }


def refused_by_mailchimp() -> set[str]:
    """Emails of the contacts Mailchimp refused (its own rules), each with its record error."""
    return set(
        RecordError.objects.filter(connection__name="Mailchimp", resolved=False, retriable=False)
        .values_list("contact__email", flat=True)
    )


def assert_consistent(sandbox) -> None:
    """Assert Mailchimp holds exactly the importable HubSpot contacts, mapped, once each.

    The only ones missing are those Mailchimp itself refused, each with a record error;
    every duplicate HubSpot record left out has a record error too.
    """
    hubspot = sandbox.hubspot_contacts()
    by_id = {contact["id"]: contact for contact in hubspot}
    wanted = importable(hubspot)
    refused = refused_by_mailchimp()
    assert refused <= set(wanted)
    members = sandbox.mailchimp_members()
    by_email = {member["email_address"].lower(): member for member in members}
    assert len(by_email) == len(members), "a member appears twice"
    assert set(by_email) == set(wanted) - refused
    for email in set(by_email):
        member = by_email[email]
        # With the same email on two HubSpot records, the first record's contact is the one
        # in the audience; the other waits in the duplicates list.
        expected = expected_member(Contact.objects.filter(email=email).order_by("pk").first(), by_id)
        merge_fields = member["merge_fields"]
        names = (merge_fields.get("FNAME", ""), merge_fields.get("LNAME", ""))
        assert names == (expected["FNAME"], expected["LNAME"]), email
        assert merge_fields.get("PHONE", "") == expected["PHONE"], email
        # Consent belongs to the address: an opt-out on any record holding it holds there.
        if any(contact["properties"].get("hs_email_optout") == "true" for contact in wanted[email]):
            assert member["status"] == "unsubscribed", email
    duplicates = {contact["id"] for same in wanted.values() for contact in same[1:]}
    listed = DuplicatePair.objects.filter(reason=DuplicatePair.Reason.SAME_EMAIL, status=DuplicatePair.Status.OPEN)
    assert len(duplicates) == listed.count()
    assert not RecordError.objects.filter(error_class="duplicate").exists()
    emails = list(Contact.objects.exclude(email=None).values_list("email", flat=True))
    assert len(emails) == len(set(emails)) + len(duplicates), "a contact was created twice"
    for connection in ("HubSpot", "Mailchimp"):
        ids = list(RecordLink.objects.filter(connection__name=connection).exclude(external_id=None)
                   .values_list("external_id", flat=True))
        assert len(ids) == len(set(ids))
    assert not RecordLink.objects.filter(connection__name="Mailchimp", pending_pushes__isnull=False,
                                         rejected_payload_hash="").exists()


def hubspot_create(sandbox, rows: list[dict[str, str]]) -> None:
    """Create HubSpot contacts through its API (valid ones: the API refuses the others)."""
    for start in range(0, len(rows), 100):
        inputs = [{"properties": properties} for properties in rows[start:start + 100]]
        response = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/batch/create",
                                 json={"inputs": inputs},
                                 headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=30)
        response.raise_for_status()


def hubspot_edit(sandbox, contact_id: str, **properties) -> None:
    response = requests.patch(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/{contact_id}",
                              json={"properties": properties},
                              headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=10)
    response.raise_for_status()


def subprocess_env(sandbox) -> dict[str, str]:
    """The environment for a manage.py subprocess sharing this test's database."""
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "SANDBOX_URL": sandbox.url,
        "SYNC_RUN_STALE_SECONDS": str(settings.SYNC_RUN_STALE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }


def manage(sandbox, log: Path, *args: str) -> subprocess.Popen:
    """Start `manage.py *args` in its own process group, its output going to `log`."""
    with log.open("w") as output:
        return subprocess.Popen([sys.executable, str(REPO / "manage.py"), *args], cwd=REPO,
                                env=subprocess_env(sandbox), stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL the process group: no cleanup, no finally blocks, as when a machine dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen) -> None:
    """Ask the process to stop as a process manager does (docs/deployment.md), then end its group.

    SIGTERM goes to the group's leader alone: qcluster stops its own processes in order,
    and a SIGTERM to each of them leaves it waiting for good. Whatever of the group is
    still there after the leader exited, or after ten seconds, is killed.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)
