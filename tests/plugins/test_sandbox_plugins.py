"""SANDBOX_PLUGINS: emulators kept outside the sandbox package are served, and a bad path fails loudly."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandbox.launcher import REPO, SandboxProcess
from sandbox.registry import PLUGINS_VARIABLE, PluginError, load_plugins
from tests.plugins.fixtures import TEXTLINE_PLUGIN
from tests.plugins.textline_emulator import TextlineAPI


def test_the_paths_given_are_loaded_in_order_and_blanks_ignored():
    assert load_plugins("") == ()
    assert load_plugins(f" {TEXTLINE_PLUGIN} , ") == (TextlineAPI,)


@pytest.mark.parametrize(("paths", "reason"), [
    ("tests.plugins.textline_emulator.TextlineAPI", "is not a module:Class path"),
    ("tests.plugins.no_such_module:TextlineAPI", "cannot import 'tests.plugins.no_such_module'"),
    ("tests.plugins.textline_emulator:NoSuchAPI", "module 'tests.plugins.textline_emulator' has no 'NoSuchAPI'"),
    ("tests.plugins.textline_emulator:TextlineError", "is not a concrete subclass of sandbox.provider.EmulatedAPI"),
    ("sandbox.provider:EmulatedAPI", "is not a concrete subclass"),
    (f"{TEXTLINE_PLUGIN},{TEXTLINE_PLUGIN}", "takes the name 'textline'"),
    ("sandbox.hubspot:HubSpotAPI", "takes the name 'hubspot'"),
])
def test_a_bad_path_fails_naming_the_variable_and_the_path(paths, reason):
    with pytest.raises(PluginError, match=PLUGINS_VARIABLE) as refused:
        load_plugins(paths)
    assert reason in str(refused.value)


def test_a_sandbox_is_not_started_with_a_bad_path():
    with pytest.raises(PluginError, match="NoSuchAPI"):
        SandboxProcess.start(env={PLUGINS_VARIABLE: "tests.plugins.textline_emulator:NoSuchAPI"})


def sandbox_help(plugins: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "sandbox", "--help"], cwd=REPO, timeout=60,
                          capture_output=True, text=True, env={**os.environ, PLUGINS_VARIABLE: plugins})


def test_the_command_takes_the_plug_ins_flags_and_refuses_a_bad_path():
    served = sandbox_help(TEXTLINE_PLUGIN)
    assert served.returncode == 0, served.stderr
    # argparse wraps the description: compare it with its lines joined.
    assert "--textline-api-key" in served.stdout
    assert "Textline's API under /textline/v1" in " ".join(served.stdout.split())
    refused = sandbox_help("tests.plugins.textline_emulator:NoSuchAPI")
    assert refused.returncode != 0
    assert "PluginError: SANDBOX_PLUGINS: module 'tests.plugins.textline_emulator' has no 'NoSuchAPI'" in refused.stderr
