"""A marketer builds a HubSpot to Mailchimp sync from scratch in the app, runs it, then adds a field.

Only the two connections and the marketer exist beforehand; the sync, its new-member
status, its schedule and every mapping are made through the pages, with clicks, typing
and the pickers. The run is read on the page and checked against the database and the
sandbox; a field added afterwards is filled by the backfill the editor queues.

Screenshots of each step are kept in $SCREENSHOT_DIR (default var/screenshots/).
"""
from __future__ import annotations

import re
import time

import pytest
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.engine.text import clean_text
from syncapp.models import Contact, RecordError, RecordLink, Sync, SyncRun
from syncapp.roles import MARKETER
from tests.browser.conftest import full_page_screenshots, wait_for
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CONTACTS = 300
SYNC_NAME = "Newsletter audience"
INTERVAL_MINUTES = "30"
RUN_TIMEOUT_SECONDS = 180
DONE = ("Succeeded", "Partial")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@pytest.fixture
def screenshot(browser):
    return full_page_screenshots(browser, "build-a-sync")


def page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "main").text


def no_sideways_scrolling(browser) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def success_message(browser) -> str:
    """Wait for the page after a save: return its success message, or fail with the refusal shown."""
    wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, ".message-success, .form-errors")))
    refused = browser.find_elements(By.CSS_SELECTOR, ".form-errors")
    assert not refused, f"the page refused the form:\n{page_text(browser)}"
    return browser.find_element(By.CSS_SELECTOR, ".message-success").text


def endpoint_row(browser, connection_name: str):
    rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=endpoint-row]")
    return next(row for row in rows if row.find_element(By.CSS_SELECTOR, ".endpoint-name strong").text
                == connection_name)


def external_option(select: Select, field_name: str):
    """The option of the system's field `field_name`, as the picker shows it ("FNAME · First Name (text…)")."""
    for option in select.options:
        if option.is_enabled() and option.get_attribute("value") and option.text.split(" ")[0] == field_name:
            return option
    offered = [option.text for option in select.options if option.is_enabled()]
    raise AssertionError(f"{field_name} is not offered in the field picker: {offered}")


def mapping_add(browser, screenshot, *, system: str, hub_field: str, external_field: str, direction: str,
                owner: bool, transform: str = "", step: str = "") -> str:
    """Add one mapping through the editor's form, with its pickers; return the message shown after saving."""
    browser.find_element(By.CSS_SELECTOR, "[data-testid=add-mapping]").click()
    form = wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-mapping-form]")))
    Select(form.find_element(By.NAME, "connection")).select_by_visible_text(system)
    Select(form.find_element(By.NAME, "hub_field")).select_by_value(hub_field)
    external_option(Select(form.find_element(By.NAME, "external_field")), external_field).click()
    Select(form.find_element(By.NAME, "direction")).select_by_visible_text(direction)
    is_owner = form.find_element(By.NAME, "is_owner")
    if is_owner.is_selected() != owner:
        is_owner.click()
    if transform:
        Select(form.find_element(By.NAME, "chain-0-name")).select_by_visible_text(transform)
    if step:
        screenshot(step)
    assert no_sideways_scrolling(browser)
    form.find_element(By.CSS_SELECTOR, "button[value=save]").click()
    return success_message(browser)


def run_panel_finished(browser, timeout: float = RUN_TIMEOUT_SECONDS) -> dict[str, int]:
    """Wait until the page's run panel says the run finished; return the counts it shows."""
    deadline = time.monotonic() + timeout
    panel = browser.find_element(By.CSS_SELECTOR, "[data-run-panel]")
    while panel.get_attribute("data-finished") != "true":
        status = panel.find_element(By.CSS_SELECTOR, "[data-field=status]").text
        assert time.monotonic() < deadline, f"the run did not finish in {timeout} s; the page says {status}"
        time.sleep(0.2)
        panel = browser.find_element(By.CSS_SELECTOR, "[data-run-panel]")
    # The script fills the counts as it learns the run finished: give it one more poll.
    time.sleep(0.7)
    panel = browser.find_element(By.CSS_SELECTOR, "[data-run-panel]")
    counts = {element.get_attribute("data-count"): int(element.text.replace(",", ""))
              for element in panel.find_elements(By.CSS_SELECTOR, "[data-count]")}
    counts["status"] = panel.find_element(By.CSS_SELECTOR, "[data-field=status]").text
    return counts


def assert_counts_are_the_runs(shown: dict, run: SyncRun) -> None:
    stored = {
        "read": run.read_count, "created": run.created_count, "updated": run.updated_count,
        "unchanged": run.unchanged_count, "pushed": run.pushed_count, "conflicts": run.conflict_count,
        "failed": run.failed_count, "warnings": run.warning_count, "suppressed": run.suppressed_count,
        "echoes": run.echo_count, "status": run.get_status_display(),
    }
    assert shown == stored


def clicked(driver, locator) -> bool:
    """Click the element at `locator` if it is there and still in the page; say whether it was clicked."""
    try:
        driver.find_element(*locator).click()
    except (NoSuchElementException, StaleElementReferenceException):
        return False
    return True


def follow_to_run(browser, sync: Sync, message: str) -> SyncRun:
    """From the editor's "Backfill queued: run #N" message, go to run N's page by the sync page's run list."""
    found = re.search(r"Backfill queued: run #(\d+)", message)
    assert found, f"no backfill was queued: {message}"
    number = found.group(1)
    browser.find_element(By.CSS_SELECTOR, "nav.breadcrumbs").find_element(By.LINK_TEXT, SYNC_NAME).click()
    # The run table refreshes itself while runs progress: a link found may be replaced
    # before it is clicked, so the click is retried on the current one.
    wait_for(browser, lambda driver: clicked(driver, (By.LINK_TEXT, f"#{number}")))
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-run-panel]")))
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Run #{number}"
    run = SyncRun.objects.get(pk=number)
    assert (run.sync_id, run.trigger, run.full_read) == (sync.pk, SyncRun.Trigger.BACKFILL, True)
    return run


def hubspot_properties(sandbox) -> dict[str, dict]:
    return {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts()}


def mailchimp_people(sandbox) -> dict[str, tuple[Contact, dict]]:
    """Return {member id: (hub contact, member)} for the sandbox's members, through their links."""
    members = {member["id"]: member for member in sandbox.mailchimp_members()}
    links = RecordLink.objects.filter(connection__name="Mailchimp", external_id__in=list(members)).select_related(
        "contact")
    people = {link.external_id: (link.contact, members[link.external_id]) for link in links}
    assert set(people) == set(members), "every member in the audience is linked to one hub contact"
    return people


def test_a_marketer_builds_a_sync_runs_it_and_backfills_a_new_field(
    browser, browser_login, live_server, sandbox, worker, screenshot,
):
    sandbox.seed(hubspot_contacts=CONTACTS, hostile=True)
    Connection.objects.create(name="HubSpot", provider="hubspot", base_url=sandbox.hubspot_url,
                              access_token=sandbox.hubspot_token)
    Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                              api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})
    user_with_role("maria", MARKETER)

    # The sync: HubSpot read, Mailchimp written, new members pending (double opt-in).
    browser_login("maria")
    browser.find_element(By.LINK_TEXT, "New sync").click()
    name = wait_for(browser, expected_conditions.presence_of_element_located((By.NAME, "name")))
    screenshot("01-new-sync")
    name.send_keys(SYNC_NAME)
    Select(endpoint_row(browser, "HubSpot").find_element(By.CSS_SELECTOR, "select[name$='-role']")) \
        .select_by_visible_text("Read: take changes from it")
    mailchimp_row = endpoint_row(browser, "Mailchimp")
    Select(mailchimp_row.find_element(By.CSS_SELECTOR, "select[name$='-role']")) \
        .select_by_visible_text("Write: send changes to it")
    mailchimp_row.find_element(By.CSS_SELECTOR, "input[name$='-new_member_status'][value=pending]").click()
    browser.find_element(By.ID, "id_schedule_interval").click()
    minutes = browser.find_element(By.NAME, "schedule_minutes")
    minutes.clear()
    minutes.send_keys(INTERVAL_MINUTES)
    screenshot("02-new-sync-filled")
    assert no_sideways_scrolling(browser)
    browser.find_element(By.CSS_SELECTOR, ".form-footer button[type=submit]").click()
    assert success_message(browser) == f"Sync “{SYNC_NAME}” saved."
    schedule = browser.find_element(By.CSS_SELECTOR, "[data-testid=sync-schedule]").text
    assert "Every 30 minutes" in schedule and "next run" in schedule, schedule
    statuses = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "[data-testid=new-member-status]")]
    assert statuses[0] == "—" and statuses[1].startswith("Pending (double opt-in)"), statuses
    screenshot("03-sync-saved")
    sync = Sync.objects.get(name=SYNC_NAME)
    assert sync.owner.username == "maria"
    assert [(endpoint.connection.name, endpoint.read, endpoint.write, endpoint.new_member_status)
            for endpoint in sync.endpoints.order_by("connection__name")] == [
        ("HubSpot", True, False, ""), ("Mailchimp", False, True, "pending")]

    # The mapping editor: discover both systems' fields, then map through the pickers.
    browser.find_element(By.LINK_TEXT, "Mappings").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=add-mapping]")))
    screenshot("04-editor-before-discovery")
    for system in ("HubSpot", "Mailchimp"):
        browser.find_element(By.XPATH, f"//button[normalize-space()='Refresh fields of {system}']").click()
        assert success_message(browser).startswith(f"{system} reported ")
    screenshot("05-editor-fields-discovered")
    assert no_sideways_scrolling(browser)

    plan = [
        ("HubSpot", "email", "email", "Into the hub", True, ""),
        ("HubSpot", "first_name", "firstname", "Into the hub", True, ""),
        ("HubSpot", "last_name", "lastname", "Into the hub", True, ""),
        ("HubSpot", "phone", "phone", "Into the hub", True, "Phone to E.164"),
        ("Mailchimp", "email", "email_address", "Out of the hub", False, ""),
        ("Mailchimp", "first_name", "FNAME", "Out of the hub", False, ""),
        ("Mailchimp", "last_name", "LNAME", "Out of the hub", False, ""),
        ("Mailchimp", "phone", "PHONE", "Out of the hub", False, ""),
    ]
    for system, hub_field, external_field, direction, owner, transform in plan:
        message = mapping_add(browser, screenshot, system=system, hub_field=hub_field, external_field=external_field,
                              direction=direction, owner=owner, transform=transform,
                              step="06-mapping-phone-e164" if transform else "")
        assert message.startswith(f"Saved: {system} {external_field} ↔ "), message
    screenshot("07-editor-mapped")
    assert sorted(FieldMapping.objects.filter(sync=sync).values_list(
        "connection__name", "hub_field", "external_field", "direction", "is_owner", "transforms")) == sorted(
        (system, hub_field, external_field, "in" if direction == "Into the hub" else "out", owner,
         ["phone_e164"] if transform else [])
        for system, hub_field, external_field, direction, owner, transform in plan)
    # Building the sync wrote nothing anywhere: the first run is the marketer's Run now.
    assert not SyncRun.objects.filter(sync=sync).exists()
    assert sandbox.mailchimp_members() == []

    # Run now, and read the counts on the page.
    browser.find_element(By.CSS_SELECTOR, "nav.breadcrumbs").find_element(By.LINK_TEXT, SYNC_NAME).click()
    wait_for(browser, expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button[data-run-now]"))).click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-run-panel]")))
    shown = run_panel_finished(browser)
    screenshot("08-first-run-finished")
    run = SyncRun.objects.get(sync=sync)
    assert (run.trigger, run.requested_by.username) == (SyncRun.Trigger.MANUAL, "maria")
    assert shown["status"] in DONE, run.error
    assert_counts_are_the_runs(shown, run)
    assert run.read_count >= CONTACTS
    # Reloaded, the whole page tells the same story as the live panel did.
    browser.refresh()
    assert run_panel_finished(browser) == shown
    row = browser.find_element(By.XPATH, f"//a[normalize-space()='#{run.pk}']/ancestor::tr").text
    assert row.startswith(f"#{run.pk} {shown['status']} Manual"), row
    if shown["failed"] or shown["warnings"]:
        assert f"Record errors and warnings of run #{run.pk}" in page_text(browser)
    screenshot("08b-first-run-reloaded")
    # Every hub contact is new, and every one with an email that Mailchimp did not refuse became a member:
    # each push created one, as pending (the hub does not know their consent).
    people = mailchimp_people(sandbox)
    refused = set(RecordError.objects.filter(run=run, connection__name="Mailchimp", severity="error")
                  .values_list("contact_id", flat=True))
    # (A contact HubSpot knows by phone only is not applicable to an email-keyed audience.)
    assert shown["created"] == Contact.objects.count()
    assert Contact.objects.exclude(email=None).count() == len(people) + len(refused)
    assert shown["pushed"] == len(people) > CONTACTS / 2
    assert {member["status"] for _, member in people.values()} == {"pending"}
    hubspot = hubspot_properties(sandbox)
    # Hostile values Mailchimp refuses (a first name of 10,000 characters) are record errors or
    # warnings of their own, shown on the run; every other member holds the hub's values.
    flagged = set(RecordError.objects.filter(run=run, connection__name="Mailchimp")
                  .values_list("contact_id", flat=True))
    assert len(flagged) <= shown["failed"] + shown["warnings"]
    converted = 0
    for contact, member in people.values():
        if contact.pk in flagged:
            continue
        merge_fields = member["merge_fields"]
        assert (merge_fields.get("FNAME", ""), merge_fields.get("LNAME", "")) == (contact.first_name, contact.last_name)
        assert merge_fields.get("PHONE", "") == (contact.phone or "")
        if contact.phone:
            assert E164.match(contact.phone), contact.phone
            source = contact.links.get(connection__name="HubSpot").external_id
            converted += hubspot[source].get("phone") != contact.phone
    assert converted, "some HubSpot phones were written nationally and reached Mailchimp in E.164"

    # One more field: HubSpot's company into the hub, then on to Mailchimp's COMPANY.
    browser.find_element(By.LINK_TEXT, "Mappings").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=add-mapping]")))
    message = mapping_add(browser, screenshot, system="HubSpot", hub_field="company", external_field="company",
                          direction="Into the hub", owner=True)
    screenshot("09-company-read-backfill-queued")
    first_backfill = follow_to_run(browser, sync, message)
    assert first_backfill.backfill_fields == [f"company@{Connection.objects.get(name='HubSpot').pk}"]
    shown = run_panel_finished(browser)
    screenshot("10-company-read-backfill-finished")
    first_backfill.refresh_from_db()
    assert shown["status"] in DONE, first_backfill.error
    assert_counts_are_the_runs(shown, first_backfill)
    assert shown["read"] >= CONTACTS, "every HubSpot contact is read again"
    assert shown["pushed"] == 0, "Mailchimp has no company field mapped yet"
    with_company = {contact.pk for contact, _ in people.values() if
                    clean_text(hubspot[contact.links.get(connection__name="HubSpot").external_id].get("company") or "")}
    assert Contact.objects.filter(pk__in=with_company).exclude(company="").count() == len(with_company) > 0

    browser.find_element(By.CSS_SELECTOR, "nav.breadcrumbs").find_element(By.LINK_TEXT, SYNC_NAME).click()
    browser.find_element(By.LINK_TEXT, "Mappings").click()
    message = mapping_add(browser, screenshot, system="Mailchimp", hub_field="company", external_field="COMPANY",
                          direction="Out of the hub", owner=False)
    screenshot("11-company-write-backfill-queued")
    second_backfill = follow_to_run(browser, sync, message)
    shown = run_panel_finished(browser)
    screenshot("12-company-write-backfill-finished")
    second_backfill.refresh_from_db()
    assert shown["status"] in DONE, second_backfill.error
    assert_counts_are_the_runs(shown, second_backfill)

    # The sandbox's members now hold the companies; only the members that got one were written.
    refused = set(RecordError.objects.filter(run=second_backfill, connection__name="Mailchimp", severity="error")
                  .values_list("contact_id", flat=True))
    filled = 0
    for contact, member in mailchimp_people(sandbox).values():
        contact.refresh_from_db()
        company = member["merge_fields"].get("COMPANY", "")
        if contact.pk in refused:
            assert company == "", contact.pk
        else:
            assert company == contact.company, contact.pk
            filled += bool(company)
    assert filled == shown["pushed"] == len(with_company - refused) > 0
    assert not browser.find_elements(By.XPATH, "//script[not(@src)]")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (the hostile names carry alert() calls)
