"""Fields held back from sync because a reviewer has not yet settled their conflict."""
from __future__ import annotations

from collections.abc import Iterable

from syncapp.models import Conflict


def held_fields(*, sync_id: int, contact_ids: Iterable[int]) -> dict[int, set[str]]:
    """Return, per contact, the hub fields with an open conflict in that sync."""
    ids = [contact_id for contact_id in contact_ids if contact_id is not None]
    held: dict[int, set[str]] = {}
    if not ids:
        return held
    rows = Conflict.objects.filter(sync_id=sync_id, status=Conflict.Status.OPEN, contact_id__in=ids).values_list(
        "contact_id", "hub_field"
    )
    for contact_id, hub_field in rows:
        held.setdefault(contact_id, set()).add(hub_field)
    return held
