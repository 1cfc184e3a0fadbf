"""Three-way merge of one field: base (last agreed), theirs (incoming), ours (hub).

Each table row reads as one sentence of the specification: with this merge base, the
system sending `theirs` while the hub holds `ours`, under this rule, the hub ends with
this value. "A" is the system being read; "B" is the hub's side (the hub's own value,
which another system's change put there).
"""
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.merge import NO_BASE, FieldRule, Outcome, Policy, is_empty, merge_field

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EARLIER, LATER = T0, T0 + timedelta(minutes=1)

OWNER_HERE = FieldRule(Policy.OWNER_WINS, incoming_owns=True)
OWNER_ELSEWHERE = FieldRule(Policy.OWNER_WINS, incoming_owns=False)
MOST_RECENT = FieldRule(Policy.MOST_RECENT)
MANUAL = FieldRule(Policy.MANUAL)
# The same rules with empty values allowed to overwrite (never_overwrite_with_empty off).
OWNER_HERE_CLEARS = FieldRule(Policy.OWNER_WINS, incoming_owns=True, never_overwrite_with_empty=False)
OWNER_ELSEWHERE_CLEARS = FieldRule(Policy.OWNER_WINS, incoming_owns=False, never_overwrite_with_empty=False)
MOST_RECENT_CLEARS = FieldRule(Policy.MOST_RECENT, never_overwrite_with_empty=False)
MANUAL_CLEARS = FieldRule(Policy.MANUAL, never_overwrite_with_empty=False)

EVERY_RULE = [OWNER_HERE, OWNER_ELSEWHERE, MOST_RECENT, MANUAL,
              OWNER_HERE_CLEARS, OWNER_ELSEWHERE_CLEARS, MOST_RECENT_CLEARS, MANUAL_CLEARS]
# Change times that would make either side "most recent", and none at all.
EVERY_TIMING = [
    {"theirs_changed_at": LATER, "ours_changed_at": EARLIER},
    {"theirs_changed_at": EARLIER, "ours_changed_at": LATER},
    {},
]

UNCHANGED, TAKE_THEIRS = Outcome.UNCHANGED, Outcome.TAKE_THEIRS
KEEP_OURS, CONFLICT = Outcome.KEEP_OURS, Outcome.CONFLICT


def rule_id(rule: FieldRule) -> str:
    owner = ""
    if rule.policy is Policy.OWNER_WINS:
        owner = "incoming-owns" if rule.incoming_owns else "owned-elsewhere"
    empty = "" if rule.never_overwrite_with_empty else "empty-overwrites"
    return "-".join(part for part in (rule.policy.value, owner, empty) if part)


def same(a, b) -> bool:
    """Equal, counting every spelling of "nothing" (None, "") as one."""
    return a == b or (is_empty(a) and is_empty(b))


def decide(base, theirs, ours, rule, **times):
    return merge_field(base=base, theirs=theirs, ours=ours, rule=rule, **times)


def check(decision, outcome: Outcome, value) -> None:
    assert (decision.outcome, decision.value) == (outcome, value), decision.reason
    assert decision.changes_hub is (outcome is TAKE_THEIRS)
    assert decision.reason


# Cases where the policy never matters: every rule and every timing gives the same answer.
# (case, base, theirs, ours, outcome, hub value after)
POLICY_FREE = [
    ("nothing changed", "Ann", "Ann", "Ann", UNCHANGED, "Ann"),
    ("our own write read back (echo)", "Annie", "Annie", "Annie", UNCHANGED, "Annie"),
    ("only A changed", "Ann", "Anna", "Ann", TAKE_THEIRS, "Anna"),
    ("only B changed: the hub keeps it and pushes it", "Ann", "Ann", "Annie", UNCHANGED, "Annie"),
    ("both changed to the same value", "Ann", "Anna", "Anna", UNCHANGED, "Anna"),
    ("A changed from empty", "", "Ann", "", TAKE_THEIRS, "Ann"),
    ("A changed from no value", None, "Ann", None, TAKE_THEIRS, "Ann"),
    ("B cleared the field: the clear stays and goes out", "Ann", "Ann", "", UNCHANGED, ""),
    ("B cleared to None", "Ann", "Ann", None, UNCHANGED, None),
    ("both cleared the field", "Ann", "", "", UNCHANGED, ""),
    ("both cleared it to None", "Ann", None, None, UNCHANGED, None),
    ("first sight: A and the hub agree", NO_BASE, "Ann", "Ann", UNCHANGED, "Ann"),
    ("first sight: the hub has no value", NO_BASE, "Ann", "", TAKE_THEIRS, "Ann"),
    ("first sight: the hub has None", NO_BASE, "Ann", None, TAKE_THEIRS, "Ann"),
    ("first sight: both empty", NO_BASE, "", "", UNCHANGED, ""),
    ("first sight: both None", NO_BASE, None, None, UNCHANGED, None),
]


@pytest.mark.parametrize("timing", EVERY_TIMING, ids=["A-newer", "B-newer", "no-times"])
@pytest.mark.parametrize("rule", EVERY_RULE, ids=rule_id)
@pytest.mark.parametrize(("case", "base", "theirs", "ours", "outcome", "value"), POLICY_FREE,
                         ids=[row[0] for row in POLICY_FREE])
def test_cases_no_policy_decides(case, base, theirs, ours, outcome, value, rule, timing):
    check(decide(base, theirs, ours, rule, **timing), outcome, value)


# Both sides changed the field to different values: the policy decides.
# (case, rule, times, outcome, hub value after), with base "Ann", A "Anna", the hub "Annie".
BOTH_CHANGED = [
    ("owner wins, A owns the field", OWNER_HERE, {}, TAKE_THEIRS, "Anna"),
    ("owner wins, A owns it, whatever the times", OWNER_HERE, {"theirs_changed_at": EARLIER, "ours_changed_at": LATER},
     TAKE_THEIRS, "Anna"),
    ("owner wins, another system owns the field", OWNER_ELSEWHERE, {}, KEEP_OURS, "Annie"),
    ("owner wins, owned elsewhere, whatever the times", OWNER_ELSEWHERE,
     {"theirs_changed_at": LATER, "ours_changed_at": EARLIER}, KEEP_OURS, "Annie"),
    ("most recent, A changed later", MOST_RECENT, {"theirs_changed_at": LATER, "ours_changed_at": EARLIER},
     TAKE_THEIRS, "Anna"),
    ("most recent, B changed later", MOST_RECENT, {"theirs_changed_at": EARLIER, "ours_changed_at": LATER},
     KEEP_OURS, "Annie"),
    ("most recent, same instant: the hub keeps its value", MOST_RECENT,
     {"theirs_changed_at": T0, "ours_changed_at": T0}, KEEP_OURS, "Annie"),
    ("most recent, A's time unknown: an unknown time never wins", MOST_RECENT, {"ours_changed_at": EARLIER},
     KEEP_OURS, "Annie"),
    ("most recent, both times unknown", MOST_RECENT, {}, KEEP_OURS, "Annie"),
    ("most recent, only the hub's time unknown", MOST_RECENT, {"theirs_changed_at": EARLIER}, TAKE_THEIRS, "Anna"),
    ("manual: held for review, the hub keeps its value", MANUAL, {}, CONFLICT, "Annie"),
    ("manual, whatever the times", MANUAL, {"theirs_changed_at": LATER, "ours_changed_at": EARLIER},
     CONFLICT, "Annie"),
    ("manual, whoever owns the field", FieldRule(Policy.MANUAL, incoming_owns=True), {}, CONFLICT, "Annie"),
]


@pytest.mark.parametrize("base", ["Ann", NO_BASE], ids=["base-Ann", "first-sight"])
@pytest.mark.parametrize(("case", "rule", "times", "outcome", "value"), BOTH_CHANGED,
                         ids=[row[0] for row in BOTH_CHANGED])
def test_both_changed_to_different_values(case, rule, times, outcome, value, base):
    # First sight with two different values is the same question: nothing says who changed.
    check(decide(base, "Anna", "Annie", rule, **times), outcome, value)


# Empty values and deletes (a value cleared to "" or None on one side).
# (case, base, theirs, ours, rule, times, outcome, hub value after)
EMPTIES = [
    # A cleared the field, the hub did not change it.
    ("A cleared it; empties never overwrite", "Ann", "", "Ann", OWNER_HERE, {}, KEEP_OURS, "Ann"),
    ("A cleared it to None; empties never overwrite", "Ann", None, "Ann", MANUAL, {}, KEEP_OURS, "Ann"),
    ("A cleared it; empties overwrite: the clear is taken", "Ann", "", "Ann", OWNER_ELSEWHERE_CLEARS, {},
     TAKE_THEIRS, ""),
    ("A cleared it to None; empties overwrite", "Ann", None, "Ann", MANUAL_CLEARS, {}, TAKE_THEIRS, None),
    ("A cleared it; empties overwrite under most recent, A older", "Ann", "", "Ann", MOST_RECENT_CLEARS,
     {"theirs_changed_at": EARLIER, "ours_changed_at": LATER}, TAKE_THEIRS, ""),
    # A cleared the field while the hub changed it.
    ("A cleared, B changed; empties never overwrite", "Ann", "", "Annie", MANUAL, {}, KEEP_OURS, "Annie"),
    ("A cleared, B changed; empties overwrite, manual", "Ann", "", "Annie", MANUAL_CLEARS, {}, CONFLICT, "Annie"),
    ("A cleared, B changed; empties overwrite, A owns", "Ann", "", "Annie", OWNER_HERE_CLEARS, {}, TAKE_THEIRS, ""),
    ("A cleared, B changed; empties overwrite, owned elsewhere", "Ann", "", "Annie", OWNER_ELSEWHERE_CLEARS, {},
     KEEP_OURS, "Annie"),
    ("A cleared, B changed; empties overwrite, A newer", "Ann", "", "Annie", MOST_RECENT_CLEARS,
     {"theirs_changed_at": LATER, "ours_changed_at": EARLIER}, TAKE_THEIRS, ""),
    # The hub cleared the field (B's delete) while A changed it.
    ("B cleared, A changed: manual", "Ann", "Anna", "", MANUAL, {}, CONFLICT, ""),
    ("B cleared, A changed: A owns", "Ann", "Anna", "", OWNER_HERE, {}, TAKE_THEIRS, "Anna"),
    ("B cleared, A changed: owned elsewhere", "Ann", "Anna", "", OWNER_ELSEWHERE, {}, KEEP_OURS, ""),
    ("B cleared, A changed: A newer", "Ann", "Anna", "", MOST_RECENT,
     {"theirs_changed_at": LATER, "ours_changed_at": EARLIER}, TAKE_THEIRS, "Anna"),
    ("B cleared, A changed: B newer", "Ann", "Anna", "", MOST_RECENT,
     {"theirs_changed_at": EARLIER, "ours_changed_at": LATER}, KEEP_OURS, ""),
    # First sight of an empty value.
    ("first sight, A empty, the hub has a value", NO_BASE, "", "Ann", OWNER_HERE, {}, KEEP_OURS, "Ann"),
    ("first sight, A None, the hub has a value", NO_BASE, None, "Ann", MANUAL, {}, KEEP_OURS, "Ann"),
    ("first sight, A empty and empties overwrite, A owns", NO_BASE, "", "Ann", OWNER_HERE_CLEARS, {},
     TAKE_THEIRS, ""),
    ("first sight, A empty and empties overwrite, owned elsewhere", NO_BASE, "", "Ann", OWNER_ELSEWHERE_CLEARS, {},
     KEEP_OURS, "Ann"),
    # "" and None both say "no value": no side changed anything the other did not.
    ("A cleared to None while B cleared to ''", "Ann", None, "", MANUAL, {}, UNCHANGED, ""),
    ("A cleared to '' while B cleared to None", "Ann", "", None, MANUAL_CLEARS, {}, UNCHANGED, None),
    ("an empty base, A None and the hub ''", "", None, "", MANUAL, {}, UNCHANGED, ""),
    ("A set a value; the base's and the hub's nothing are spelled differently", None, "Ann", "", MANUAL, {},
     TAKE_THEIRS, "Ann"),
    ("A still has nothing (spelled None, base '') while B set a value", "", None, "Ann", MANUAL_CLEARS, {},
     UNCHANGED, "Ann"),
]


@pytest.mark.parametrize(("case", "base", "theirs", "ours", "rule", "times", "outcome", "value"), EMPTIES,
                         ids=[row[0] for row in EMPTIES])
def test_empty_values_and_deletes(case, base, theirs, ours, rule, times, outcome, value):
    check(decide(base, theirs, ours, rule, **times), outcome, value)


def test_an_empty_value_kept_out_says_why():
    assert "empty" in decide("Ann", "", "Ann", OWNER_HERE).reason


@pytest.mark.parametrize(
    ("value", "empty"),
    [(None, True), ("", True), ([], True), ({}, True), (" ", False), (0, False), (False, False), ("0", False)],
)
def test_what_counts_as_empty(value, empty):
    assert is_empty(value) is empty


values = st.one_of(st.none(), st.just(""), st.sampled_from(["a", "b", "c"]))
rules = st.builds(FieldRule, st.sampled_from(list(Policy)), st.booleans(), st.booleans())
times = st.one_of(st.none(), st.sampled_from([EARLIER, T0 + timedelta(seconds=30), LATER]))


@given(base=st.one_of(st.just(NO_BASE), values), theirs=values, ours=values, rule=rules,
       theirs_at=times, ours_at=times)
def test_merge_properties(base, theirs, ours, rule, theirs_at, ours_at):
    result = merge_field(base=base, theirs=theirs, ours=ours, rule=rule, theirs_changed_at=theirs_at,
                         ours_changed_at=ours_at)
    # The hub only ever ends with its own value or the incoming one.
    assert result.value in (theirs, ours)
    # Only taking theirs changes the hub.
    assert (result.value != ours) == (result.outcome is Outcome.TAKE_THEIRS and theirs != ours)
    # A value the system did not change never moves the hub.
    if base is not NO_BASE and theirs == base:
        assert result.outcome is Outcome.UNCHANGED
    if base is not NO_BASE and same(theirs, base):
        assert result.value == ours and result.outcome is not Outcome.CONFLICT
    # When only the system changed the field, every policy takes the change (empties aside).
    if base is not NO_BASE and same(ours, base) and not same(theirs, base) and not (
        is_empty(theirs) and rule.never_overwrite_with_empty and not is_empty(ours)
    ):
        assert result.outcome is Outcome.TAKE_THEIRS
    # Empty never overwrites a value when the mapping forbids it.
    if rule.never_overwrite_with_empty and is_empty(theirs) and not is_empty(ours):
        assert result.value == ours
    # Only manual review makes conflicts, and a conflict leaves the hub as it was.
    if result.outcome is Outcome.CONFLICT:
        assert rule.policy is Policy.MANUAL and result.value == ours
    # Only the most-recent policy looks at the times.
    if rule.policy is not Policy.MOST_RECENT:
        untimed = merge_field(base=base, theirs=theirs, ours=ours, rule=rule)
        assert (untimed.outcome, untimed.value) == (result.outcome, result.value)
    # Re-reading after applying the decision is a no-op (merging is idempotent).
    again = merge_field(base=theirs, theirs=theirs, ours=result.value, rule=rule)
    assert again.outcome is Outcome.UNCHANGED
