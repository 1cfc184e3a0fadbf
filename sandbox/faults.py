"""Faults injected at runtime into the emulated APIs: error statuses, latency, resets, lost
replies, expired tokens."""
from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

INJECTABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# How a reply is lost after the request was carried out: the connection drops, or a
# gateway in front of the provider gives up waiting (the change is made all the same).
LOST_REPLIES = (("reset", 0), ("status", 504))


@dataclass(frozen=True)
class Fault:
    """What to do to one request instead of answering it: `status`, `reset` or `expired_token`."""

    kind: str
    status: int = 0
    retry_after: int | None = None


@dataclass
class FaultPlan:
    """The faults one provider's requests suffer until the plan is cleared."""

    rate: float = 0.0
    statuses: list[int] = field(default_factory=lambda: [429, 500, 502, 503])
    latency_ms: int = 0
    reset_rate: float = 0.0
    lost_reply_rate: float = 0.0
    expire_tokens: bool = False
    count: int | None = None
    retry_after: int | None = None
    after_write: bool = False
    random_seed: int | None = None
    injected: int = 0

    def exhausted(self) -> bool:
        return self.count is not None and self.injected >= self.count


def parse_plan(body: Any, providers: tuple[str, ...]) -> tuple[list[str], FaultPlan]:
    """Return which of `providers` a `POST /_sandbox/faults` body targets ("all": every one) and its plan.

    Raise ValueError naming the offending key when the body is malformed.
    """
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    known = {name for name in FaultPlan.__dataclass_fields__ if name != "injected"} | {"provider"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    provider = body.get("provider", "all")
    if provider not in (*providers, "all"):
        raise ValueError(f"provider must be {', '.join(providers)} or all")
    plan = FaultPlan()
    for name in ("rate", "reset_rate", "lost_reply_rate"):
        value = body.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1")
        setattr(plan, name, float(value))
    if plan.rate + plan.reset_rate + plan.lost_reply_rate > 1:
        raise ValueError("rate, reset_rate and lost_reply_rate together must not exceed 1")
    statuses = body.get("statuses", plan.statuses)
    if (not isinstance(statuses, list) or not statuses
            or not all(isinstance(status, int) and status in INJECTABLE_STATUSES for status in statuses)):
        raise ValueError(f"statuses must be a non-empty list drawn from {sorted(INJECTABLE_STATUSES)}")
    plan.statuses = statuses
    for name in ("latency_ms", "count", "retry_after", "random_seed"):
        value = body.get(name, getattr(plan, name))
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer")
        setattr(plan, name, value)
    if plan.latency_ms is None:
        raise ValueError("latency_ms must be a non-negative integer")
    for name in ("expire_tokens", "after_write"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        setattr(plan, name, value)
    return list(providers) if provider == "all" else [provider], plan


class FaultInjector:
    """Hold one fault plan per provider and draw each request's fate from it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._plans: dict[str, FaultPlan] = {}
        self._random: dict[str, random.Random] = {}

    def configure(self, providers: list[str], plan: FaultPlan) -> None:
        """Give each provider a copy of `plan`, replacing what it had."""
        with self._lock:
            for provider in providers:
                self._plans[provider] = FaultPlan(**{**asdict(plan), "injected": 0})
                self._random[provider] = random.Random(plan.random_seed)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self._random.clear()

    def describe(self) -> dict[str, dict]:
        with self._lock:
            return {provider: asdict(plan) for provider, plan in self._plans.items()}

    def draw(self, provider: str) -> tuple[int, Fault | None, bool]:
        """Return the latency to add (ms), the fault to inject or None, and whether to
        inject it after the request was carried out rather than before."""
        with self._lock:
            plan = self._plans.get(provider)
            if plan is None:
                return 0, None, False
            if plan.exhausted():
                return plan.latency_ms, None, False
            fault, after_request = self._choose(plan, self._random[provider])
            if fault is not None:
                plan.injected += 1
            return plan.latency_ms, fault, plan.after_write or after_request

    @staticmethod
    def _choose(plan: FaultPlan, rng: random.Random) -> tuple[Fault | None, bool]:
        """Return the fault for one request, and whether it comes after the request is carried out."""
        if plan.expire_tokens:
            return Fault("expired_token", 401), False
        roll = rng.random()
        if roll < plan.reset_rate:
            return Fault("reset"), False
        if roll < plan.reset_rate + plan.rate:
            status = rng.choice(plan.statuses)
            return Fault("status", status, plan.retry_after if status == 429 else None), False
        if roll < plan.reset_rate + plan.rate + plan.lost_reply_rate:
            kind, status = rng.choice(LOST_REPLIES)
            return Fault(kind, status), True
        return None, False
