"""A marketer maps a field with the keyboard in the mapping editor, on a 1,366 px screen without sideways scrolling.

The systems' fields are discovered from the sandbox, then one Mailchimp field gets hostile,
10,000-character labels and options: the pages must still fit the window.
"""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from connections.models import Connection
from connections.providers.base import FieldInfo
from mappings.discovery import field_catalog_refresh
from mappings.models import FieldCatalog, FieldMapping
from syncapp.models import SyncRun
from syncapp.roles import MARKETER
from tests.browser.conftest import wait_for
from tests.integration.workspace import sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCREENSHOT_EDITOR = "/tmp/syncapp-mapping-editor.png"
SCREENSHOT_CATALOGS = "/tmp/syncapp-mapping-catalogs.png"
SCREENSHOT_FORM = "/tmp/syncapp-mapping-form.png"
SCREENSHOT_REFUSED = "/tmp/syncapp-mapping-refused.png"


def scrolls_sideways(browser) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth > window.innerWidth")


def test_a_marketer_maps_company_with_the_keyboard_and_the_pages_fit(browser, browser_login, live_server, sandbox,
                                                                     hostile_contacts):
    sync = sandbox_sync(sandbox)
    # As after the sync's first run, so that a new mapping queues a backfill.
    sync.endpoints.filter(read=True).update(cursor="read-once")
    hubspot, mailchimp = Connection.objects.get(name="HubSpot"), Connection.objects.get(name="Mailchimp")
    for connection in (hubspot, mailchimp):
        field_catalog_refresh(connection=connection)
    catalog = FieldCatalog.objects.get(connection=mailchimp)
    names = [record["firstname"] for record in hostile_contacts if "\x00" not in record["firstname"]]
    catalog.fields += [FieldInfo(f"HOSTILE{index}", name or "x", "dropdown", "enum",
                                 options=(name, "o" * 10_000)).as_dict()
                       for index, name in enumerate(names[:8])]
    catalog.fields.append(FieldInfo("L" * 200, "w" * 10_000, "text", "text").as_dict())
    catalog.save()
    user_with_role("maria", MARKETER)

    browser_login("maria")
    browser.get(f"{live_server.url}/syncs/{sync.pk}/mappings/")
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-hub-field=company]")))
    browser.save_screenshot(SCREENSHOT_EDITOR)
    assert not scrolls_sideways(browser)
    browser.execute_script("document.querySelector('.catalog-grid').scrollIntoView()")
    browser.save_screenshot(SCREENSHOT_CATALOGS)
    company = browser.find_element(By.CSS_SELECTOR, "[data-hub-field=company]")
    assert "Suggested for Mailchimp" in company.text and "COMPANY" in company.text

    # Follow the suggestion with the keyboard: focus its link and press Enter.
    suggestion = next(item for item in company.find_elements(By.CSS_SELECTOR, ".suggestion")
                      if "Mailchimp" in item.text)
    link = suggestion.find_element(By.PARTIAL_LINK_TEXT, "Map it")
    link.send_keys(Keys.ENTER)
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-mapping-form]")))
    assert Select(browser.find_element(By.NAME, "connection")).first_selected_option.text == "Mailchimp"
    external = Select(browser.find_element(By.NAME, "external_field"))
    assert external.first_selected_option.get_attribute("value") == f"{mailchimp.pk}:COMPANY"
    # Only Mailchimp's fields are offered once Mailchimp is chosen.
    offered = [option.get_attribute("value") for option in external.options if option.is_enabled()]
    assert all(value == "" or value.startswith(f"{mailchimp.pk}:") for value in offered)

    browser.find_element(By.NAME, "direction").send_keys("Out")
    # A transform chosen from the keyboard shows its own settings only.
    name = browser.find_element(By.NAME, "chain-0-name")
    Select(name).select_by_value("truncate")
    assert browser.find_element(By.CSS_SELECTOR, "[data-params-for=truncate]").is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, "[data-params-for=date]").is_displayed()
    browser.find_element(By.NAME, "chain-0-ORDER").send_keys("1")
    browser.save_screenshot(SCREENSHOT_FORM)
    assert not scrolls_sideways(browser)

    # A field that is no phone refuses a phone: the reason is next to the field, nothing saved.
    Select(browser.find_element(By.NAME, "hub_field")).select_by_value("phone")
    Select(browser.find_element(By.NAME, "external_field")).select_by_value(f"{mailchimp.pk}:COMPANY")
    browser.find_element(By.CSS_SELECTOR, "button[value=save]").send_keys(Keys.ENTER)
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".form-errors")))
    assert "truncate cannot fill the hub's phone field" in browser.page_source
    browser.save_screenshot(SCREENSHOT_REFUSED)
    assert not scrolls_sideways(browser)
    assert not FieldMapping.objects.filter(sync=sync, external_field="COMPANY").exists()

    Select(browser.find_element(By.NAME, "hub_field")).select_by_value("company")
    browser.find_element(By.CSS_SELECTOR, "button[value=save]").send_keys(Keys.ENTER)
    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".message-success")))
    mapping = FieldMapping.objects.get(sync=sync, external_field="COMPANY")
    assert (mapping.hub_field, mapping.direction, mapping.transforms) == ("company", "out", ["truncate"])
    run = SyncRun.objects.get(sync=sync, trigger=SyncRun.Trigger.BACKFILL)
    assert f"run #{run.pk}</a> will fill Company" in browser.page_source
    assert not scrolls_sideways(browser)
