"""Headless Chromium from Debian for browser journeys, and a login helper.

Selenium gets the driver binary by path, so Selenium Manager never tries to download
one (there is no internet in CI).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.databases import test_database_url
from tests.workspace import PASSWORD

REPO = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1366,1000",
]
WAIT_SECONDS = 20
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or REPO / "var" / "screenshots")
WORKER_STOP_SECONDS = 15


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session, with a fresh profile."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"Browser tests need Debian's chromium and chromium-driver packages; missing {', '.join(missing)}.")
    profile = tempfile.mkdtemp(prefix="syncapp-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium):
    """The session's browser, logged out and on a blank page for each test."""
    chromium.delete_all_cookies()
    chromium.get("about:blank")
    yield chromium
    chromium.delete_all_cookies()


def wait_for(driver, condition, timeout: float = WAIT_SECONDS):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


@pytest.fixture
def browser_login(browser, live_server) -> Callable[[str], None]:
    """Log `username` in through the login form, as a person would."""

    def login(username: str, password: str = PASSWORD) -> None:
        browser.get(f"{live_server.url}/login/")
        browser.find_element(By.NAME, "username").send_keys(username)
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for(browser,
                 expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=current-user]")))

    return login


@pytest.fixture
def worker(live_server):
    """A real `manage.py qcluster` on the test database, for runs queued by the pages.

    It depends on live_server so it stops before the test database is flushed.
    """
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
    log = tempfile.TemporaryFile(mode="w+")
    # A session of its own, so that a cluster that will not stop is killed with its workers.
    process = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "qcluster"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield process
    # The cluster stops its own workers on SIGTERM; signalling them as well only
    # makes it wait for them to be replaced.
    process.terminate()
    try:
        process.wait(WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    log.seek(0)
    output = log.read()
    log.close()
    assert "Traceback" not in output, f"the worker failed:\n{output[-5000:]}"


def full_page_screenshots(browser, prefix: str) -> Callable[[str], Path]:
    """Return `take(step)`, which saves the whole page as `<prefix>-<step>.png` in SCREENSHOTS.

    The journey's screenshots from an earlier session are removed first. The whole page,
    not only the window: counts and messages may be below the fold.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"{prefix}-*.png"):
        old.unlink()

    def take(step: str) -> Path:
        path = SCREENSHOTS / f"{prefix}-{step}.png"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1366, max(1000, min(height + 120, 6000)))
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(path))
        browser.set_window_size(1366, 1000)
        return path

    return take
