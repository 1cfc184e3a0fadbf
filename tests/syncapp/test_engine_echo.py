"""Echoes: a record read back holding only what Syncapp last agreed with its system.

No database: the engine is pure. `Known` is the record's link and its contact as the
hub holds them; `Read` the record as a delta read returns it, converted.
"""
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncapp.engine.echo import Known, Read, is_echo

PUSHED_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
BASE = {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee", "hs_email_optout": "false",
        "company": "Acme"}


def known(**changes) -> Known:
    """A link agreed at the last push, its contact unchanged since."""
    return replace(Known(merge_base=dict(BASE), email_consent_base="subscribed", archived=False, stable_id="",
                         agreed_at=PUSHED_AT, contact_email="ann@example.com", contact_phone="+14155550101",
                         contact_changed_at=PUSHED_AT - timedelta(seconds=5),
                         empty_in_hub=frozenset({"phone"})), **changes)


def read(**changes) -> Read:
    """The record read back exactly as written."""
    return replace(Read(fields=dict(BASE), email="ann@example.com", phone=None, stable_id="",
                        email_consent="subscribed", consent_field="hs_email_optout", whole=True), **changes)


def test_a_record_holding_what_was_last_agreed_is_an_echo():
    assert is_echo(read(), known())


def test_a_record_carrying_fewer_fields_than_the_base_is_an_echo():
    # A base also keeps fields the record does not carry (another sync's, a field unmapped since).
    assert is_echo(read(fields={"email": "ann@example.com", "firstname": "Ann"}), known())


@pytest.mark.parametrize("changed", [
    {"firstname": "Anne"},
    {"firstname": ""},
    {"firstname": None},
    # Another spelling of the same value is still not what the base holds: only the full
    # treatment records it as what the system holds.
    {"email": "ANN@example.com"},
    {"company": "ACME"},
    # A field the base has never held, holding a value.
    {"phone": "+14155550101"},
])
def test_a_value_other_than_the_base_is_news(changed):
    assert not is_echo(read(fields={**BASE, **changed}), known())


@pytest.mark.parametrize("nothing", [None, ""])
def test_a_field_the_push_left_out_is_no_news_while_both_sides_hold_nothing_there(nothing):
    # A push's base is what it sent: a record Syncapp created lacks in its base the
    # fields the hub had nothing for, which the record reads back empty.
    assert is_echo(read(fields={**BASE, "phone": nothing}), known())
    # The hub holds a value the system lacks: the full treatment decides (keep it, send it).
    assert not is_echo(read(fields={**BASE, "phone": nothing}), known(empty_in_hub=frozenset()))


def test_the_consent_field_is_judged_by_the_state_last_agreed_not_by_the_base():
    # Syncapp's own unsubscribe, written apart from the fields, read back.
    assert is_echo(read(fields={**BASE, "hs_email_optout": "true"}, email_consent="unsubscribed"),
                   known(email_consent_base="unsubscribed"))
    # A record Syncapp created: the consent field was never in its base.
    fields = {name: value for name, value in BASE.items() if name != "hs_email_optout"}
    assert is_echo(read(fields={**fields, "hs_email_optout": "false"}), known(merge_base=fields))
    # Stating nothing is no news for the consent rule.
    assert is_echo(read(fields={**fields, "hs_email_optout": None}, email_consent=None), known(merge_base=fields))


def test_a_consent_statement_other_than_the_one_agreed_is_news():
    # An unsubscribe made there after Syncapp's push: the field's raw value may not have
    # moved in the base's form (Syncapp's write of a state travels apart from the fields).
    assert not is_echo(read(email_consent="unsubscribed"), known())
    assert not is_echo(read(email_consent="subscribed"), known(email_consent_base="unsubscribed"))
    assert not is_echo(read(email_consent="subscribed"), known(email_consent_base=""))
    # "unknown" is a statement too: taken, it would become the state agreed.
    assert not is_echo(read(email_consent="unknown"), known())


def test_a_record_stating_no_consent_is_judged_by_its_fields():
    assert is_echo(read(email_consent=None), known())


def test_a_contact_changed_in_the_hub_since_the_last_agreement_gets_the_full_treatment():
    # It may owe this system or another a push: only page_marks decides that.
    assert not is_echo(read(), known(contact_changed_at=PUSHED_AT + timedelta(microseconds=1)))
    assert is_echo(read(), known(contact_changed_at=PUSHED_AT))


@pytest.mark.parametrize("unknown", ["agreed_at", "contact_changed_at"])
def test_an_unknown_time_is_never_an_echo(unknown):
    assert not is_echo(read(), known(**{unknown: None}))


def test_an_archived_link_is_not_an_echo():
    # The record is back there (restored): it is synced again, and audited.
    assert not is_echo(read(), known(archived=True))


def test_a_stable_id_that_moved_is_not_an_echo():
    assert not is_echo(read(stable_id="m-2"), known(stable_id="m-1"))
    assert not is_echo(read(stable_id="m-2"), known(stable_id=""))
    assert is_echo(read(stable_id="m-1"), known(stable_id="m-1"))
    # A system without stable ids says nothing about them.
    assert is_echo(read(stable_id=""), known(stable_id="m-1"))


@pytest.mark.parametrize(("email", "contact_email"), [
    ("anne@example.com", "ann@example.com"),
    (None, "ann@example.com"),
    ("ann@example.com", None),
])
def test_keys_other_than_the_contacts_are_not_an_echo(email, contact_email):
    assert not is_echo(read(email=email), known(contact_email=contact_email))


def test_a_phone_other_than_the_contacts_is_not_an_echo_and_no_phone_read_says_nothing():
    assert not is_echo(read(phone="+14155550199"), known())
    assert is_echo(read(phone="+14155550101"), known())
    assert is_echo(read(phone=None), known(contact_phone=None))


def test_a_record_not_read_whole_is_not_an_echo():
    # A field left out as unreadable, or an email typo fixed: warnings and audit rows to keep.
    assert not is_echo(read(whole=False), known())


values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))


# No deadline: a loaded machine must not fail a test about values, not speed.
@settings(deadline=None)
@given(base=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), values), read_fields=st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), values))
def test_an_echo_is_exactly_a_record_whose_every_field_the_base_holds_as_read(base, read_fields):
    empty_in_hub = frozenset({"c", "d"})
    expected = all(base[name] == value if name in base else name in empty_in_hub and value in (None, "")
                   for name, value in read_fields.items())
    assert is_echo(read(fields=read_fields, consent_field=None),
                   known(merge_base=base, empty_in_hub=empty_in_hub)) is expected
