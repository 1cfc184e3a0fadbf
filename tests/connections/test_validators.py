"""Base URLs as stored: public https hosts, plain http only for allowlisted ones."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from connections.validators import validate_public_base_url


@pytest.fixture(autouse=True)
def loopback_allowlisted(settings):
    settings.CONNECTION_URL_ALLOWLIST = ["127.0.0.1"]


def refusal_of(url: str) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        validate_public_base_url(url)
    return refused.value


def test_a_public_https_host_is_accepted(resolver):
    resolver.answer("api.example.test", ["93.184.216.34", "2606:4700::1111"])
    validate_public_base_url("https://api.example.test/3.0")


def test_the_allowlisted_sandbox_may_speak_plain_http(resolver):
    validate_public_base_url("http://127.0.0.1:8765/hubspot")
    assert resolver.asked == []


def test_plain_http_to_another_host_is_refused_with_a_pointer_to_https(resolver):
    resolver.answer("api.example.test", ["93.184.216.34"])
    error = refusal_of("http://api.example.test/hubspot")
    assert error.code == "insecure_url"
    assert "Use https" in error.messages[0]


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/",
    "https://[::1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[64:ff9b:1::a9fe:a9fe]/",
    "https://[::169.254.169.254]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[2002:a9fe:a9fe::1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://169.254.169.254/",
])
def test_an_address_off_the_public_internet_is_refused(url, resolver):
    error = refusal_of(url)
    assert error.code == "private_address"
    assert "private or local network" in error.messages[0]
    assert resolver.asked == []


def test_a_name_resolving_to_the_metadata_service_is_refused(resolver):
    resolver.answer("metadata.example.test", ["169.254.169.254"])
    error = refusal_of("https://metadata.example.test/")
    assert "metadata.example.test resolves to a link-local address" in error.messages[0]


def test_a_name_that_does_not_resolve_yet_is_stored_and_checked_when_used(resolver):
    validate_public_base_url("https://not-yet.example.test/")
    assert resolver.asked == ["not-yet.example.test"]


@pytest.mark.parametrize("url", ["ftp://api.example.test/", "https:///path", "file:///etc/passwd"])
def test_only_http_and_https_urls_with_a_host_are_accepted(url):
    assert refusal_of(url).code == "invalid_url"
