"""Make incoming text safe to store and stable to compare.

Each choice, and why:
- NUL bytes are removed: PostgreSQL text columns cannot store U+0000, and no system
  means anything by one inside a name.
- Lone surrogates (U+D800-U+DFFF, which a JSON body may carry as escapes) become
  U+FFFD: they cannot be encoded as UTF-8, so neither database nor provider accepts them.
- Text is put in Unicode normalization form NFC, so that "é" written as one code point
  by one system and as "e" plus a combining accent by another compare equal and are
  not taken for a change (which would push an edit nobody made).
- Everything else is kept as written: markup, formulas, right-to-left marks, zero-width
  characters, newlines. They are people's data; escaping belongs where values are
  shown or exported (templates escape, CSV export neutralizes formulas), not here.
- Surrounding whitespace is kept too: trimming is a mapping's `trim` transform, so the
  marketer decides per field.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """Return `value` without NUL bytes and lone surrogates, in NFC."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if _SURROGATE.search(value):
        value = _SURROGATE.sub(REPLACEMENT, value)
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return value


def clean_value(value: Any) -> Any:
    """Clean every string inside `value` (lists and dicts included); keep other types."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list | tuple):
        return [clean_value(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(str(key)): clean_value(item) for key, item in value.items()}
    return value
