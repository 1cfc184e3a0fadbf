"""Fixtures for tests that use Textline: its client registered, a sandbox serving its emulator, a connection.

Tests under tests/plugins get them through conftest.py. A test elsewhere imports the
ones it uses together with those they depend on, e.g.
`from tests.plugins.fixtures import textline_connection, textline_registered, textline_sandbox,
textline_sandbox_process  # noqa: F401`.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from connections import registry
from connections.models import Connection
from connections.providers.base import ProviderConfig
from sandbox.launcher import SandboxProcess
from sandbox.registry import PLUGINS_VARIABLE
from tests.plugins.textline import TextlineProvider

TEXTLINE_PLUGIN = "tests.plugins.textline_emulator:TextlineAPI"


@pytest.fixture(scope="session")
def textline_sandbox_process() -> Iterator[SandboxProcess]:
    """A sandbox process of the session's own, serving Textline beside the built-in emulators."""
    process = SandboxProcess.start(env={PLUGINS_VARIABLE: TEXTLINE_PLUGIN})
    yield process
    process.stop()


@pytest.fixture
def textline_sandbox(textline_sandbox_process: SandboxProcess) -> Iterator[SandboxProcess]:
    """That sandbox, emptied, without faults and with zeroed stats, and the configured one (`SANDBOX_URL`)."""
    textline_sandbox_process.reset()
    textline_sandbox_process.clear_faults()
    textline_sandbox_process.reset_stats()
    with override_settings(SANDBOX_URL=textline_sandbox_process.url):
        yield textline_sandbox_process


@pytest.fixture
def textline_registered(monkeypatch: pytest.MonkeyPatch) -> type[TextlineProvider]:
    """Register the Textline client as the provider "textline" for this test only."""
    monkeypatch.setitem(registry.PROVIDERS, TextlineProvider.name, TextlineProvider)
    return TextlineProvider


def textline_config(sandbox: SandboxProcess, *, key: str | None = None, **settings: Any) -> ProviderConfig:
    """The config of a client of the sandbox's Textline account (its key unless `key`), with a budget of its own."""
    return ProviderConfig(base_url=sandbox.base_url("textline"), api_key=key or sandbox.credential("textline"),
                          settings=settings, budget_key=f"test-{uuid.uuid4()}")


def textline_connection_make(sandbox: SandboxProcess, name: str = "Textline", **fields: Any) -> Connection:
    """Create a Connection row to the sandbox's Textline account (the provider must be registered to use it)."""
    fields.setdefault("base_url", sandbox.base_url("textline"))
    fields.setdefault("api_key", sandbox.credential("textline"))
    return Connection.objects.create(name=name, provider=TextlineProvider.name, **fields)


@pytest.fixture
def textline_connection(db, textline_sandbox: SandboxProcess, textline_registered) -> Connection:
    """A Connection row to the sandbox's Textline account, its client registered."""
    return textline_connection_make(textline_sandbox)
