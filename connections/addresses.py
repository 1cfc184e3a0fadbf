"""Which addresses Syncapp sends requests to, and the one place host names are resolved.

A connection's base URL is typed by a user (or learned from a provider), so a request
to it must not reach what only the server can reach: loopback, the private network, a
cloud metadata service on a link-local address. Only public addresses are called,
unless the host is in `CONNECTION_URL_ALLOWLIST` (the sandbox on loopback in
development and tests; empty in production).

IPv6 addresses that carry an IPv4 address (IPv4-mapped and IPv4-compatible, NAT64,
6to4, Teredo) are refused whatever they carry: the IPv4 address they end up reaching is
decided by a translator or relay on the way, out of this check's sight, and
`[64:ff9b::a9fe:a9fe]` would otherwise be a public-looking way to write
169.254.169.254.

`resolve` is the only function here that asks DNS: tests replace it to stub names.
"""
from __future__ import annotations

import ipaddress
import socket

from django.conf import settings

from connections.providers.base import ProviderError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# ::/96 holds the IPv4-compatible addresses (::a.b.c.d), deprecated by RFC 4291.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Special-purpose blocks (IANA registries) that are not globally reachable. Python's
# `is_global` already refuses most of them, but which ones has changed between Python
# releases; naming them keeps the policy the same on every interpreter.
_SPECIAL_PURPOSE = tuple(ipaddress.ip_network(block) for block in (
    "100.64.0.0/10",    # shared address space (carrier-grade NAT)
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation (TEST-NET-1)
    "192.88.99.0/24",   # 6to4 relay anycast
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",   # documentation (TEST-NET-3)
    "100::/64",         # discard-only
    "2001::/23",        # IETF protocol assignments
    "2001:db8::/32",    # documentation
    "3fff::/20",        # documentation
    "5f00::/16",        # segment routing (SRv6) SIDs
))


class AddressRefused(ProviderError):
    """A host resolves to an address outside the policy; `detail` says which kind."""

    retriable = False

    def __init__(self, message: str, *, detail: str = "", status: int | None = None):
        super().__init__(message, status=status)
        self.detail = detail or message


def resolve(host: str, port: int | None = None) -> list[str]:
    """Return the addresses `host` resolves to for a TCP connection, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def normalized_host(host: str) -> str:
    """Return `host` as the allowlist compares it: lowercase, without brackets or a final dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def allowlisted(host: str) -> bool:
    """Return whether requests may go to `host` whatever its addresses (and over plain http)."""
    allowed = {normalized_host(entry) for entry in settings.CONNECTION_URL_ALLOWLIST}
    return normalized_host(host) in allowed


def refusal(address: str | Address) -> str | None:
    """Return why `address` may not be called (as "a ... address"), or None for a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedding(ip)
        if embedded:
            return f"an IPv6 address that embeds an IPv4 address ({embedded})"
        if ip.is_site_local:
            return "a site-local address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global or any(ip in block for block in _SPECIAL_PURPOSE if block.version == ip.version):
        return "a special-purpose address that is not publicly routable"
    return None


def host_addresses(host: str, port: int | None = None) -> list[str]:
    """Return the addresses a connection to `host` may use: the literal itself, or what it resolves to."""
    literal = normalized_host(host)
    try:
        return [str(ipaddress.ip_address(literal))]
    except ValueError:
        return resolve(host.strip("[]"), port)


def checked_addresses(host: str, port: int | None = None) -> list[str]:
    """Resolve `host` and return its addresses; raise AddressRefused when any one is not public.

    Every address must pass, not just one: a connection tries them in turn, so a public
    address that does not answer would hand over to a private one. An allowlisted host
    is resolved but not checked.
    Raises socket.gaierror when the name does not resolve.
    """
    addresses = host_addresses(host, port)
    if allowlisted(host):
        return addresses
    for address in addresses:
        reason = refusal(address)
        if reason:
            verb = "is" if _is_literal(host) else "resolves to"
            detail = f"{normalized_host(host)} {verb} {reason}"
            raise AddressRefused(
                f"Not connecting: {detail}. Syncapp calls only public addresses, "
                "unless the host is in CONNECTION_URL_ALLOWLIST.",
                detail=detail,
            )
    return addresses


def _embedding(ip: ipaddress.IPv6Address) -> str | None:
    """Name the kind of IPv4-carrying IPv6 address `ip` is, if it is one."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped"
    if any(ip in network for network in _NAT64):
        return "NAT64"
    if ip in _IPV4_COMPATIBLE:
        return "IPv4-compatible"
    if ip.sixtofour is not None:
        return "6to4"
    if ip.teredo is not None:
        return "Teredo"
    return None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(normalized_host(host))
    except ValueError:
        return False
    return True
