"""Template context every page gets from the connections app."""
from __future__ import annotations

from connections.models import Connection
from syncapp.roles import MARKETER, user_has_role


def reauthorization_alerts(request) -> dict:
    """List, for marketers, the connections that must be connected again (the banner on every page)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user_has_role(user, MARKETER):
        return {}
    return {
        "connections_needing_reauth": list(
            Connection.objects.filter(status=Connection.Status.NEEDS_REAUTH).only("pk", "name", "provider")
        )
    }
