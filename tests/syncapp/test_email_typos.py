"""Domain typos: the list, and the fix each address gets."""
import pytest

from syncapp.engine.email_typos import DOMAIN_TYPOS, suggest_fix, typo_message
from syncapp.engine.identity import normalize_email


@pytest.mark.parametrize(
    ("address", "fixed"),
    [
        ("ann@gmial.com", "ann@gmail.com"),
        ("ann@gmal.com", "ann@gmail.com"),
        ("ann@gmaill.com", "ann@gmail.com"),
        ("ann.lee+news@gmail.con", "ann.lee+news@gmail.com"),
        ("bo@hotmial.com", "bo@hotmail.com"),
        ("bo@hotmal.com", "bo@hotmail.com"),
        ("cy@yaho.com", "cy@yahoo.com"),
        ("cy@yahooo.com", "cy@yahoo.com"),
        ("di@outlok.com", "di@outlook.com"),
        ("di@outllook.com", "di@outlook.com"),
        ("ed@iclod.com", "ed@icloud.com"),
        ("josé@gmial.com", "josé@gmail.com"),
        ("Ann@GMIAL.com", "Ann@gmail.com"),
    ],
)
def test_known_typos_get_the_domain_meant(address, fixed):
    assert suggest_fix(address) == fixed


@pytest.mark.parametrize(
    "address",
    ["ann@gmail.com", "ann@hotmail.com", "ann@yahoo.com", "ann@outlook.com", "ann@icloud.com",
     # Real domains that merely look like a big provider's are never "fixed".
     "ann@gmx.de", "ann@mail.com", "ann@ymail.com", "ann@comcast.com", "ann@example.com",
     # Only the domain counts: a local part that looks like a typo is someone's name.
     "gmial.com@example.com",
     "", "no-at-sign", "@gmial.com"],
)
def test_everything_else_has_no_suggestion(address):
    assert suggest_fix(address) is None


def test_the_message_names_the_domain_and_the_fix():
    assert typo_message("ann@gmial.com", "ann@gmail.com") == (
        "ann@gmial.com: the domain gmial.com looks like a typo of gmail.com; did you mean ann@gmail.com?")


def test_every_entry_is_a_valid_lower_case_domain_fixed_to_another():
    for typo, meant in DOMAIN_TYPOS.items():
        assert typo == typo.lower() and meant == meant.lower() and typo != meant
        # Reachable: an address at the typo passes the syntax check, then gets the fix.
        assert suggest_fix(normalize_email(f"ann@{typo}")) == f"ann@{meant}"
        assert meant not in DOMAIN_TYPOS, meant
        # A fixed address is itself valid and needs no further fix.
        assert normalize_email(f"ann@{meant}") == f"ann@{meant}"
        assert suggest_fix(f"ann@{meant}") is None


def test_hostile_addresses_never_crash(hostile_contacts):
    for row in hostile_contacts:
        suggestion = suggest_fix(row["email"])
        assert suggestion is None or suggestion.endswith(tuple(DOMAIN_TYPOS.values()))
