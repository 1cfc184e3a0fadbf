"""Providers are plug-ins: no code outside a provider's own modules names one.

The engine, the services, the mappings, the audit trail and OAuth ask a provider what it
declares (its keys, batch maxima, consent vocabulary, OAuth endpoints) instead of
branching on its name. Adding a provider is then one module on each side and a registry
line (docs/adding-a-provider.md); a name here would be a branch the newcomer must find.

Comments and docstrings may name providers as examples; code may not: identifiers and
string literals are checked, through Python's tokenizer.
"""
from __future__ import annotations

import io
import re
import token
import tokenize
from pathlib import Path

import pytest

from connections.registry import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
# Where provider-specific code must not be: everything that works for any provider.
GUARDED = (
    "syncapp/engine",
    "syncapp/services",
    "mappings",
    "audit",
    "connections/oauth.py",
    "connections/services.py",
    "connections/tokens.py",
)


def provider_words() -> set[str]:
    """The registry's names and labels, plus how code would spell them."""
    words = set()
    for name, cls in PROVIDERS.items():
        for word in (name, cls.label, cls.__name__.removesuffix("Provider")):
            words.add(re.sub(r"[^a-z0-9]", "", word.lower()))
    return words


def guarded_files() -> list[Path]:
    files = []
    for entry in GUARDED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*.py"))
        files.extend(p for p in candidates if "migrations" not in p.parts and "tests" not in p.parts)
    return files


def code_tokens(source: str) -> list[tuple[int, str]]:
    """Return (line, text) of the identifiers and string literals that are not docstrings."""
    found = []
    previous = token.NEWLINE
    for item in tokenize.generate_tokens(io.StringIO(source).readline):
        if item.type == token.NAME:
            found.append((item.start[0], item.string))
        elif item.type == token.STRING and previous not in (token.NEWLINE, token.INDENT, token.DEDENT, tokenize.NL):
            # A string that starts a logical line is a docstring or a bare expression.
            found.append((item.start[0], item.string))
        if item.type not in (tokenize.COMMENT, tokenize.NL):
            previous = item.type
    return found


def named_providers(source: str, words: set[str]) -> list[str]:
    hits = []
    for line, text in code_tokens(source):
        squashed = re.sub(r"[^a-z0-9]", "", text.lower())
        if any(word in squashed for word in words):
            hits.append(f"line {line}: {text[:80]}")
    return hits


def test_the_guard_finds_a_provider_named_in_code():
    source = 'def f(connection):\n    """HubSpot is fine here."""\n    # and Mailchimp here\n' \
             '    if connection.provider == "mailchimp":\n        return hubspot_limit\n'
    hits = named_providers(source, provider_words())

    assert hits == ['line 4: "mailchimp"', "line 5: hubspot_limit"]


def test_the_guard_knows_every_registered_provider():
    assert {"hubspot", "mailchimp"} <= provider_words()


@pytest.mark.parametrize("path", guarded_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_provider_is_named_outside_its_own_modules(path):
    hits = named_providers(path.read_text(), provider_words())

    assert not hits, f"{path.relative_to(ROOT)} names a provider; declare it on the provider instead: {hits}"
