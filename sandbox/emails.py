"""Email address syntax checks shared by the emulated providers."""
from __future__ import annotations

import hashlib
import re

# RFC 5322 "dot-atom" local part: atoms of these characters joined by single dots.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_TOP_LEVEL = re.compile(r"^([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")


def email_problem(address: str) -> str | None:
    """Return why `address` is not a valid email address, or None when it is.

    Both providers refuse non-ASCII addresses (internationalized local parts and
    domains): the emulator does the same rather than guess which forms they accept.
    """
    if not address:
        return "is empty"
    if not address.isascii():
        return "contains non-ASCII characters"
    if _SPACE_OR_CONTROL.search(address):
        return "contains whitespace or control characters"
    if address.count("@") != 1:
        return "must contain exactly one @"
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        return "has a malformed local part"
    if len(address) > 254:
        return "is longer than 254 characters"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        return "has a malformed domain"
    if not _TOP_LEVEL.match(labels[-1]):
        return "has no valid top-level domain"
    return None


def subscriber_hash(address: str) -> str:
    """Return Mailchimp's id for an address: the MD5 hex digest of it lowercased."""
    return hashlib.md5(address.lower().encode("utf-8"), usedforsecurity=False).hexdigest()
