"""The hub's fields as the mapping editor sees them: name, label, kind and longest value.

The kinds are those of `connections.providers.base.FIELD_KINDS`, so a hub field and a
system's field can be compared (validation, suggestions). Custom attributes are written
`attributes.<name>` and hold text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from syncapp.models.hub import HUB_FIELDS, Contact, hub_field_label

ATTRIBUTE_PREFIX = "attributes."
# A custom attribute's name: what a JSON key, a template and a person can all read.
ATTRIBUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

HUB_FIELD_KINDS = {
    "email": "email",
    "phone": "phone",
    "first_name": "text",
    "last_name": "text",
    "company": "text",
    "lifecycle_stage": "text",
    "email_consent": "consent",
    "sms_consent": "consent",
}


@dataclass(frozen=True)
class HubField:
    name: str
    label: str
    kind: str
    # The longest text the hub stores in it; None when unbounded.
    max_length: int | None


def is_hub_field(name: str) -> bool:
    """Return whether `name` is a built-in hub field or a well-formed custom attribute."""
    if name in HUB_FIELDS:
        return True
    return (name.startswith(ATTRIBUTE_PREFIX)
            and ATTRIBUTE_NAME.fullmatch(name.removeprefix(ATTRIBUTE_PREFIX)) is not None)


def hub_field(name: str) -> HubField:
    """Return what the editor knows of hub field `name` (built in or custom attribute)."""
    if name in HUB_FIELDS:
        kind = HUB_FIELD_KINDS[name]
        # The model's column sets the limit: a longer value would be refused when stored.
        # Consent is one of a few states, whatever its column could hold.
        max_length = None if kind == "consent" else getattr(Contact._meta.get_field(name), "max_length", None)
        return HubField(name, HUB_FIELDS[name], kind, max_length)
    return HubField(name, hub_field_label(name), "text", None)


def hub_fields(extra: list[str] | tuple[str, ...] = ()) -> list[HubField]:
    """Return the built-in hub fields, then the custom attributes named in `extra`."""
    custom = sorted({name for name in extra if name not in HUB_FIELDS and is_hub_field(name)})
    return [hub_field(name) for name in (*HUB_FIELDS, *custom)]
