"""Fault plans: parsing the control request and drawing each request's fault."""
import pytest

from sandbox.faults import Fault, FaultInjector
from sandbox.faults import parse_plan as parse_any_plan

PROVIDERS = ("hubspot", "mailchimp", "activecampaign")


def parse_plan(body):
    return parse_any_plan(body, PROVIDERS)


def test_a_plan_for_all_providers_targets_every_one():
    providers, plan = parse_plan({"provider": "all", "rate": 0.5, "statuses": [503], "latency_ms": 20})
    assert providers == ["hubspot", "mailchimp", "activecampaign"]
    assert (plan.rate, plan.statuses, plan.latency_ms) == (0.5, [503], 20)


@pytest.mark.parametrize("body, complaint", [
    ([], "JSON object"),
    ({"provider": "klaviyo"}, "provider"),
    ({"rate": 1.5}, "rate"),
    ({"rate": "0.2"}, "rate"),
    ({"rate": 0.7, "reset_rate": 0.5}, "together"),
    ({"rate": 0.5, "reset_rate": 0.25, "lost_reply_rate": 0.5}, "together"),
    ({"lost_reply_rate": -0.1}, "lost_reply_rate"),
    ({"statuses": [418]}, "statuses"),
    ({"statuses": []}, "statuses"),
    ({"latency_ms": -1}, "latency_ms"),
    ({"latency_ms": None}, "latency_ms"),
    ({"count": 1.5}, "count"),
    ({"expire_tokens": "yes"}, "expire_tokens"),
    ({"color": "red"}, "unknown keys: color"),
])
def test_malformed_plans_are_refused_with_the_reason(body, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_plan(body)


def draws(injector, provider, times):
    return [injector.draw(provider)[1] for _ in range(times)]


def test_rate_one_faults_every_request_with_the_listed_statuses():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "hubspot", "rate": 1.0, "statuses": [429, 502], "random_seed": 3}))
    faults = draws(injector, "hubspot", 50)
    assert {fault.status for fault in faults} == {429, 502}
    assert draws(injector, "mailchimp", 5) == [None] * 5


def test_a_seeded_plan_repeats_the_same_faults():
    plan = {"provider": "mailchimp", "rate": 0.3, "reset_rate": 0.2, "random_seed": 42}
    first, second = FaultInjector(), FaultInjector()
    first.configure(*parse_plan(plan))
    second.configure(*parse_plan(plan))
    assert draws(first, "mailchimp", 100) == draws(second, "mailchimp", 100)


def test_lost_replies_come_after_the_request_as_a_dropped_connection_or_a_gateway_timeout():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "mailchimp", "lost_reply_rate": 1.0, "random_seed": 5}))
    outcomes = [injector.draw("mailchimp") for _ in range(40)]
    assert {fault for _, fault, _ in outcomes} == {Fault("reset"), Fault("status", 504)}
    assert all(after for _, _, after in outcomes)


def test_a_mixed_plan_carries_out_only_the_requests_whose_reply_is_lost():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "hubspot", "rate": 0.25, "statuses": [429, 503],
                                    "reset_rate": 0.25, "lost_reply_rate": 0.25, "random_seed": 11}))
    outcomes = [injector.draw("hubspot") for _ in range(400)]
    before = {fault for _, fault, after in outcomes if fault is not None and not after}
    lost = {fault for _, fault, after in outcomes if after}
    assert before == {Fault("reset"), Fault("status", 429), Fault("status", 503)}
    assert lost == {Fault("reset"), Fault("status", 504)}
    assert 50 <= sum(fault is None for _, fault, _ in outcomes) <= 150
    assert injector.describe()["hubspot"]["injected"] == sum(fault is not None for _, fault, _ in outcomes)


def test_count_caps_the_faults_but_not_the_latency():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "hubspot", "rate": 1.0, "statuses": [500], "count": 2,
                                    "latency_ms": 5}))
    outcomes = [injector.draw("hubspot") for _ in range(4)]
    assert [fault for _, fault, _ in outcomes] == [Fault("status", 500), Fault("status", 500), None, None]
    assert {latency for latency, _, _ in outcomes} == {5}
    assert injector.describe()["hubspot"]["injected"] == 2


def test_expire_tokens_faults_every_request_and_retry_after_only_goes_on_429s():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "hubspot", "expire_tokens": True}))
    assert draws(injector, "hubspot", 3) == [Fault("expired_token", 401)] * 3
    injector.configure(*parse_plan({"provider": "hubspot", "rate": 1.0, "statuses": [429, 503], "retry_after": 2,
                                    "random_seed": 1}))
    for fault in draws(injector, "hubspot", 20):
        assert fault.retry_after == (2 if fault.status == 429 else None)


def test_clear_removes_every_plan():
    injector = FaultInjector()
    injector.configure(*parse_plan({"provider": "all", "reset_rate": 1.0}))
    assert injector.draw("mailchimp")[1] == Fault("reset")
    injector.clear()
    assert injector.draw("mailchimp") == (0, None, False)
    assert injector.describe() == {}
