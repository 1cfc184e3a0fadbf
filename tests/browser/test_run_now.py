"""A marketer logs in, presses Run now, watches the progress bar, and reads the counts."""
import time

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from syncapp.demo import demo_workspace_build
from syncapp.models import SyncRun
from syncapp.roles import MARKETER
from tests.browser.conftest import wait_for
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CONTACTS = 1500
# Slows every sandbox reply so the run lasts long enough (a dozen calls, several
# seconds) for the page's 500 ms polling to see the bar at more than one place.
LATENCY_MS = 400
RUN_TIMEOUT_SECONDS = 120
# The bar eases to each new value; screenshots wait until it got there.
SETTLE_SECONDS = 0.5
SCREENSHOT_RUNNING = "/tmp/syncapp-run-now-running.png"
SCREENSHOT_FINISHED = "/tmp/syncapp-run-now-finished.png"


def panel_state(browser) -> dict:
    panel = browser.find_element(By.CSS_SELECTOR, "[data-run-panel]")
    bar = panel.find_element(By.CSS_SELECTOR, "progress")
    return {
        "finished": panel.get_attribute("data-finished") == "true",
        "status": panel.find_element(By.CSS_SELECTOR, "[data-field=status]").text,
        "value": bar.get_attribute("value"),
        "phase": panel.find_element(By.CSS_SELECTOR, "[data-field=phase]").text,
    }


def shown_count(browser, name: str) -> int:
    return int(browser.find_element(By.CSS_SELECTOR, f"[data-count={name}]").text.replace(",", ""))


def test_a_marketer_runs_a_sync_and_watches_it_to_the_end(browser, browser_login, live_server, sandbox, worker):
    # The hostile records in HubSpot alone: every other system starts empty.
    sandbox.seed(hubspot_contacts=CONTACTS, hostile=["hubspot"])
    root = user_with_role("root", superuser=True)
    workspace = demo_workspace_build(sandbox_url=sandbox.url, list_id=sandbox.list_id, user=root)
    user_with_role("maria", MARKETER)
    sandbox.faults(provider="all", latency_ms=LATENCY_MS)

    browser_login("maria")
    browser.find_element(By.LINK_TEXT, "Syncs").click()
    browser.find_element(By.LINK_TEXT, workspace.sync.name).click()
    assert "This sync has not run yet" in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "button[data-run-now]").click()

    wait_for(browser, expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "[data-run-panel] progress")))
    run = SyncRun.objects.get(sync=workspace.sync)
    assert (run.trigger, run.requested_by.username) == ("manual", "maria")
    assert not browser.find_element(By.CSS_SELECTOR, "button[data-run-now]").is_enabled()

    # Watch the page (not the database): the script must move the bar while the run works.
    seen_running, screenshot_taken = set(), False
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    state = panel_state(browser)
    while not state["finished"]:
        assert time.monotonic() < deadline, f"the run did not finish in {RUN_TIMEOUT_SECONDS} s; last seen {state}"
        if state["status"] == "Running" and state["value"] not in (None, "0", "100"):
            seen_running.add((state["phase"], state["value"]))
            if not screenshot_taken:
                time.sleep(SETTLE_SECONDS)
                browser.save_screenshot(SCREENSHOT_RUNNING)
                screenshot_taken = True
        time.sleep(0.1)
        state = panel_state(browser)
    time.sleep(SETTLE_SECONDS)
    browser.save_screenshot(SCREENSHOT_FINISHED)
    assert len(seen_running) >= 2, f"the progress bar did not move while running: {seen_running}"

    run.refresh_from_db()
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    assert state["status"] == run.get_status_display()
    assert state["value"] == "100"
    assert run.read_count >= CONTACTS
    for name, value in {
        "read": run.read_count, "created": run.created_count, "pushed": run.pushed_count, "failed": run.failed_count,
        "warnings": run.warning_count,
    }.items():
        assert shown_count(browser, name) == value, name
    # The demo's sync pushes each contact to both email platforms (ActiveCampaign's account starts empty here).
    members = {member["email_address"] for member in sandbox.mailchimp_members()}
    activecampaign = sandbox.control("activecampaign", "contacts")["contacts"]
    assert run.pushed_count == len(members) + len(activecampaign)
    assert len(members) >= CONTACTS - run.failed_count
    assert browser.find_element(By.CSS_SELECTOR, "button[data-run-now]").is_enabled()

    # The hostile records the sandbox seeded come back as record errors (bad addresses)
    # and warnings (phones that cannot be read): shown, never run.
    browser.refresh()
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-run-panel]")))
    if run.failed_count or run.warning_count:
        assert "Record errors and warnings of run" in browser.page_source
    assert not browser.find_elements(By.XPATH, "//script[not(@src)]")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (the hostile names carry alert() calls)
