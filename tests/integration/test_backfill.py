"""Backfill and full resync through the sandbox: a field mapped late fills every linked record.

The regression from issue 9: after HubSpot `jobtitle` was mapped to the hub and on to a
Mailchimp merge field, 0 of 5,000 contacts got a job title, because delta reads bring
only the records that change afterwards.
"""
import time

import pytest
import requests

from connections.models import Connection
from connections.providers.mailchimp import MAX_SINGLE_UPDATES
from mappings.models import FieldMapping
from syncapp.engine.text import clean_text
from syncapp.models import Contact, RecordLink, Sync, SyncRun
from syncapp.services.backfill import RunUnderWay, backfill_request, full_resync_request
from syncapp.services.runs import run_execute, run_request
from tests.integration.workspace import run_now, sandbox_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONTACTS = 200
DONE = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)
JOB_TITLE = "attributes.jobtitle"
MEMBER = "PATCH /lists/{list_id}/members/{subscriber_hash}"
BATCH = "POST /lists/{list_id}"
OPERATIONS = "POST /batches"


@pytest.fixture
def sync(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    return sandbox_sync(sandbox)


def mailchimp_call(sandbox, method: str, path: str, body: dict) -> dict:
    response = requests.request(method, f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}{path}", json=body,
                                auth=("any", sandbox.mailchimp_key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def job_title_mapped(sandbox, sync: Sync) -> None:
    """Map HubSpot `jobtitle` into the hub and on to a new Mailchimp merge field, as a marketer would."""
    mailchimp_call(sandbox, "POST", "/merge-fields", {"name": "Job title", "tag": "JOBTITLE", "type": "text"})
    hubspot = Connection.objects.get(name="HubSpot")
    mailchimp = Connection.objects.get(name="Mailchimp")
    FieldMapping.objects.create(sync=sync, connection=hubspot, hub_field=JOB_TITLE, external_field="jobtitle",
                                direction="in", is_owner=True)
    FieldMapping.objects.create(sync=sync, connection=mailchimp, hub_field=JOB_TITLE, external_field="JOBTITLE",
                                direction="out", never_overwrite_with_empty=True)


def expected_job_titles(sandbox) -> dict[str, str]:
    """Return {member email: job title} for the members whose HubSpot contact has one."""
    by_id = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    wanted = {}
    for link in RecordLink.objects.filter(connection__name="Mailchimp").exclude(external_id=None).select_related(
            "contact"):
        hubspot = RecordLink.objects.get(contact=link.contact, connection__name="HubSpot")
        title = clean_text(by_id[hubspot.external_id]["properties"].get("jobtitle") or "")
        if title:
            wanted[link.contact.email] = title
    return wanted


def job_titles(sandbox) -> dict[str, str]:
    return {member["email_address"]: member["merge_fields"].get("JOBTITLE", "")
            for member in sandbox.mailchimp_members()}


def backfill_run(sync: Sync) -> SyncRun:
    run = backfill_request(sync=sync, hub_fields=[JOB_TITLE], user=None)
    assert run is not None and run.trigger == SyncRun.Trigger.BACKFILL and run.full_read
    assert run.backfill_fields == [JOB_TITLE]
    return run_execute(run_id=run.pk)


def test_a_mapping_added_after_the_first_sync_fills_every_linked_record(sandbox, sync):
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=21)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)

    # The finding: a run of the changes alone fills nothing.
    sandbox.reset_stats()
    delta = run_now(sync)
    assert delta.pushed_count == 0 and sandbox.stats()["writes"] == 0
    assert not any(job_titles(sandbox).values())

    sandbox.reset_stats()
    run = backfill_run(sync)
    assert run.status in DONE, run.error
    assert run.read_count == CONTACTS, "every HubSpot record is read again"
    wanted = expected_job_titles(sandbox)
    assert len(wanted) > CONTACTS / 3, "the seed gives most people with a company a job title"
    titles = job_titles(sandbox)
    assert {email: title for email, title in titles.items() if title} == wanted
    # Only the members whose value changes are written: the batch subscribe finds them
    # members already, and their PATCHes, without a status, go in one batch operation.
    assert run.pushed_count == len(wanted)
    assert MAX_SINGLE_UPDATES < len(wanted) <= 500, "one push batch, of more than a few members"
    mailchimp = sandbox.stats()["requests"]["mailchimp"]
    assert (mailchimp.get(BATCH, 0), mailchimp.get(MEMBER, 0), mailchimp.get(OPERATIONS, 0)) == (1, 0, 1)
    assert sandbox.stats()["writes"] == 2
    assert all(Contact.objects.get(email=email).attributes["jobtitle"] == title for email, title in wanted.items())

    # A second backfill reads everything again and writes nothing.
    sandbox.reset_stats()
    again = backfill_run(sync)
    assert again.read_count == CONTACTS
    assert (again.pushed_count, sandbox.stats()["writes"]) == (0, 0)


def test_neither_a_backfill_nor_a_full_resync_writes_blanks_or_resubscribes(sandbox, sync):
    sandbox.seed(hubspot_contacts=80, random_seed=22)
    assert run_now(sync).status in DONE
    by_id = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    links = {link.contact.email: by_id[RecordLink.objects.get(contact=link.contact, connection__name="HubSpot")
                                       .external_id]["properties"]
             for link in RecordLink.objects.filter(connection__name="Mailchimp").exclude(external_id=None)
             .select_related("contact")}
    untitled = next(email for email, props in links.items() if not props.get("jobtitle"))
    opted_out_there = next(email for email, props in links.items()
                           if props.get("jobtitle") and props.get("hs_email_optout") != "true")
    opted_out_in_hubspot = {email for email, props in links.items() if props.get("hs_email_optout") == "true"}
    assert opted_out_in_hubspot, "the seed has opt-outs"
    job_title_mapped(sandbox, sync)
    members = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    # Mailchimp holds a job title HubSpot lacks; and a person unsubscribes in Mailchimp.
    mailchimp_call(sandbox, "PATCH", f"/members/{members[untitled]['id']}",
                   {"merge_fields": {"JOBTITLE": "Kept by Mailchimp"}})
    mailchimp_call(sandbox, "PATCH", f"/members/{members[opted_out_there]['id']}", {"status": "unsubscribed"})
    unsubscribed_before = {email for email, member in members.items() if member["status"] == "unsubscribed"}
    unsubscribed_before.add(opted_out_there)

    assert backfill_run(sync).status in DONE
    resync = full_resync_request(sync=sync, user=None)
    assert (resync.trigger, resync.full_read, resync.backfill_fields) == (SyncRun.Trigger.FULL, True, [])
    assert run_execute(run_id=resync.pk).status in DONE

    after = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    assert after[untitled]["merge_fields"]["JOBTITLE"] == "Kept by Mailchimp"
    assert after[opted_out_there]["merge_fields"]["JOBTITLE"] == links[opted_out_there]["jobtitle"]
    assert {email for email in unsubscribed_before if after[email]["status"] != "unsubscribed"} == set()
    assert all(after[email]["status"] == "unsubscribed" for email in opted_out_in_hubspot)
    # The reply told the hub of the opt-out made in Mailchimp: it is the hub's state now.
    assert Contact.objects.get(email=opted_out_there).email_consent == "unsubscribed"


def test_a_backfill_asked_for_during_a_run_starts_when_it_ends(sandbox, sync):
    sandbox.seed(hubspot_contacts=40, random_seed=23)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    active, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert created
    asked = []

    def ask_once(run):
        # Asked while the run is reading, as a marketer saving a mapping at that moment.
        if not asked and run.phase.startswith("Reading"):
            asked.append(backfill_request(sync=sync, hub_fields=[JOB_TITLE], user=None))
            assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == [JOB_TITLE]
            with pytest.raises(RunUnderWay):
                full_resync_request(sync=sync, user=None)

    finished = run_execute(run_id=active.pk, on_progress=ask_once)
    assert asked == [None] and finished.status in DONE and not finished.full_read

    queued = SyncRun.objects.get(sync=sync, status=SyncRun.Status.QUEUED)
    assert (queued.trigger, queued.full_read, queued.backfill_fields) == (SyncRun.Trigger.BACKFILL, True, [JOB_TITLE])
    run = run_execute(run_id=queued.pk)
    assert run.status in DONE and run.read_count == 40
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == []
    assert {email: title for email, title in job_titles(sandbox).items() if title} == expected_job_titles(sandbox)


def test_a_run_queued_before_the_backfill_was_asked_for_takes_it_when_it_starts(sandbox, sync):
    sandbox.seed(hubspot_contacts=40, random_seed=26)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    queued, _ = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert backfill_request(sync=sync, hub_fields=[JOB_TITLE], user=None) is None

    run = run_execute(run_id=queued.pk)
    assert (run.full_read, run.backfill_fields, run.read_count) == (True, [JOB_TITLE], 40)
    assert not SyncRun.objects.filter(sync=sync, status=SyncRun.Status.QUEUED).exists()
    assert {email: title for email, title in job_titles(sandbox).items() if title} == expected_job_titles(sandbox)


def test_a_backfill_of_a_paused_sync_waits_for_its_next_run(sandbox, sync):
    sandbox.seed(hubspot_contacts=30, random_seed=24)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    Sync.objects.filter(pk=sync.pk).update(paused=True)
    assert backfill_request(sync=Sync.objects.get(pk=sync.pk), hub_fields=[JOB_TITLE], user=None) is None
    Sync.objects.filter(pk=sync.pk).update(paused=False)

    run = run_now(Sync.objects.get(pk=sync.pk))
    assert (run.trigger, run.full_read, run.backfill_fields) == (SyncRun.Trigger.MANUAL, True, [JOB_TITLE])
    assert run.read_count == 30
    assert {email: title for email, title in job_titles(sandbox).items() if title} == expected_job_titles(sandbox)


def test_a_full_resync_loses_no_archive_made_in_hubspot_before_it(sandbox, sync):
    # No overlap: the next delta's reach back would otherwise hide a lost window this short.
    Connection.objects.filter(name="HubSpot").update(settings={"overlap_seconds": 0})
    sandbox.seed(hubspot_contacts=30, random_seed=25)
    assert run_now(sync).status in DONE
    assert run_now(sync).status in DONE
    link = RecordLink.objects.filter(connection__name="HubSpot", archived=False).exclude(external_id=None).first()
    response = requests.delete(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/{link.external_id}",
                               headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=10)
    assert response.status_code == 204, response.text
    time.sleep(0.05)

    resync = run_execute(run_id=full_resync_request(sync=sync, user=None).pk)
    assert resync.status in DONE and resync.read_count == 29
    # The scan lists live contacts only; the delta after it still brings the archive.
    run_now(sync)
    link.refresh_from_db()
    assert link.archived


def backfilled_after_a_change(sandbox, sync: Sync, connection_name: str, transforms: list) -> SyncRun:
    """Change one job title mapping's transforms, as the editor saves them, and run the backfill it asks for."""
    FieldMapping.objects.filter(sync=sync, connection__name=connection_name, hub_field=JOB_TITLE).update(
        transforms=transforms)
    sandbox.reset_stats()
    run = backfill_run(sync)
    assert run.status in DONE, run.error
    return run


def test_a_changed_inbound_transform_reaches_every_record_already_synced(sandbox, sync):
    # Review of issue 9: a record whose raw value had not changed was skipped as "not
    # news", so a new inbound transform changed nothing until each record was edited.
    sandbox.seed(hubspot_contacts=60, random_seed=27)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    assert backfill_run(sync).status in DONE
    titled = expected_job_titles(sandbox)
    assert titled and any(title != title.upper() for title in titled.values())

    run = backfilled_after_a_change(sandbox, sync, "HubSpot", [{"name": "uppercase"}])
    upper = {email: title.upper() for email, title in titled.items()}
    assert {email: Contact.objects.get(email=email).attributes["jobtitle"] for email in upper} == upper
    assert {email: title for email, title in job_titles(sandbox).items() if title} == upper
    assert run.pushed_count == sum(1 for title in titled.values() if title != title.upper())

    # The next run of the changes reads its own writes back as echoes: nothing moves.
    sandbox.reset_stats()
    delta = run_now(sync)
    assert (delta.updated_count, delta.pushed_count, sandbox.stats()["writes"]) == (0, 0, 0)


def test_a_changed_outbound_transform_is_pushed_although_the_hub_value_did_not_change(sandbox, sync):
    # Review of issue 9: Mailchimp's "Engineer" and the new "ENGINEER" read the same in
    # hub form through the new chain, so the backfill thought Mailchimp up to date.
    sandbox.seed(hubspot_contacts=60, random_seed=28)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    assert backfill_run(sync).status in DONE
    titled = expected_job_titles(sandbox)
    hub_before = {email: Contact.objects.get(email=email).attributes["jobtitle"] for email in titled}

    run = backfilled_after_a_change(sandbox, sync, "Mailchimp", [{"name": "uppercase"}])
    upper = {email: title.upper() for email, title in titled.items()}
    assert {email: title for email, title in job_titles(sandbox).items() if title} == upper
    assert run.pushed_count == sum(1 for title in titled.values() if title != title.upper())
    # The hub keeps its spelling, and HubSpot, which only feeds the field, is not written.
    assert {email: Contact.objects.get(email=email).attributes["jobtitle"] for email in titled} == hub_before
    assert "hubspot" not in {system for system, calls in sandbox.stats()["requests"].items()
                             if any(not name.startswith("GET") and "search" not in name for name in calls)}

    sandbox.reset_stats()
    delta = run_now(sync)
    assert (delta.pushed_count, sandbox.stats()["writes"]) == (0, 0)


def test_a_full_resync_that_fails_gives_back_the_backfill_it_took(sandbox, sync):
    # Review of issue 9: a full resync took the waiting backfill and, when it failed,
    # lost it; the fields were never read in full again.
    sandbox.seed(hubspot_contacts=20, random_seed=29)
    assert run_now(sync).status in DONE
    job_title_mapped(sandbox, sync)
    Sync.objects.filter(pk=sync.pk).update(backfill_pending_fields=[JOB_TITLE])
    Connection.objects.filter(name="Mailchimp").update(api_key="wrong-key-us1")
    resync = full_resync_request(sync=Sync.objects.get(pk=sync.pk), user=None)
    failed = run_execute(run_id=resync.pk)
    assert failed.status == SyncRun.Status.FAILED
    assert (failed.backfill_fields, failed.backfill_taken) == ([], [JOB_TITLE])
    assert Sync.objects.get(pk=sync.pk).backfill_pending_fields == [JOB_TITLE]
    assert not SyncRun.objects.filter(sync=sync, status__in=SyncRun.ACTIVE).exists()
