"""A marketer opens a contact known only by its phone and sees why Mailchimp does not have it.

The contact came from HubSpot through a sync run against the sandbox, with a phone and
no email; the sync writes Mailchimp, which keys its members by email. The contact page
lists HubSpot's record and says Mailchimp is not applicable, and why, instead of an
error or nothing at all. Its first name is hostile markup, as long as the hub's field
holds (255 characters): the page keeps its layout and escapes it. Screenshots in
$SCREENSHOT_DIR (default var/screenshots/).
"""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from syncapp.models import Contact, RecordError
from syncapp.roles import MARKETER
from tests.browser.conftest import full_page_screenshots
from tests.integration.workspace import hubspot_create, run_now, sandbox_sync
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = "+14155550177"
LONG_NAME = ("<script>alert(1)</script>Pat " * 10)[:255]


def test_a_phone_only_contact_shows_mailchimp_as_not_applicable_with_the_reason(
    browser, browser_login, live_server, sandbox
):
    screenshot = full_page_screenshots(browser, "contact-not-applicable")
    sandbox.limits(hubspot_rate_limit=0)
    sync = sandbox_sync(sandbox)
    hubspot_create(sandbox, [{"firstname": LONG_NAME, "lastname": "Ng", "phone": "(415) 555-0177"}])
    run_now(sync)
    contact = Contact.objects.get(phone=PHONE)
    assert contact.email is None and not RecordError.objects.exists()
    user_with_role("marketer", MARKETER)
    browser_login("marketer")
    browser.get(f"{live_server.url}/contacts/{contact.pk}/")
    notice = browser.find_element(By.CSS_SELECTOR, "[data-testid=not-applicable]").text
    assert "Not applicable" in notice
    assert "Mailchimp keys its records by an email address, which this contact does not have." in notice
    assert "HubSpot" in browser.find_element(By.CSS_SELECTOR, "[data-testid=links]").text
    # Escaped, not run; and the page is no wider than the window.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1366
    assert not browser.find_elements(By.CSS_SELECTOR, "main script")
    path = screenshot("contact")
    assert path.stat().st_size > 0
