"""Who may open which page."""
from functools import wraps

from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied

from syncapp.roles import MARKETER, user_has_role


def role_required(role: str):
    """Let in logged-in users holding `role` (or superusers); answer 403 to the rest."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_has_role(request.user, role):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


marketer_required = role_required(MARKETER)


def permission_needed(perm: str):
    """Let in logged-in users holding the model permission `perm`; answer 403 to the rest.

    Visitors are sent to log in first, as with role_required.
    """

    def decorator(view):
        return login_required(permission_required(perm, raise_exception=True)(view))

    return decorator
