"""A compliance user finds a person's events in the trail, opens one, and exports the filtered trail.

The history is made by the real engine against the sandbox: Ann's first name is changed
differently in HubSpot and Mailchimp (a conflict), a reviewer resolves it, then her
address changes in HubSpot. The search is by her old address. The export is fetched
with the browser's own session, as its download would be.

Screenshots of each step are kept in $SCREENSHOT_DIR (default var/screenshots/).
"""
from __future__ import annotations

import csv
import io
import json

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from audit.models import AuditEvent
from syncapp.models import Conflict, Contact
from syncapp.roles import COMPLIANCE, REVIEWER
from syncapp.services.conflicts import Choice, conflict_resolve
from tests.browser.conftest import full_page_screenshots, wait_for
from tests.integration.two_way import hubspot_create, hubspot_edit, mailchimp_edit, run, two_way_workspace
from tests.workspace import user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.integration]

OLD_EMAIL, NEW_EMAIL = "ann@example.com", "ann.lee@example.com"


@pytest.fixture
def screenshot(browser):
    return full_page_screenshots(browser, "audit-trail")


def ann_history(sandbox) -> Contact:
    """Sync Ann and Bob, open and resolve a conflict on Ann's first name, then change her address."""
    workspace = two_way_workspace(sandbox)
    ann_id = hubspot_create(sandbox, email=OLD_EMAIL, firstname="Ann", lastname="Lee")
    hubspot_create(sandbox, email="bob@example.com", firstname="Bob", lastname="Ray")
    run(workspace)
    run(workspace)
    hubspot_edit(sandbox, ann_id, firstname="Annie")
    mailchimp_edit(sandbox, OLD_EMAIL, FNAME="<b>Anita</b>")
    assert run(workspace).conflict_count == 1
    conflict = Conflict.objects.get(status=Conflict.Status.OPEN)
    value, resolution = Choice.side(workspace.mailchimp.pk).pick(conflict)
    conflict_resolve(conflict=conflict, value=value, resolution=resolution, user=user_with_role("rita", REVIEWER),
                     reason="Signed the form as Anita")
    hubspot_edit(sandbox, ann_id, email=NEW_EMAIL)
    run(workspace)
    return Contact.objects.get(email=NEW_EMAIL)


def no_sideways_scrolling(browser) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_a_compliance_user_finds_a_persons_events_and_exports_them(browser, browser_login, live_server, sandbox,
                                                                    screenshot):
    ann = ann_history(sandbox)
    user_with_role("carla", COMPLIANCE)

    browser_login("carla")
    browser.find_element(By.LINK_TEXT, "Audit").click()
    person = wait_for(browser, expected_conditions.presence_of_element_located((By.NAME, "person")))
    screenshot("01-trail")
    person.send_keys(OLD_EMAIL)
    browser.find_element(By.CSS_SELECTOR, "form.filter-form button[type=submit]").click()
    wait_for(browser, expected_conditions.url_contains("person="))
    rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=event-row]")
    actions = [row.find_element(By.CSS_SELECTOR, "td.mono").text for row in rows]
    assert {"conflict.opened", "conflict.resolved", "contact.updated"} <= set(actions)
    assert no_sideways_scrolling(browser)
    screenshot("02-person-found")

    # The conflict's row opens to its before and after.
    opened = rows[actions.index("conflict.opened")]
    opened.find_element(By.CSS_SELECTOR, "summary").click()
    table = wait_for(browser, lambda _: opened.find_element(By.CSS_SELECTOR, "[data-testid=changes]"))
    cells = [cell.text for cell in table.find_elements(By.CSS_SELECTOR, ":scope > tbody th, :scope > tbody td")]
    assert cells[0] == "first_name" and {"Annie", "<b>Anita</b>"} & set(cells[1:])
    screenshot("03-row-opened")

    # The email change, on its own page.
    rows[actions.index("contact.updated")].find_element(By.CSS_SELECTOR, "[data-testid=event-link]").click()
    changes = wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=changes]")))
    assert [cell.text for cell in changes.find_elements(By.CSS_SELECTOR, "tbody tr")[0].find_elements(
        By.CSS_SELECTOR, "th, td")] == ["email", OLD_EMAIL, NEW_EMAIL]
    screenshot("04-event")
    browser.back()

    # The export of the filtered trail, fetched with the browser's session.
    export = wait_for(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=export-csv]"))).get_attribute("href")
    session = requests.Session()
    for cookie in browser.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    response = session.get(export, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    exported = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert {row["contact_id"] for row in exported} == {str(ann.pk)}
    assert {"conflict.opened", "conflict.resolved", "contact.updated"} <= {row["action"] for row in exported}
    assert len(exported) == len(rows)
    audited = AuditEvent.objects.get(action="audit.exported")
    assert audited.actor.username == "carla" and audited.changes["format"] == [None, "csv"]
    assert OLD_EMAIL not in json.dumps(audited.changes)
