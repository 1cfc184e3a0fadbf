"""The emulated providers the sandbox serves, in the order they are seeded, listed and documented.

Adding a provider means one emulator module under sandbox/ (an `EmulatedAPI` subclass,
see `sandbox.provider`) and one entry in BUILT_IN; nothing else in the sandbox names it.

An emulator kept outside this package (a provider that exists only in the tests) is
plugged in through the environment: `SANDBOX_PLUGINS` holds comma-separated
`module:Class` paths, appended to EMULATORS when this module is first imported, so the
command's flags, the settings, the app and the seeder serve them like the built-in ones.
It is read once, at import: set it in the environment of the sandbox process
(`SandboxProcess.start(env=...)`). A path that cannot be loaded stops the import with
`PluginError` naming it, rather than letting a sandbox start without the emulator.
"""
from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Sequence

from .activecampaign import ActiveCampaignAPI
from .hubspot import HubSpotAPI
from .mailchimp import MailchimpAPI
from .provider import EmulatedAPI

PLUGINS_VARIABLE = "SANDBOX_PLUGINS"
BUILT_IN: tuple[type[EmulatedAPI], ...] = (HubSpotAPI, MailchimpAPI, ActiveCampaignAPI)


class PluginError(RuntimeError):
    """An emulator named in SANDBOX_PLUGINS cannot be served."""


def load_plugins(paths: str, *, served: Sequence[type[EmulatedAPI]] = BUILT_IN) -> tuple[type[EmulatedAPI], ...]:
    """Return the emulators `paths` names (comma-separated `module:Class`; blank: none), in order.

    Raise PluginError naming the path when it is malformed, cannot be imported, is not a
    concrete EmulatedAPI subclass, or takes the name or prefix of one `served` or named
    before it.
    """
    loaded: list[type[EmulatedAPI]] = []
    for path in (part.strip() for part in paths.split(",")):
        if not path:
            continue
        module_name, _, class_name = path.partition(":")
        if not module_name or not class_name:
            raise PluginError(f"{PLUGINS_VARIABLE}: {path!r} is not a module:Class path")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise PluginError(f"{PLUGINS_VARIABLE}: cannot import {module_name!r} (from {path!r}): {error}") from error
        api = getattr(module, class_name, None)
        if api is None:
            raise PluginError(f"{PLUGINS_VARIABLE}: module {module_name!r} has no {class_name!r} (from {path!r})")
        if not (isinstance(api, type) and issubclass(api, EmulatedAPI)) or inspect.isabstract(api):
            raise PluginError(f"{PLUGINS_VARIABLE}: {path!r} is not a concrete subclass of "
                              "sandbox.provider.EmulatedAPI")
        clash = next((other for other in (*served, *loaded) if other.name == api.name or other.prefix == api.prefix),
                     None)
        if clash is not None:
            raise PluginError(f"{PLUGINS_VARIABLE}: {path!r} takes the name {api.name!r} or prefix {api.prefix!r} "
                              f"of {clash.__module__}.{clash.__qualname__}")
        loaded.append(api)
    return tuple(loaded)


EMULATORS: tuple[type[EmulatedAPI], ...] = BUILT_IN + load_plugins(os.environ.get(PLUGINS_VARIABLE, ""))
