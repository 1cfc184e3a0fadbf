"""Batch hygiene: refused inputs are isolated, repeated ones split, emails recognised."""
import pytest

from connections.providers.base import AuthenticationError, ProviderError, TransientError
from connections.providers.batches import isolate_rejections, mentions_email, split_repeats


class Endpoint:
    """A batch endpoint that refuses a whole call holding any bad input."""

    def __init__(self, bad: set[str], *, names_the_bad_one: bool = False, status: int = 400):
        self.bad = bad
        self.names_the_bad_one = names_the_bad_one
        self.status = status
        self.calls: list[list[str]] = []

    def send(self, group: list[str]) -> list[str]:
        self.calls.append(list(group))
        offenders = [item for item in group if item in self.bad]
        if offenders:
            message = f"Email address {offenders[0]} is invalid" if self.names_the_bad_one else "Invalid input"
            raise ProviderError(message, status=self.status)
        return [item.upper() for item in group]


def test_a_clean_batch_is_one_call():
    endpoint = Endpoint(bad=set())
    outcome = isolate_rejections(["a", "b", "c"], endpoint.send)
    assert outcome.accepted == [(["a", "b", "c"], ["A", "B", "C"])]
    assert outcome.rejected == []


def test_named_offenders_are_taken_out_without_splitting():
    items = [f"u{i}@example.com" for i in range(10)]
    endpoint = Endpoint(bad={"u3@example.com", "u7@example.com"}, names_the_bad_one=True)
    outcome = isolate_rejections(items, endpoint.send, blamed=lambda error, item: mentions_email(str(error), item))
    assert sorted(item for item, _ in outcome.rejected) == ["u3@example.com", "u7@example.com"]
    assert sorted(item for group, _ in outcome.accepted for item in group) == sorted(set(items) - endpoint.bad)
    assert len(endpoint.calls) == 3


def test_unnamed_offenders_are_found_by_halving():
    items = [str(i) for i in range(16)]
    endpoint = Endpoint(bad={"5"})
    outcome = isolate_rejections(items, endpoint.send)
    assert [item for item, _ in outcome.rejected] == ["5"]
    assert sorted(item for group, _ in outcome.accepted for item in group) == sorted(set(items) - {"5"})
    # One failed call per halving level plus the accepted halves: logarithmic, not linear.
    assert len(endpoint.calls) <= 2 * 4 + 1


def test_every_refused_input_gets_its_own_error():
    endpoint = Endpoint(bad={"1", "2"}, status=409)
    outcome = isolate_rejections(["1", "2", "3"], endpoint.send)
    assert sorted(item for item, _ in outcome.rejected) == ["1", "2"]
    assert all(error.status == 409 for _, error in outcome.rejected)


@pytest.mark.parametrize("error", [AuthenticationError("no", status=401), TransientError("down", status=503)])
def test_errors_that_are_not_about_the_content_propagate(error):
    def send(group):
        raise error

    with pytest.raises(type(error)):
        isolate_rejections(["a", "b"], send)


def test_nothing_to_send_makes_no_call():
    endpoint = Endpoint(bad=set())
    assert isolate_rejections([], endpoint.send).accepted == []
    assert endpoint.calls == []


def test_repeats_go_to_later_calls_in_order():
    assert split_repeats(["a", "B", "b", "c", "A", "a"], key=str.lower) == [["a", "B", "c"], ["b", "A"], ["a"]]
    assert split_repeats([], key=str.lower) == []


def test_split_repeats_fills_calls_up_to_the_providers_maximum():
    assert split_repeats(["a", "b", "c", "A", "d"], key=str.lower, max_items=2) == [["a", "b"], ["c", "A"], ["d"]]
    assert split_repeats(["a", "a", "a"], key=str.lower, max_items=2) == [["a"], ["a"], ["a"]]


@pytest.mark.parametrize(
    ("text", "email", "expected"),
    [
        ("Email address a..b@example.com is invalid", "a..b@example.com", True),
        ("Email address A@Example.com is invalid", "a@example.com", True),
        ("Email address xa@example.com is invalid", "a@example.com", False),
        ("Email address a@example.com.au is invalid", "a@example.com", False),
        ("['a@example.com']", "a@example.com", True),
        ("Email address a@example.com.", "a@example.com", True),
        ("anything", "", False),
    ],
)
def test_an_email_is_recognised_only_as_a_whole_address(text, email, expected):
    assert mentions_email(text, email) is expected
