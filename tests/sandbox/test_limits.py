"""The providers' limits: HubSpot's rolling window and Mailchimp's concurrent connections."""
import time

from sandbox.limits import ConcurrencyLimit, RollingWindowLimit


def test_rolling_window_refuses_beyond_the_limit_and_counts_down():
    limit = RollingWindowLimit(3, window_seconds=10)
    admissions = [limit.admit("token") for _ in range(4)]
    assert [a.allowed for a in admissions] == [True, True, True, False]
    assert [a.remaining for a in admissions] == [2, 1, 0, 0]
    assert admissions[-1].policy == "TEN_SECONDLY_ROLLING"


def test_rolling_window_frees_budget_as_requests_age_out():
    limit = RollingWindowLimit(2, window_seconds=0.2)
    assert limit.admit("token").allowed and limit.admit("token").allowed
    assert not limit.admit("token").allowed
    time.sleep(0.25)
    assert limit.admit("token").allowed


def test_each_token_has_its_own_budget():
    limit = RollingWindowLimit(1)
    assert limit.admit("a").allowed
    assert limit.admit("b").allowed
    assert not limit.admit("a").allowed


def test_a_zero_limit_turns_the_window_off_but_the_daily_cap_stays():
    limit = RollingWindowLimit(0, daily_limit=3)
    admissions = [limit.admit("token") for _ in range(4)]
    assert [a.allowed for a in admissions] == [True, True, True, False]
    assert admissions[2].daily_remaining == 0
    assert admissions[3].policy == "DAILY"


def test_configure_sets_the_limit_and_forgets_history():
    limit = RollingWindowLimit(1)
    limit.admit("token")
    limit.configure(2)
    assert limit.admit("token").allowed and limit.admit("token").allowed
    assert not limit.admit("token").allowed


def test_a_window_names_its_policy_and_may_have_no_daily_cap():
    limit = RollingWindowLimit(2, window_seconds=1.0, daily_limit=None, policy="SECONDLY")
    admissions = [limit.admit("token") for _ in range(3)]
    assert [a.allowed for a in admissions] == [True, True, False]
    assert admissions[-1].policy == "SECONDLY"
    assert admissions[0].daily_limit == 0


def test_a_refund_gives_back_a_request_another_limit_refused():
    limit = RollingWindowLimit(2, daily_limit=10)
    limit.admit("token")
    second = limit.admit("token")
    limit.refund("token")
    third = limit.admit("token")
    assert third.allowed and third.remaining == second.remaining
    assert third.daily_remaining == second.daily_remaining
    assert not limit.admit("token").allowed


def test_concurrency_limit_holds_slots_until_released():
    limit = ConcurrencyLimit(2)
    assert limit.acquire("key") and limit.acquire("key")
    assert not limit.acquire("key")
    assert limit.acquire("other-key")
    limit.release("key")
    assert limit.acquire("key")
