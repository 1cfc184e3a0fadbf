"""Start `manage.py sandbox` as a subprocess (tests, benchmarks) and drive its control endpoints."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
READY_LINE = re.compile(r"sandbox listening on (http://\S+)")
START_TIMEOUT_SECONDS = 15
STDERR_LINES_KEPT = 2000
HUBSPOT_TOKEN = "sandbox-hubspot-token"
MAILCHIMP_KEY = "sandbox-mailchimp-key-us1"


class SandboxStartError(RuntimeError):
    """The sandbox process did not print its ready line in time."""


class SandboxProcess:
    """A running sandbox: its URLs, credentials and control calls.

    `SandboxProcess.start()` launches one on a free port with its own temporary data
    directory; `stop()` ends it and removes the directory.
    """

    def __init__(self, process: subprocess.Popen, url: str, data_dir: tempfile.TemporaryDirectory,
                 stderr_lines: deque[str]):
        self.process = process
        self.url = url
        self.hubspot_url = f"{url}/hubspot"
        self.mailchimp_url = f"{url}/mailchimp/3.0"
        self.hubspot_token = HUBSPOT_TOKEN
        self.mailchimp_key = MAILCHIMP_KEY
        self._data_dir = data_dir
        self._stderr_lines = stderr_lines
        self._session = requests.Session()
        self.list_id: str = self._call("GET", "info")["mailchimp"]["list_id"]

    @classmethod
    def start(cls, *extra_args: str) -> SandboxProcess:
        """Start a sandbox; extra arguments go to `manage.py sandbox` (e.g. "--threads", "4")."""
        data_dir = tempfile.TemporaryDirectory(prefix="sandbox-")
        command = [sys.executable, str(REPO / "manage.py"), "sandbox", "--addr", "127.0.0.1:0",
                   "--data-dir", data_dir.name, "--hubspot-token", HUBSPOT_TOKEN, "--mailchimp-key", MAILCHIMP_KEY,
                   *extra_args]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stderr_lines: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        # Drain stderr all along: a full pipe would block the sandbox.
        threading.Thread(target=_collect, args=(process.stderr, stderr_lines), daemon=True).start()
        ready: list[str] = []
        started = threading.Event()
        threading.Thread(target=_wait_for_ready, args=(process.stdout, ready, started), daemon=True).start()
        # The reader also wakes us if the process exits before printing its ready line.
        started.wait(START_TIMEOUT_SECONDS)
        if not ready:
            process.kill()
            process.wait(5)
            data_dir.cleanup()
            raise SandboxStartError(
                f"the sandbox did not start within {START_TIMEOUT_SECONDS} s (exit code {process.returncode}); "
                f"its stderr:\n{''.join(stderr_lines) or '(empty)'}"
            )
        return cls(process, ready[0], data_dir, stderr_lines)

    def stop(self) -> None:
        """End the process and remove its data directory."""
        self._session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._data_dir.cleanup()

    @property
    def stderr(self) -> str:
        """What the process has written to stderr so far (tracebacks of failed requests)."""
        return "".join(self._stderr_lines)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self._session.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"{method} /_sandbox/{path} answered {response.status_code}: {response.text}")
        return response.json()

    def seed(self, **counts: Any) -> dict[str, int]:
        """Seed data: hubspot_contacts, mailchimp_members, hostile, random_seed."""
        return self._call("POST", "seed", counts)

    def faults(self, **plan: Any) -> dict:
        """Inject faults: provider, rate, statuses, latency_ms, reset_rate, expire_tokens, count..."""
        return self._call("POST", "faults", plan)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def stats(self) -> dict:
        return self._call("GET", "stats")

    def reset_stats(self) -> None:
        self._call("POST", "stats/reset")

    def limits(self, **limits: int) -> dict[str, int]:
        """Change hubspot_rate_limit, hubspot_search_rate_limit or mailchimp_max_connections (until the next reset)."""
        return self._call("POST", "limits", limits)

    def reset(self) -> None:
        """Wipe all data and restore the limits the sandbox started with."""
        self._call("POST", "reset")

    def oauth(self, **settings: Any) -> dict:
        """Change client_id, client_secret, access_token_lifetime or rotate_refresh_tokens; return the OAuth state."""
        return self._call("POST", "oauth", settings) if settings else self._call("GET", "oauth")

    def oauth_revoke(self, provider: str | None = None) -> dict:
        """Revoke every OAuth grant (of `provider`, or of both)."""
        return self._call("POST", "oauth/revoke", {"provider": provider} if provider else {})

    def hubspot_contacts(self) -> list[dict]:
        """Every stored HubSpot contact, archived ones included, with all its properties."""
        return self._call("GET", "hubspot/contacts")["contacts"]

    def hubspot_gdpr_deleted(self) -> list[dict]:
        return self._call("GET", "hubspot/contacts")["gdpr_deleted"]

    def hubspot_restore(self, ids: list[str]) -> int:
        """Restore archived contacts, as HubSpot's recycle bin does; return how many came back."""
        return self._call("POST", "hubspot/restore", {"ids": ids})["restored"]

    def hubspot_signup(self, **properties: str) -> dict:
        """Create a contact as the person's own HubSpot form does, past the GDPR blocklist; return it."""
        return self._call("POST", "hubspot/contacts", {"properties": properties})

    def mailchimp_signup(self, email: str, *, status: str = "subscribed", merge_fields: dict | None = None) -> dict:
        """Add a member as the person's own signup form does, even a forgotten address; return it."""
        return self._call("POST", "mailchimp/members",
                          {"email_address": email, "status": status, "merge_fields": merge_fields or {}})

    def mailchimp_confirm(self, email: str) -> dict:
        """Confirm a pending member's opt-in, as the person does from Mailchimp's email; return the member."""
        return self._call("POST", "mailchimp/confirm", {"email": email})

    def mailchimp_members(self) -> list[dict]:
        """Every stored Mailchimp member, archived ones included."""
        return self._call("GET", "mailchimp/members")["members"]

    def mailchimp_forgotten(self) -> list[str]:
        """Subscriber hashes of permanently deleted members."""
        return self._call("GET", "mailchimp/members")["forgotten"]


def _wait_for_ready(stream, ready: list[str], started: threading.Event) -> None:
    for line in stream:
        match = READY_LINE.search(line)
        if match:
            ready.append(match.group(1))
            break
    started.set()
    # Keep reading so the process never blocks on a full stdout pipe.
    for _ in stream:
        pass


def _collect(stream, lines: deque[str]) -> None:
    for line in stream:
        lines.append(line)
