"""The address policy: only public addresses, every IPv6 form that hides an IPv4 address refused."""
from __future__ import annotations

import socket

import pytest

from connections.addresses import AddressRefused, allowlisted, checked_addresses, refusal
from connections.addresses import resolve as system_resolve


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd00:ec2::254", "private"),  # AWS's IPv6 metadata service
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"),
    ("224.0.1.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("64:ff9b::a9fe:a9fe", "(NAT64)"),
    ("64:ff9b::169.254.169.254", "(NAT64)"),
    ("64:ff9b::5db8:d822", "(NAT64)"),
    ("64:ff9b:1::a9fe:a9fe", "(NAT64)"),
    ("::169.254.169.254", "(IPv4-compatible)"),
    ("::a9fe:a9fe", "(IPv4-compatible)"),
    ("::127.0.0.1", "(IPv4-compatible)"),
    ("::ffff:169.254.169.254", "(IPv4-mapped)"),
    ("::ffff:127.0.0.1", "(IPv4-mapped)"),
    ("::ffff:93.184.216.34", "(IPv4-mapped)"),
    ("2002:a9fe:a9fe::1", "(6to4)"),
    ("2002:7f00:1::", "(6to4)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "(Teredo)"),
    ("2001:0:a9fe:a9fe::1", "(Teredo)"),
])
def test_an_address_off_the_public_internet_is_refused_with_its_kind(address, kind):
    assert kind in (refusal(address) or "")


# Reserved and special-purpose blocks: which word Python's ipaddress gives them has
# changed between releases, so only the refusal is checked.
@pytest.mark.parametrize("address", ["240.0.0.1", "255.255.255.255", "100.64.0.1", "192.0.0.8", "192.0.2.1",
                                     "198.18.0.1", "198.51.100.7", "203.0.113.9", "192.88.99.1", "2001:db8::1",
                                     "100::1", "3fff::1", "5f00::1", "2001:2::1"])
def test_a_reserved_or_special_purpose_address_is_refused(address):
    assert refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "104.16.0.1",
                                     "2606:4700::1111", "2a00:1450:4001:81c::200e", "2600:1f18::1"])
def test_a_public_address_is_allowed(address):
    assert refusal(address) is None


def test_a_name_passes_only_when_every_address_it_resolves_to_is_public(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    resolver.answer("api.example.test", ["93.184.216.34", "2606:4700::1111"])
    resolver.answer("mixed.example.test", ["93.184.216.34", "10.0.0.5"])
    assert checked_addresses("api.example.test", 443) == ["93.184.216.34", "2606:4700::1111"]
    with pytest.raises(AddressRefused, match="mixed.example.test resolves to a private address") as refused:
        checked_addresses("mixed.example.test", 443)
    assert not refused.value.retriable
    assert "CONNECTION_URL_ALLOWLIST" in str(refused.value)


def test_a_literal_is_checked_without_asking_dns(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = []
    with pytest.raises(AddressRefused, match=r"64:ff9b::a9fe:a9fe is an IPv6 address that embeds"):
        checked_addresses("[64:ff9b::a9fe:a9fe]")
    assert checked_addresses("93.184.216.34") == ["93.184.216.34"]
    assert resolver.asked == []


def test_an_allowlisted_host_is_resolved_but_not_refused(resolver, settings):
    settings.CONNECTION_URL_ALLOWLIST = ["Sandbox.Internal."]
    resolver.answer("sandbox.internal", ["10.1.2.3"])
    assert allowlisted("sandbox.internal") and allowlisted("SANDBOX.internal.")
    assert checked_addresses("sandbox.internal", 80) == ["10.1.2.3"]
    assert not allowlisted("other.internal")


def test_a_name_that_does_not_resolve_raises_the_resolver_error(resolver):
    with pytest.raises(socket.gaierror):
        checked_addresses("nowhere.example.test", 443)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1"])
def test_numeric_shorthands_are_checked_as_what_they_resolve_to(host, settings, monkeypatch):
    settings.CONNECTION_URL_ALLOWLIST = []
    # The system resolver reads these as numbers (inet_aton) without asking DNS.
    monkeypatch.setattr("connections.addresses.resolve", system_resolve)
    with pytest.raises(AddressRefused, match=f"{host} resolves to a loopback address"):
        checked_addresses(host, 443)
