"""Checks on what users type into a connection."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        # An unresolvable name reaches nothing, private or not; the connection will
        # report the failure when it is first used.
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def validate_public_base_url(url: str) -> None:
    """Refuse a base URL that points into the private network, unless allowlisted.

    A user who may edit a connection must not be able to make the server send its
    requests (and credentials) to loopback, link-local or private addresses, for
    example a cloud metadata service. The sandbox is allowlisted in development.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http or https URL with a host name.", code="invalid_url")
    host = parts.hostname
    if host in settings.CONNECTION_URL_ALLOWLIST:
        return
    for address in _addresses(host):
        if not address.is_global:
            raise ValidationError(
                "This address is on a private or local network; only public API hosts are allowed.",
                code="private_address",
            )
