"""Email syntax checks shared by the emulated providers."""
import pytest

from sandbox.emails import email_problem, subscriber_hash


@pytest.mark.parametrize("address", [
    "ann@example.com",
    "ann+news@example.com",
    "o'brien@example.co.uk",
    "first.last@sub.domain.example.org",
    "x@xn--bcher-kva.example",
])
def test_valid_addresses_pass(address):
    assert email_problem(address) is None


@pytest.mark.parametrize("address, reason", [
    ("", "is empty"),
    ("a..b@example.com", "has a malformed local part"),
    (".ann@example.com", "has a malformed local part"),
    ("nodomain@", "has a malformed domain"),
    ("a@b@example.com", "must contain exactly one @"),
    ("no-at-sign.example.com", "must contain exactly one @"),
    ("ann@localhost", "has a malformed domain"),
    ("ann@example.c0m", "has no valid top-level domain"),
    ("ann@-bad-.example.com", "has a malformed domain"),
    ("  ann@example.com", "contains whitespace or control characters"),
    ("nu\x00l@example.com", "contains whitespace or control characters"),
    ("josé@example.com", "contains non-ASCII characters"),
    ("user@bücher.example", "contains non-ASCII characters"),
    ("a" * 65 + "@example.com", "has a malformed local part"),
])
def test_invalid_addresses_name_their_problem(address, reason):
    assert email_problem(address) == reason


def test_subscriber_hash_is_md5_of_the_lowercased_address():
    assert subscriber_hash("Ann@Example.com") == subscriber_hash("ann@example.com")
    assert subscriber_hash("urist.mcvankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"
