"""A compliance user finds a person's events, exports them, files a deletion request, watches it
reach every system, and downloads the receipt.

The person is in the hub and in both sandbox systems beforehand, put there by a sync run.
A real worker (`qcluster`) carries the request out while the page is open; the page
follows it without being reloaded. Screenshots of each step are kept in $SCREENSHOT_DIR
(default var/screenshots/).
"""
from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from audit.models import DeletionRequest
from audit.receipts import receipt_document_verify
from syncapp.models import Contact
from syncapp.roles import COMPLIANCE
from tests.browser.conftest import full_page_screenshots, wait_for
from tests.integration.workspace import hubspot_create, run_now, sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ADA = "ada@example.com"
ADA_PHONE = "+14155550100"
COMPLETION_TIMEOUT_SECONDS = 90


@pytest.fixture
def screenshot(browser):
    return full_page_screenshots(browser, "deletion-request")


@pytest.fixture
def downloads(browser):
    """A directory the browser saves downloads to."""
    directory = tempfile.mkdtemp(prefix="syncapp-downloads-")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": directory})
    return Path(directory)


def status_shown(browser) -> str:
    # Read in one script call: the live panel replaces the header between a find and a
    # separate .text, which made a stale-element failure in CI.
    return browser.execute_script(
        "const cell = document.querySelector('[data-deletion-live=header] [data-field=status]');"
        "return cell ? cell.innerText.trim() : '';"
    )


def test_a_compliance_user_exports_a_persons_trail_files_a_request_watches_it_complete_and_gets_the_receipt(
    browser, browser_login, live_server, sandbox, worker, screenshot, downloads
):
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"email": ADA, "firstname": "Ada", "phone": ADA_PHONE},
                             {"email": "grace@example.com", "firstname": "Grace"}])
    run_now(sync)
    assert Contact.objects.filter(email=ADA).exists()
    assert ADA in {member["email_address"] for member in sandbox.mailchimp_members()}
    user_with_role("carol", COMPLIANCE)

    browser_login("carol")
    # First what Syncapp holds about her: her events, and the filtered trail exported.
    browser.find_element(By.LINK_TEXT, "Audit").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.NAME, "person"))).send_keys(ADA)
    browser.find_element(By.CSS_SELECTOR, "form.filter-form button[type=submit]").click()
    wait_for(browser, expected_conditions.url_contains("person="))
    rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=event-row]")
    actions = {row.find_element(By.CSS_SELECTOR, "td.mono").text for row in rows}
    assert {"contact.created", "contact.pushed"} <= actions
    screenshot("00a-her-events")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=export-csv]").click()
    wait_for(browser, lambda _: any(path.suffix == ".csv" for path in downloads.iterdir()))
    exported_file = next(path for path in downloads.iterdir() if path.suffix == ".csv")
    wait_for(browser, lambda _: exported_file.stat().st_size > 0 and exported_file.read_text(encoding="utf-8")
             .count("\n") > len(rows))
    exported = list(csv.DictReader(io.StringIO(exported_file.read_text(encoding="utf-8"), newline="")))
    assert len(exported) == len(rows) and {row["action"] for row in exported} == actions

    browser.find_element(By.LINK_TEXT, "Deletion requests").click()
    assert "No deletion requests yet" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.LINK_TEXT, "New request").click()

    # The due date follows the regulation chosen until one is typed.
    due = browser.find_element(By.NAME, "due_date")
    today = timezone.localdate()
    assert due.get_attribute("value") == (today + timedelta(days=30)).isoformat()
    browser.find_element(By.CSS_SELECTOR, "input[name=regulation][value=ccpa]").click()
    assert due.get_attribute("value") == (today + timedelta(days=45)).isoformat()
    browser.find_element(By.CSS_SELECTOR, "input[name=regulation][value=gdpr]").click()

    # A malformed address is a form error, and nothing is filed.
    browser.find_element(By.NAME, "email").send_keys("ada@")
    browser.find_element(By.NAME, "reference").send_keys("DSR-2026-014")
    browser.find_element(By.CSS_SELECTOR, "form[data-testid=deletion-form] button[type=submit]").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=form-errors]")))
    assert "This is not an email address" in browser.find_element(By.TAG_NAME, "main").text
    assert not DeletionRequest.objects.exists()
    screenshot("01-malformed-email")

    email = browser.find_element(By.NAME, "email")
    email.clear()
    email.send_keys(ADA)
    browser.find_element(By.NAME, "phone").send_keys("+1 415 555 0100")
    screenshot("02-form-filled")
    browser.find_element(By.CSS_SELECTOR, "form[data-testid=deletion-form] button[type=submit]").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-deletion-live=header]")))
    request = DeletionRequest.objects.get()
    assert browser.current_url.endswith(f"/audit/deletions/{request.pk}/")
    assert "Deletion request" in browser.find_element(By.CSS_SELECTOR, ".message-success").text
    screenshot("03-filed")

    # The worker carries it out; the page follows without a reload.
    browser.execute_script("window.notReloaded = true")
    deadline = time.monotonic() + COMPLETION_TIMEOUT_SECONDS
    while status_shown(browser) != "Completed":
        assert time.monotonic() < deadline, f"not completed in time: {status_shown(browser)}"
        time.sleep(0.2)
    assert browser.execute_script("return window.notReloaded") is True
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=receipt-valid]")))
    main = browser.find_element(By.TAG_NAME, "main").text
    assert ADA not in main
    for system in ("hubspot", "mailchimp"):
        row = browser.find_element(By.CSS_SELECTOR, f"[data-testid=task-{system}]")
        assert row.find_element(By.CSS_SELECTOR, "[data-field=task-status]").text == "Erased"
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=hub-contacts]").text == "1"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot("04-completed")

    browser.find_element(By.CSS_SELECTOR, "[data-testid=receipt-download]").click()
    receipt_file = downloads / f"deletion-receipt-{request.pk}.json"
    wait_for(browser, lambda _: receipt_file.exists() and receipt_file.stat().st_size > 0)
    document = json.loads(receipt_file.read_text(encoding="utf-8"))
    assert receipt_document_verify(document)
    assert [(system["connection"], system["status"]) for system in document["receipt"]["systems"]] == [
        ("HubSpot", "erased"), ("Mailchimp", "erased")]
    assert ADA not in receipt_file.read_text(encoding="utf-8")

    # Gone from both systems, as their own listings show.
    assert ADA not in json.dumps(sandbox.hubspot_contacts())
    assert ADA not in {member["email_address"] for member in sandbox.mailchimp_members()}
    assert not Contact.objects.filter(email=ADA).exists()
