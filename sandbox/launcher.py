"""Start `manage.py sandbox` as a subprocess (tests, benchmarks) and drive its control endpoints."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .provider import EmulatedAPI
from .registry import BUILT_IN, PLUGINS_VARIABLE, load_plugins

REPO = Path(__file__).resolve().parent.parent
READY_LINE = re.compile(r"sandbox listening on (http://\S+)")
START_TIMEOUT_SECONDS = 15
STDERR_LINES_KEPT = 2000


class SandboxStartError(RuntimeError):
    """The sandbox process did not print its ready line in time."""


class SandboxProcess:
    """A running sandbox: its URLs, credentials and control calls.

    `SandboxProcess.start()` launches one on a free port with its own temporary data
    directory; `stop()` ends it and removes the directory. Every emulator of the registry
    is reached the same way: `base_url(name)`, `credential(name)`, `control(name, action)`,
    and `seed(<its seed_key>=N)`; the HubSpot and Mailchimp helpers below are shorthands.
    `emulators` are those it serves: the registry's, and the plug-ins its environment names.
    """

    def __init__(self, process: subprocess.Popen, url: str, data_dir: tempfile.TemporaryDirectory,
                 stderr_lines: deque[str], options: dict[str, str], emulators: tuple[type[EmulatedAPI], ...]):
        self.process = process
        self.url = url
        self.emulators = emulators
        self._options = options
        self._data_dir = data_dir
        self._stderr_lines = stderr_lines
        self._session = requests.Session()
        self.info: dict[str, Any] = self._call("GET", "info")
        self.hubspot_url = self.base_url("hubspot")
        self.mailchimp_url = self.base_url("mailchimp")
        self.hubspot_token = self.credential("hubspot")
        self.mailchimp_key = self.credential("mailchimp")
        self.list_id: str = self.info["mailchimp"]["list_id"]

    @classmethod
    def start(cls, *extra_args: str, env: Mapping[str, str] | None = None) -> SandboxProcess:
        """Start a sandbox; extra arguments go to `manage.py sandbox` (e.g. "--threads", "4").

        `env` adds to the environment the process inherits, e.g. `{"SANDBOX_PLUGINS":
        "tests.plugins.textline_emulator:TextlineAPI"}` (see `sandbox.registry`).
        """
        process_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        # Loaded here too: a bad path fails before a process starts, and the plug-ins'
        # options and credentials are known to this side.
        emulators = BUILT_IN + load_plugins(process_env.get(PLUGINS_VARIABLE, ""))
        data_dir = tempfile.TemporaryDirectory(prefix="sandbox-")
        command = [sys.executable, str(REPO / "manage.py"), "sandbox", "--addr", "127.0.0.1:0",
                   "--data-dir", data_dir.name, *extra_args]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=process_env)
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
        return cls(process, ready[0], data_dir, stderr_lines, _option_values(extra_args, emulators), emulators)

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

    def base_url(self, provider: str) -> str:
        """The base URL of an emulated API, e.g. `http://127.0.0.1:PORT/hubspot`."""
        return f"{self.url}{self.info[provider]['base_path']}"

    def credential(self, provider: str) -> str:
        """The token or key the emulated API accepts (its `credential` option, as started)."""
        api = next(api for api in self.emulators if api.name == provider)
        return self._options[api.credential]

    def control(self, provider: str, action: str, body: dict | None = None, *, method: str | None = None) -> Any:
        """Call an emulator's own control action, `/_sandbox/<provider>/<action>`; the method is
        POST with a body, GET without, unless given."""
        return self._call(method or ("GET" if body is None else "POST"), f"{provider}/{action}", body)

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self._session.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"{method} /_sandbox/{path} answered {response.status_code}: {response.text}")
        return response.json()

    def seed(self, **counts: Any) -> dict[str, Any]:
        """Seed data: a count per emulator (hubspot_contacts, mailchimp_members, activecampaign_contacts...),
        hostile (true, or a list of emulator names), random_seed, first_person."""
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
        """Change any emulator's limits, e.g. hubspot_rate_limit=0 (until the next reset); return them all."""
        return self._call("POST", "limits", limits)

    def reset(self) -> None:
        """Wipe all data and restore the limits the sandbox started with."""
        self._call("POST", "reset")

    def oauth(self, **settings: Any) -> dict:
        """Change client_id, client_secret, access_token_lifetime or rotate_refresh_tokens; return the OAuth state."""
        return self._call("POST", "oauth", settings) if settings else self._call("GET", "oauth")

    def oauth_revoke(self, provider: str | None = None) -> dict:
        """Revoke every OAuth grant (of `provider`, or of all)."""
        return self._call("POST", "oauth/revoke", {"provider": provider} if provider else {})

    def hubspot_contacts(self) -> list[dict]:
        """Every stored HubSpot contact, archived ones included, with all its properties."""
        return self.control("hubspot", "contacts")["contacts"]

    def hubspot_gdpr_deleted(self) -> list[dict]:
        return self.control("hubspot", "contacts")["gdpr_deleted"]

    def hubspot_restore(self, ids: list[str]) -> int:
        """Restore archived contacts, as HubSpot's recycle bin does; return how many came back."""
        return self.control("hubspot", "restore", {"ids": ids})["restored"]

    def hubspot_signup(self, **properties: str) -> dict:
        """Create a contact as the person's own HubSpot form does, past the GDPR blocklist; return it."""
        return self.control("hubspot", "contacts", {"properties": properties})

    def mailchimp_signup(self, email: str, *, status: str = "subscribed", merge_fields: dict | None = None) -> dict:
        """Add a member as the person's own signup form does, even a forgotten address; return it."""
        return self.control("mailchimp", "members",
                            {"email_address": email, "status": status, "merge_fields": merge_fields or {}})

    def mailchimp_confirm(self, email: str) -> dict:
        """Confirm a pending member's opt-in, as the person does from Mailchimp's email; return the member."""
        return self.control("mailchimp", "confirm", {"email": email})

    def mailchimp_members(self) -> list[dict]:
        """Every stored Mailchimp member, archived ones included."""
        return self.control("mailchimp", "members")["members"]

    def mailchimp_forgotten(self) -> list[str]:
        """Subscriber hashes of permanently deleted members."""
        return self.control("mailchimp", "members")["forgotten"]


def _option_values(args: tuple[str, ...], emulators: tuple[type[EmulatedAPI], ...]) -> dict[str, str]:
    """Return every emulator option's value as `manage.py sandbox` gets it: the default, unless
    `args` give it (`--flag value` or `--flag=value`, the last one winning)."""
    flags = {option.flag: option for api in emulators for option in api.options}
    values = {option.name: str(option.default) for option in flags.values()}
    for index, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        if flag in flags and (equals or index + 1 < len(args)):
            values[flags[flag].name] = value if equals else args[index + 1]
    return values


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
