"""The three-way merge of one record: what the hub takes, what the base becomes, what is held.

No database: the engine is pure. Values are given in both forms, as a page hands them
over: `raw` as the system holds it (what bases keep), `theirs` in hub form.
"""
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.merge import NO_BASE, FieldRule, Policy
from syncapp.engine.record_merge import FieldRead, merge_record

OWNS = FieldRule(Policy.OWNER_WINS, incoming_owns=True)
DOES_NOT_OWN = FieldRule(Policy.OWNER_WINS, incoming_owns=False)
MANUAL = FieldRule(Policy.MANUAL)
EARLIER = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2024, 6, 1, tzinfo=UTC)


def read(hub_field="first_name", raw="Ann", theirs=None, rule=OWNS, *, external_field=None, consent=False):
    return FieldRead(hub_field, external_field or hub_field.upper(), raw, raw if theirs is None else theirs, rule,
                     consent=consent)


def as_is(read: FieldRead, raw):
    """Bases read through an identity mapping."""
    return raw


def merge(*reads, ours=None, base=None, **options):
    return merge_record(reads=list(reads), ours=ours or {}, base=base or {}, base_in_hub_form=as_is, **options)


class TestOneField:
    @pytest.mark.parametrize(
        ("base", "raw", "ours", "rule", "takes", "new_base"),
        [
            # Unchanged there since the last agreement (or our own write read back): not news.
            ({"FIRST_NAME": "Ann"}, "Ann", "Anna", DOES_NOT_OWN, {}, {"FIRST_NAME": "Ann"}),
            # Changed only there: the hub takes it, and the base follows.
            ({"FIRST_NAME": "Ann"}, "Anne", "Ann", DOES_NOT_OWN, {"first_name": "Anne"}, {"FIRST_NAME": "Anne"}),
            # First read, the hub empty: taken.
            ({}, "Ann", None, DOES_NOT_OWN, {"first_name": "Ann"}, {"FIRST_NAME": "Ann"}),
            # Both changed: the owner wins...
            ({"FIRST_NAME": "Ann"}, "Anne", "Anna", OWNS, {"first_name": "Anne"}, {"FIRST_NAME": "Anne"}),
            # ...or the hub keeps its value, and the base still records what the system holds.
            ({"FIRST_NAME": "Ann"}, "Anne", "Anna", DOES_NOT_OWN, {}, {"FIRST_NAME": "Anne"}),
            # Already equal: nothing to take.
            ({}, "Ann", "Ann", DOES_NOT_OWN, {}, {"FIRST_NAME": "Ann"}),
        ],
    )
    def test_the_field_merge_decides_the_hub_and_the_base(self, base, raw, ours, rule, takes, new_base):
        merged = merge(read(raw=raw, rule=rule), ours={"first_name": ours}, base=base)
        assert merged.takes == takes
        assert merged.new_base == new_base
        assert merged.conflicts == [] and merged.joins == [] and merged.consent == []

    def test_both_sides_changed_under_manual_review_opens_a_conflict_and_the_hub_keeps_its_value(self):
        merged = merge(read(raw="Anne", rule=MANUAL), ours={"first_name": "Anna"}, base={"FIRST_NAME": "Ann"})
        assert merged.takes == {}
        [seen] = merged.conflicts
        assert (seen.hub_base, seen.ours, seen.read.theirs) == ("Ann", "Anna", "Anne")
        # The value seen is in the base: reading it again is not news, the conflict holds it.
        assert merged.new_base == {"FIRST_NAME": "Anne"}

    def test_a_conflict_without_a_base_says_none_was_agreed(self):
        merged = merge(read(raw="Anne", rule=MANUAL), ours={"first_name": "Anna"})
        assert merged.conflicts[0].hub_base is None

    def test_a_field_held_by_an_open_conflict_joins_it_and_the_hub_is_untouched(self):
        merged = merge(read(raw="Anne"), ours={"first_name": "Anna"}, base={"FIRST_NAME": "Ann"},
                       held={"first_name"})
        assert merged.takes == {} and merged.conflicts == []
        assert [joined.raw for joined in merged.joins] == ["Anne"]
        assert merged.new_base == {"FIRST_NAME": "Anne"}

    def test_a_held_field_unchanged_there_is_not_news_either(self):
        merged = merge(read(raw="Ann"), ours={"first_name": "Anna"}, base={"FIRST_NAME": "Ann"}, held={"first_name"})
        assert merged.joins == []

    def test_the_base_is_compared_in_hub_form(self):
        # The base holds "ANN" (the system's spelling); read through the mapping it is "ann", as the hub.
        merged = merge_record(
            reads=[read(raw="BOB", theirs="bob")], ours={"first_name": "ann"}, base={"FIRST_NAME": "ANN"},
            base_in_hub_form=lambda _read, raw: raw.lower(),
        )
        assert merged.takes == {"first_name": "bob"}

    def test_a_base_the_mapping_cannot_read_counts_as_none_agreed(self):
        merged = merge_record(
            reads=[read(raw="Anne", rule=MANUAL)], ours={"first_name": "Anna"}, base={"FIRST_NAME": "???"},
            base_in_hub_form=lambda _read, _raw: NO_BASE,
        )
        assert merged.conflicts[0].hub_base is None


class TestBackfill:
    def test_a_value_held_all_along_is_read_afresh_through_a_changed_mapping(self):
        merged = merge(read(raw="ann", theirs="Ann"), ours={"first_name": "ann"}, base={"FIRST_NAME": "ann"},
                       afresh={"first_name"})
        assert merged.takes == {"first_name": "Ann"}

    def test_an_empty_value_held_all_along_changes_nothing_even_afresh(self):
        merged = merge(read(raw="", theirs=""), ours={"first_name": "Ann"}, base={"FIRST_NAME": ""},
                       afresh={"first_name"})
        assert merged.takes == {} and merged.new_base == {"FIRST_NAME": ""}


class TestConsent:
    def test_a_consent_field_is_handed_to_the_consent_rule_not_merged(self):
        merged = merge(read("email_consent", raw="subscribed", consent=True), ours={"email_consent": "unsubscribed"},
                       base={"EMAIL_CONSENT": "unsubscribed"})
        assert merged.takes == {}
        [statement] = merged.consent
        assert (statement.base, statement.ours, statement.read.theirs) == ("unsubscribed", "unsubscribed",
                                                                           "subscribed")

    def test_the_state_last_agreed_overrides_an_older_field_base(self):
        # Syncapp wrote "unsubscribed" after the field's base was taken: that is what was agreed.
        merged = merge(read("email_consent", raw="subscribed", consent=True), ours={"email_consent": "unsubscribed"},
                       base={"EMAIL_CONSENT": "pending"}, consent_bases={"email_consent": "unsubscribed"})
        assert merged.consent[0].base == "unsubscribed"

    def test_a_consent_statement_seen_before_is_not_news(self):
        merged = merge(read("email_consent", raw="subscribed", consent=True), ours={"email_consent": "unsubscribed"},
                       base={"EMAIL_CONSENT": "subscribed"})
        assert merged.consent == []


class TestRecord:
    def test_fields_left_out_stay_in_the_base_as_the_system_holds_them(self):
        merged = merge(read(raw="Ann"), base={"PHONE": "old"}, left_out={"PHONE": "555-0100 ext. 12"})
        assert merged.new_base == {"FIRST_NAME": "Ann", "PHONE": "555-0100 ext. 12"}

    def test_fields_only_written_there_record_what_the_system_holds_and_never_reach_the_hub(self):
        merged = merge(read(raw="Ann"), ours={"company": "Acme"}, base={"COMPANY": "Old"},
                       written_only={"COMPANY": "Acme Inc"})
        assert merged.new_base == {"FIRST_NAME": "Ann", "COMPANY": "Acme Inc"}
        assert "company" not in merged.takes and merged.conflicts == []

    def test_fields_the_record_does_not_carry_keep_their_base(self):
        merged = merge(read(raw="Ann"), base={"LAST_NAME": "Lee"})
        assert merged.new_base == {"FIRST_NAME": "Ann", "LAST_NAME": "Lee"}

    def test_most_recent_wins_by_the_change_times_given(self):
        rule = FieldRule(Policy.MOST_RECENT)
        newer_there = merge(read(raw="Anne", rule=rule), ours={"first_name": "Anna"}, base={"FIRST_NAME": "Ann"},
                            theirs_changed_at=LATER, ours_changed_at=EARLIER)
        newer_here = merge(read(raw="Anne", rule=rule), ours={"first_name": "Anna"}, base={"FIRST_NAME": "Ann"},
                           theirs_changed_at=EARLIER, ours_changed_at=LATER)
        assert newer_there.takes == {"first_name": "Anne"}
        assert newer_here.takes == {}


values = st.one_of(st.none(), st.sampled_from(["", "Ann", "Anne", "Anna"]))
rules = st.sampled_from([OWNS, DOES_NOT_OWN, MANUAL, FieldRule(Policy.MOST_RECENT)])


@given(base=values, raw=values, ours=values, rule=rules, has_base=st.booleans())
def test_property_reading_the_same_record_again_changes_nothing(base, raw, ours, rule, has_base):
    """Idempotence: once a record is merged, merging it again takes nothing, opens nothing."""
    first = merge(read(raw=raw, theirs=raw, rule=rule), ours={"first_name": ours},
                  base={"FIRST_NAME": base} if has_base else {})
    hub = {"first_name": first.takes.get("first_name", ours)}
    again = merge(read(raw=raw, theirs=raw, rule=rule), ours=hub, base=first.new_base)
    assert again.takes == {} and again.conflicts == [] and again.joins == []
    assert again.new_base == first.new_base


@given(base=values, raw=values, ours=values, rule=rules)
def test_property_the_hub_only_takes_the_systems_value_and_only_when_it_differs(base, raw, ours, rule):
    merged = merge(read(raw=raw, theirs=raw, rule=rule), ours={"first_name": ours}, base={"FIRST_NAME": base})
    for hub_field, value in merged.takes.items():
        assert hub_field == "first_name" and value == raw and value != ours
    assert not (merged.takes and merged.conflicts)
