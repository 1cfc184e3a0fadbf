"""A marketer builds a sync with the keyboard on a 1,366 px screen, without the admin and without scrolling sideways."""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions

from syncapp.models import Sync
from syncapp.roles import MARKETER
from syncapp.services.syncs import sync_pause
from tests.browser.conftest import wait_for
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.browser

SCREENSHOT_REFUSED = "/tmp/syncapp-sync-builder-refused.png"
SCREENSHOT_SAVED = "/tmp/syncapp-sync-builder-saved.png"


def no_sideways_scrolling(browser) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def press(element, *keys) -> None:
    """Focus `element` as Tab would, then type `keys` into it."""
    element.parent.execute_script("arguments[0].focus()", element)
    element.send_keys(*keys)


def test_a_marketer_builds_a_sync_with_the_keyboard(browser, browser_login, live_server):
    connection_make("HubSpot", "hubspot", access_token="hs-token-0123456789")
    connection_make("Mailchimp", "mailchimp", api_key="mc-key-0123456789-us1", settings={"list_id": "abc"})
    connection_make("A" * 100, "hubspot", access_token="hs-token-9876543210")
    user_with_role("maria", MARKETER)

    browser_login("maria")
    assert not browser.find_elements(By.LINK_TEXT, "Admin")
    browser.find_element(By.LINK_TEXT, "New sync").click()
    name = wait_for(browser, expected_conditions.presence_of_element_located((By.NAME, "name")))
    assert no_sideways_scrolling(browser)

    name.send_keys("HubSpot to Mailchimp")
    roles = browser.find_elements(By.CSS_SELECTOR, "select[name$='-role']")
    # Rows by connection name: the long one, HubSpot, Mailchimp.
    press(roles[1], "Read:")
    press(roles[2], "Write")
    cron_choice = browser.find_element(By.ID, "id_schedule_cron_choice")
    press(cron_choice, Keys.SPACE)
    press(browser.find_element(By.NAME, "schedule_cron"), "0 6 * * 1-5")
    # Saved without choosing what new Mailchimp members get: refused, next to the field.
    name.send_keys(Keys.ENTER)
    error = wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".field-error")))
    assert "Choose the status new members get in Mailchimp" in error.text
    assert "Next run with this schedule" in browser.find_element(By.CSS_SELECTOR, "[data-testid=next-run]").text
    assert no_sideways_scrolling(browser)
    browser.save_screenshot(SCREENSHOT_REFUSED)
    assert not Sync.objects.exists()

    pending = browser.find_element(By.CSS_SELECTOR, "input[name='endpoints-2-new_member_status'][value='pending']")
    press(pending, Keys.SPACE)
    press(browser.find_element(By.NAME, "name"), Keys.ENTER)
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=sync-schedule]")))
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "On the cron schedule 0 6 * * 1-5" in page and "next run" in page
    assert "Pending (double opt-in)" in page
    sync = Sync.objects.get()
    assert (sync.schedule_cron, [e.connection.name for e in sync.endpoints.all()]) == (
        "0 6 * * 1-5", ["HubSpot", "Mailchimp"])

    # A long pause reason, as the drift check writes, keeps the page within the screen.
    sync_pause(sync=sync, user=None, reason="The Mailchimp field " + "X" * 10_000 + " was removed.")
    browser.refresh()
    banner = wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=pause-banner]")))
    assert "This sync is paused" in banner.text
    assert no_sideways_scrolling(browser)
    browser.save_screenshot(SCREENSHOT_SAVED)
    press(banner.find_element(By.CSS_SELECTOR, "button"), Keys.ENTER)
    wait_for(browser, expected_conditions.invisibility_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=pause-banner]")))
    sync.refresh_from_db()
    assert (sync.paused, sync.paused_reason) == (False, "")
