"""The Content-Security-Policy header, from the SECURE_CSP setting.

Django 5.2 has no CSP support; 6.0 adds `django.middleware.csp.ContentSecurityPolicyMiddleware`
reading a SECURE_CSP setting of the same shape as ours (directive -> list of sources), so
the upgrade replaces this middleware in MIDDLEWARE and keeps the setting.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.conf import settings

HEADER = "Content-Security-Policy"


def policy_header(directives: Mapping[str, Sequence[str]]) -> str:
    """Return the header value for `directives`, e.g. "default-src 'self'; object-src 'none'"."""
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


class ContentSecurityPolicyMiddleware:
    """Add the policy to every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        directives = getattr(settings, "SECURE_CSP", None)
        if directives and HEADER not in response.headers:
            response.headers[HEADER] = policy_header(directives)
        return response
