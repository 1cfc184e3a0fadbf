"""A marketer connects HubSpot through the sandbox's approval screen and sees it connected."""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from connections.models import Connection
from syncapp.roles import MARKETER
from tests.browser.conftest import wait_for
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_marketer_connects_hubspot_through_the_approval_screen(browser, browser_login, live_server, sandbox):
    user_with_role("maria", MARKETER)
    browser_login("maria")
    browser.find_element(By.LINK_TEXT, "Connections").click()
    browser.find_element(By.LINK_TEXT, "Connect an account").click()
    assert "crm.objects.contacts.read" in browser.page_source

    Select(browser.find_element(By.NAME, "provider")).select_by_value("hubspot")
    browser.find_element(By.NAME, "name").send_keys("HubSpot (sales)")
    browser.find_element(By.NAME, "base_url").send_keys(sandbox.hubspot_url)
    browser.find_element(By.ID, "connect-continue").click()

    scopes = wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "scopes"))).text
    assert "crm.objects.contacts.write" in scopes
    browser.find_element(By.ID, "connect").click()

    # The provider's approval screen, on the sandbox.
    requested = wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "requested-scopes")))
    assert browser.current_url.startswith(f"{sandbox.url}/hubspot/oauth/authorize")
    assert "crm.objects.contacts.read" in requested.text and "crm.objects.contacts.write" in requested.text
    browser.find_element(By.ID, "approve").click()

    status = wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=connection-status]")))
    assert browser.current_url.startswith(live_server.url)
    assert status.text == "Connected"
    assert "HubSpot (sales) is connected." in browser.page_source
    connection = Connection.objects.get(name="HubSpot (sales)")
    assert connection.status == Connection.Status.CONNECTED and connection.refresh_token
    assert connection.access_token not in browser.page_source
    assert connection.refresh_token not in browser.page_source
