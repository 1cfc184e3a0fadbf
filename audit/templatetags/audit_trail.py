"""Template helpers for the trail's pages: an event's changes as a table of before and after."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import template

register = template.Library()


@dataclass(frozen=True)
class ShownValue:
    """A value as the page shows it: text, or the fact that there is none; cut past `limit`."""

    text: str | None
    is_missing: bool = False
    is_empty: bool = False
    cut: int = 0  # characters left out

    @classmethod
    def of(cls, value: Any, limit: int | None) -> ShownValue:
        if value is None:
            return cls(None, is_missing=True)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
        if text == "":
            return cls(text, is_empty=True)
        if limit is not None and len(text) > limit:
            return cls(text[:limit], cut=len(text) - limit)
        return cls(text)


@register.inclusion_tag("audit/_change_table.html")
def change_table(changes: Any, limit: int | None = None) -> dict[str, Any]:
    """Show an event's changes ({field: [before, after]}) as rows of field, before and after.

    An entry that is not a [before, after] pair (a note, a list of ids) shows as its
    after value. With `limit`, values longer than that are cut and say so.
    """
    rows = []
    if isinstance(changes, dict):
        for name, change in sorted(changes.items()):
            before, after = change if isinstance(change, list) and len(change) == 2 else (None, change)
            rows.append((name, ShownValue.of(before, limit), ShownValue.of(after, limit)))
    return {"rows": rows}


@register.inclusion_tag("audit/_value.html")
def shown_value(value: Any, limit: int | None = None) -> dict[str, Any]:
    """Show one value as the change table does: kept inside its cell however long."""
    return {"value": ShownValue.of(value, limit)}


@register.filter
def pairs(mapping: Any) -> list[tuple[str, Any]]:
    """Return a mapping's items sorted by key, for `{% for name, value in mapping|pairs %}`.

    Rather than `mapping.items`, which a key named "items" (a system's field, a custom
    attribute) would shadow in a template.
    """
    return sorted(mapping.items()) if isinstance(mapping, dict) else []
