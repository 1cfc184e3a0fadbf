"""Template helpers for the review pages: the open count in the menu, values as stored."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.utils.dateparse import parse_datetime

from syncapp.models.hub import hub_field_label as _hub_field_label
from syncapp.selectors import open_conflict_count

register = template.Library()


@register.simple_tag
def open_conflicts() -> int:
    """Return how many conflicts wait for a reviewer (one indexed count per page)."""
    return open_conflict_count()


@register.inclusion_tag("syncapp/conflicts/_value.html")
def field_value(value: Any) -> dict[str, Any]:
    """Show a hub or system value: "no value" and "empty" apart, anything else as text.

    The text is escaped by the template like any other; it is wrapped so that right-to-left
    text and surrounding spaces stay visible and do not spill into the page.
    """
    if value is None or isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    return {"is_missing": value is None, "is_empty": value == "", "text": text}


@register.filter
def iso_datetime(value: str | None) -> datetime | None:
    """Turn an ISO 8601 text (as stored in a conflict's sides) into a datetime for |date."""
    if not value:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


@register.filter
def hub_field_label(hub_field: str) -> str:
    return _hub_field_label(hub_field)


@register.filter
def change_pairs(changes: Any) -> list[tuple[str, Any, Any]]:
    """Return an audit event's {name: [old, new]} as (name, old, new) rows."""
    if not isinstance(changes, dict):
        return []
    rows = []
    for name, change in changes.items():
        if isinstance(change, list | tuple) and len(change) == 2:
            rows.append((name, change[0], change[1]))
        else:
            rows.append((name, None, change))
    return rows
