"""Checks on the base URLs Syncapp stores, however it learns them (form, admin, OAuth, seed)."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from connections.addresses import AddressRefused, allowlisted, checked_addresses


def validate_public_base_url(url: str) -> None:
    """Refuse a base URL that points into the private network or uses plain http, unless allowlisted.

    A user who may edit a connection must not be able to make the server send its
    requests (and credentials) to loopback, link-local or private addresses, for
    example a cloud metadata service. The sandbox is allowlisted in development.

    This check at save time gives the user an early answer; it is not the guard. Names
    can resolve differently later, so `connections.http` checks the address again each
    time it opens a connection.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http or https URL with a host name.", code="invalid_url")
    host = parts.hostname
    try:
        checked_addresses(host)
    except AddressRefused as refusal:
        raise ValidationError(
            f"This address is on a private or local network ({refusal.detail}); only public API hosts are allowed.",
            code="private_address",
        ) from None
    except (socket.gaierror, UnicodeError):
        # An unresolvable name reaches nothing, private or not; the connection will
        # report the failure when it is first used, and check the address then.
        pass
    if parts.scheme == "http" and not allowlisted(host):
        raise ValidationError(
            "Use https: plain http is only for the sandbox and other hosts in CONNECTION_URL_ALLOWLIST.",
            code="insecure_url",
        )
