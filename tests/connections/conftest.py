"""Fixtures for the connection tests: no traffic off this machine, and a DNS stub.

Both are autouse: a broken address guard must fail these tests loudly, never reach
169.254.169.254 or any other address for real.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

from tests.connections.loopback import StubResolver


def _loopback(address) -> bool:
    host = address[0]
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Refuse every TCP or UDP connection to a non-loopback address; fail the test that tried."""
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def checked(sock, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            attempts.append(address)
            raise OSError(errno.ENETUNREACH, f"tests connect only to loopback, not to {address!r}")

    def connect(sock, address):
        checked(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        checked(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert not attempts, f"a connection off this machine was attempted: {attempts}"


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> StubResolver:
    """Stand in for DNS at its one point (`connections.addresses.resolve`): names answer what a test says.

    Autouse, so that no test here sends a DNS query off the machine either; a name no
    test gave an answer for does not resolve.
    """
    stub = StubResolver()
    stub.answer("localhost", ["127.0.0.1"])
    monkeypatch.setattr("connections.addresses.resolve", stub)
    return stub
