"""A reviewer resolves a conflict in the queue, and the next run puts the chosen value in both systems.

The conflict is made the way real ones are: two people change the same contact's first
name differently, one in HubSpot and one in Mailchimp, and the next run finds both sides
changed under manual review.
"""
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from syncapp.demo import demo_workspace_build
from syncapp.models import Conflict, Contact, SyncRun
from syncapp.roles import REVIEWER
from tests.browser.conftest import wait_for
from tests.integration.workspace import hubspot_edit, run_now
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CONTACTS = 20
# The seed has a few records a system refuses (record errors, a partial run); not the one edited.
FINISHED = (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL)
IN_HUBSPOT, IN_MAILCHIMP = "Katherine", "Kate"
RUN_TIMEOUT_SECONDS = 60
SCREENSHOT_CONFLICT = "/tmp/syncapp-review-conflict.png"
SCREENSHOT_QUEUE = "/tmp/syncapp-review-queue-after.png"


def mailchimp_edit(sandbox, member_id: str, **merge_fields) -> None:
    response = requests.patch(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/members/{member_id}",
                              json={"merge_fields": merge_fields}, auth=("anystring", sandbox.mailchimp_key),
                              timeout=10)
    response.raise_for_status()


def first_names(sandbox, email: str) -> tuple[str, str]:
    """Return the first name HubSpot and Mailchimp hold for `email`."""
    hubspot = next(contact for contact in sandbox.hubspot_contacts()
                   if (contact["properties"].get("email") or "").lower() == email)
    member = next(member for member in sandbox.mailchimp_members() if member["email_address"].lower() == email)
    return hubspot["properties"].get("firstname"), member["merge_fields"].get("FNAME")


def plant_conflict(sandbox, workspace) -> Conflict:
    """Sync everyone, edit one first name differently in both systems, and run again."""
    first = run_now(workspace.sync)
    assert first.status in FINISHED, first.error
    contact = (
        Contact.objects.filter(links__connection=workspace.hubspot, email__isnull=False)
        .filter(links__connection=workspace.mailchimp, links__pending_pushes__isnull=True)
        .exclude(first_name__in=["", IN_HUBSPOT, IN_MAILCHIMP]).order_by("pk").first()
    )
    hubspot_edit(sandbox, contact.links.get(connection=workspace.hubspot).external_id, firstname=IN_HUBSPOT)
    mailchimp_edit(sandbox, contact.links.get(connection=workspace.mailchimp).external_id, FNAME=IN_MAILCHIMP)
    second = run_now(workspace.sync)
    assert second.status in FINISHED, second.error
    return Conflict.objects.get(sync=workspace.sync, contact=contact, hub_field="first_name", status="open")


def test_a_reviewer_resolves_a_conflict_and_both_systems_get_the_chosen_value(browser, browser_login, live_server,
                                                                             sandbox, worker):
    sandbox.seed(hubspot_contacts=CONTACTS, random_seed=7)
    sandbox.limits(hubspot_rate_limit=0)
    root = user_with_role("root", superuser=True)
    workspace = demo_workspace_build(sandbox_url=sandbox.url, list_id=sandbox.list_id, user=root)
    conflict = plant_conflict(sandbox, workspace)
    email = conflict.contact.email
    # Held back: neither system was overwritten while the conflict is open.
    assert first_names(sandbox, email) == (IN_HUBSPOT, IN_MAILCHIMP)
    user_with_role("rita", REVIEWER)

    browser_login("rita")
    browser.find_element(By.PARTIAL_LINK_TEXT, "Review").click()
    total = wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=conflict-total]")))
    assert total.text == "1 found"
    browser.find_element(By.LINK_TEXT, email).click()

    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-resolve-form]")))
    page = browser.find_element(By.TAG_NAME, "main").text
    assert IN_HUBSPOT in page and IN_MAILCHIMP in page
    browser.save_screenshot(SCREENSHOT_CONFLICT)
    browser.find_element(By.XPATH, f"//label[normalize-space()='{workspace.mailchimp.name}']").click()
    browser.find_element(By.NAME, "reason").send_keys("She signs her emails Kate")
    browser.find_element(By.CSS_SELECTOR, "[data-resolve-form] button[type=submit]").click()

    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".message-success")))
    message = browser.find_element(By.CSS_SELECTOR, ".message-success").text
    assert f"Resolved First name of {email}. Kept {workspace.mailchimp.name}'s value." in message
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=queue-empty]"), "the item is still in the queue"
    browser.save_screenshot(SCREENSHOT_QUEUE)

    # The run the decision requested, executed by the worker.
    run = SyncRun.objects.filter(sync=workspace.sync, requested_by__username="rita").get()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while run.status in SyncRun.ACTIVE:
        assert time.monotonic() < deadline, f"run {run.pk} did not finish in {RUN_TIMEOUT_SECONDS} s"
        time.sleep(0.2)
        run.refresh_from_db()
    assert run.status in FINISHED, run.error
    assert first_names(sandbox, email) == (IN_MAILCHIMP, IN_MAILCHIMP)

    # Nothing echoes back: a further run writes nothing and reopens nothing.
    sandbox.reset_stats()
    again = run_now(workspace.sync)
    assert again.status in FINISHED, again.error
    assert sandbox.stats()["writes"] == 0
    assert not Conflict.objects.filter(sync=workspace.sync, status="open").exists()

    # The reviewer finds the decision on the conflict's page, with who made it and why.
    browser.get(f"{live_server.url}/conflicts/{conflict.pk}/")
    decision = browser.find_element(By.CSS_SELECTOR, "[data-testid=decision]").text
    assert f"Kept {workspace.mailchimp.name}'s value" in decision
    assert "rita" in decision and "She signs her emails Kate" in decision
