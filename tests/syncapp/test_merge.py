"""Three-way merge of one field: base (last agreed), theirs (incoming), ours (hub)."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.merge import NO_BASE, FieldRule, Outcome, Policy, is_empty, merge_field

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
OWNER_ELSEWHERE = FieldRule(Policy.OWNER_WINS, incoming_owns=False)
OWNER_HERE = FieldRule(Policy.OWNER_WINS, incoming_owns=True)


def decide(base, theirs, ours, rule=OWNER_ELSEWHERE, **times):
    return merge_field(base=base, theirs=theirs, ours=ours, rule=rule, **times)


class TestNoChange:
    def test_theirs_equal_to_base_changes_nothing(self):
        result = decide("Ann", "Ann", "Annie")
        assert (result.outcome, result.value) == (Outcome.UNCHANGED, "Annie")
        assert not result.changes_hub

    def test_echo_of_syncapps_own_write_is_not_a_change(self):
        # Syncapp pushed "Ann" (the base); reading "Ann" back must not count as an edit.
        assert decide(base="Ann", theirs="Ann", ours="Ann").outcome is Outcome.UNCHANGED

    def test_both_sides_agreeing_is_no_change(self):
        assert decide("Ann", "Anna", "Anna").outcome is Outcome.UNCHANGED

    def test_both_empty_is_no_change(self):
        assert decide(NO_BASE, "", "").outcome is Outcome.UNCHANGED


class TestOneSideChanged:
    def test_change_only_in_the_system_is_taken(self):
        result = decide("Ann", "Anna", "Ann")
        assert (result.outcome, result.value) == (Outcome.TAKE_THEIRS, "Anna")
        assert result.changes_hub

    def test_first_sight_fills_an_empty_hub(self):
        assert decide(NO_BASE, "Ann", "").value == "Ann"
        assert decide(NO_BASE, "Ann", None).outcome is Outcome.TAKE_THEIRS

    def test_change_only_in_the_hub_is_kept(self):
        assert decide("Ann", "Ann", "Annie").value == "Annie"


class TestEmptyValues:
    def test_empty_never_overwrites_a_hub_value_by_default(self):
        result = decide("Ann", "", "Ann")
        assert (result.outcome, result.value) == (Outcome.KEEP_OURS, "Ann")
        assert "empty" in result.reason

    def test_none_counts_as_empty(self):
        assert decide("Ann", None, "Ann").outcome is Outcome.KEEP_OURS

    def test_empty_clears_the_hub_when_the_mapping_allows(self):
        rule = FieldRule(never_overwrite_with_empty=False)
        assert decide("Ann", "", "Ann", rule).value == ""

    @pytest.mark.parametrize(
        ("value", "empty"),
        [(None, True), ("", True), ([], True), ({}, True), (" ", False), (0, False), (False, False)],
    )
    def test_what_counts_as_empty(self, value, empty):
        assert is_empty(value) is empty


class TestBothChanged:
    def test_owner_wins_takes_theirs_when_the_system_owns_the_field(self):
        assert decide("Ann", "Anna", "Annie", OWNER_HERE).value == "Anna"

    def test_owner_wins_keeps_ours_when_another_system_owns_it(self):
        assert decide("Ann", "Anna", "Annie", OWNER_ELSEWHERE).value == "Annie"

    def test_first_sight_with_differing_values_follows_the_policy(self):
        assert decide(NO_BASE, "Anna", "Annie", OWNER_HERE).value == "Anna"
        assert decide(NO_BASE, "Anna", "Annie", OWNER_ELSEWHERE).value == "Annie"

    def test_most_recent_takes_the_newer_side(self):
        rule = FieldRule(Policy.MOST_RECENT)
        newer, older = T0 + timedelta(minutes=1), T0
        assert decide("A", "B", "C", rule, theirs_changed_at=newer, ours_changed_at=older).value == "B"
        assert decide("A", "B", "C", rule, theirs_changed_at=older, ours_changed_at=newer).value == "C"

    def test_most_recent_tie_keeps_the_hub_value(self):
        rule = FieldRule(Policy.MOST_RECENT)
        assert decide("A", "B", "C", rule, theirs_changed_at=T0, ours_changed_at=T0).value == "C"

    def test_most_recent_with_unknown_times(self):
        rule = FieldRule(Policy.MOST_RECENT)
        assert decide("A", "B", "C", rule).outcome is Outcome.KEEP_OURS
        assert decide("A", "B", "C", rule, theirs_changed_at=T0).outcome is Outcome.TAKE_THEIRS

    def test_manual_review_holds_the_field_as_a_conflict(self):
        result = decide("A", "B", "C", FieldRule(Policy.MANUAL))
        assert (result.outcome, result.value) == (Outcome.CONFLICT, "C")


values = st.one_of(st.none(), st.just(""), st.sampled_from(["a", "b", "c"]))
rules = st.builds(FieldRule, st.sampled_from(list(Policy)), st.booleans(), st.booleans())


@given(base=st.one_of(st.just(NO_BASE), values), theirs=values, ours=values, rule=rules)
def test_merge_properties(base, theirs, ours, rule):
    result = merge_field(base=base, theirs=theirs, ours=ours, rule=rule)
    # The hub only ever ends with its own value or the incoming one.
    assert result.value in (theirs, ours)
    # Only taking theirs changes the hub.
    assert (result.value != ours) == (result.outcome is Outcome.TAKE_THEIRS and theirs != ours)
    # A value the system did not change never moves the hub.
    if base is not NO_BASE and theirs == base:
        assert result.outcome is Outcome.UNCHANGED
    # Empty never overwrites a value when the mapping forbids it.
    if rule.never_overwrite_with_empty and is_empty(theirs) and not is_empty(ours):
        assert result.value == ours
    # Re-reading after applying the decision is a no-op (merging is idempotent).
    again = merge_field(base=theirs, theirs=theirs, ours=result.value, rule=rule)
    assert again.outcome is Outcome.UNCHANGED
