"""Common misspellings of the big mailbox providers' domains, and the address they meant.

An address at one of these domains is almost always a typo made in a sign-up form: the
domains are either unregistered or parked, and mail sent there bounces or goes to a
stranger. The list is deliberately short and exact (no fuzzy matching): a fuzzy match
would "fix" real, small domains that happen to look like gmail.com.
"""
from __future__ import annotations

# Misspelled domain -> the domain meant. Lower case, as normalized addresses are.
DOMAIN_TYPOS: dict[str, str] = {
    # gmail.com
    "gmial.com": "gmail.com", "gmal.com": "gmail.com", "gmaill.com": "gmail.com", "gmai.com": "gmail.com",
    "gamil.com": "gmail.com", "gnail.com": "gmail.com", "gmail.co": "gmail.com", "gmail.con": "gmail.com",
    "gmail.cm": "gmail.com", "gmail.om": "gmail.com", "gmail.cmo": "gmail.com", "gmaul.com": "gmail.com",
    "gmil.com": "gmail.com", "gmali.com": "gmail.com", "gimail.com": "gmail.com", "gmsil.com": "gmail.com",
    "gmail.comm": "gmail.com", "g-mail.com": "gmail.com",
    # googlemail.com
    "googlemial.com": "googlemail.com", "googlemai.com": "googlemail.com",
    # hotmail.com
    "hotmial.com": "hotmail.com", "hotmal.com": "hotmail.com", "hotmai.com": "hotmail.com",
    "hotmil.com": "hotmail.com", "hotmaill.com": "hotmail.com", "hotamil.com": "hotmail.com",
    "hotmail.co": "hotmail.com", "hotmail.con": "hotmail.com", "hotmail.cm": "hotmail.com",
    "htomail.com": "hotmail.com", "homail.com": "hotmail.com", "hotmali.com": "hotmail.com",
    # yahoo.com
    "yaho.com": "yahoo.com", "yahooo.com": "yahoo.com", "yhoo.com": "yahoo.com", "yahho.com": "yahoo.com",
    "yaoo.com": "yahoo.com", "yahoo.co": "yahoo.com", "yahoo.con": "yahoo.com", "yahoo.cm": "yahoo.com",
    "tahoo.com": "yahoo.com", "uahoo.com": "yahoo.com", "yhaoo.com": "yahoo.com",
    # outlook.com
    "outlok.com": "outlook.com", "outllook.com": "outlook.com", "outlook.co": "outlook.com",
    "outlook.con": "outlook.com", "otlook.com": "outlook.com", "outloo.com": "outlook.com",
    "outlookk.com": "outlook.com", "oulook.com": "outlook.com",
    # icloud.com
    "iclod.com": "icloud.com", "icoud.com": "icloud.com", "iclould.com": "icloud.com", "icloud.co": "icloud.com",
    "icloud.con": "icloud.com", "icluod.com": "icloud.com", "iclud.com": "icloud.com",
    # live.com, aol.com, msn.com, comcast.net, protonmail
    "live.co": "live.com", "live.con": "live.com", "aol.co": "aol.com", "aol.con": "aol.com",
    "aoll.com": "aol.com", "msn.co": "msn.com", "comcat.net": "comcast.net", "comcats.net": "comcast.net",
    "protonmial.com": "protonmail.com", "protonmal.com": "protonmail.com",
}


def suggest_fix(address: str) -> str | None:
    """Return `address` with its domain corrected when the domain is a known typo, else None.

    `address` is expected normalized (trimmed and lower case); other spellings are
    compared in lower case and the part before the @ is kept as written.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return None
    meant = DOMAIN_TYPOS.get(domain.lower())
    return f"{local}@{meant}" if meant else None


def typo_message(address: str, fixed: str) -> str:
    """Return the sentence a record error shows for an address with a typo domain."""
    domain, meant = address.rpartition("@")[2], fixed.rpartition("@")[2]
    return f"{address}: the domain {domain} looks like a typo of {meant}; did you mean {fixed}?"
