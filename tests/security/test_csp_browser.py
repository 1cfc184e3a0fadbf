"""In a real browser, the policy blocks nothing our pages or the admin do, and their
scripts still run under it."""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from syncapp.models import SyncRun
from tests.browser.conftest import browser, browser_login, chromium, wait_for  # noqa: F401 - browser fixtures
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.browser

# Runs in each page before its own scripts, outside the page's policy: it records every
# violation the browser reports.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline code"}`
                            + ` at ${event.sourceFile}:${event.lineNumber}`);
});
"""


@pytest.fixture
def recording_browser(browser):  # noqa: F811 - the imported fixture
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
    yield browser
    browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def visit(driver, url: str) -> list[str]:
    """Open `url`, let its scripts run, and return the violations reported."""
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    # Deferred and async scripts report their violations after the load event.
    driver.execute_script("return new Promise((resolve) => setTimeout(resolve, 200));")
    return driver.execute_script("return window.cspViolations;")


def test_pages_and_admin_run_under_the_policy_without_a_violation(recording_browser, browser_login, live_server):  # noqa: F811
    sync = workspace_make()
    run = run_make(sync, status=SyncRun.Status.SUCCEEDED, progress_done=4, progress_total=4)
    connection = sync.endpoints.first().connection
    user_with_role("root", superuser=True)
    browser_login("root")

    paths = [
        "/",
        f"/syncs/{sync.pk}/",
        f"/syncs/{sync.pk}/runs/{run.pk}/",
        "/admin/",
        "/admin/connections/connection/",
        f"/admin/syncapp/sync/{sync.pk}/change/",
        "/admin/audit/auditevent/",
        f"/admin/connections/connection/{connection.pk}/change/",
    ]
    violations = {path: visit(recording_browser, f"{live_server.url}{path}") for path in paths}
    assert violations == {path: [] for path in paths}

    # The admin's scripts ran: they add the "Now" shortcut beside the expiry time.
    wait_for(recording_browser,
             expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".datetimeshortcuts")))
    # And the recorder does hear a violation: an inline style attribute is one.
    recording_browser.execute_script("document.body.setAttribute('style', 'color: red');")
    wait_for(recording_browser, lambda d: d.execute_script("return window.cspViolations.length") == 1)
