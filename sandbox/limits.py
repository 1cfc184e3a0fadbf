"""The providers' published limits: rolling request budgets (HubSpot's, ActiveCampaign's),
connection caps (Mailchimp's)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Admission:
    """Whether one request may go on, and what is left of the budget after it."""

    allowed: bool
    policy: str = ""
    limit: int = 0
    remaining: int = 0
    daily_limit: int = 0
    daily_remaining: int = 0


class RollingWindowLimit:
    """Allow `limit` requests per key in any `window_seconds`, and `daily_limit` per UTC day.

    A `limit` of 0 turns the rolling window off (the daily cap still counts); a
    `daily_limit` of None means no daily cap. Refused requests do not use up budget.
    `policy` names the window in refusals, as HubSpot's 429s do.
    """

    def __init__(self, limit: int, *, window_seconds: float = 10.0, daily_limit: int | None = 650_000,
                 policy: str = "TEN_SECONDLY_ROLLING"):
        self.limit = limit
        self.window_seconds = window_seconds
        self.daily_limit = daily_limit
        self.policy = policy
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._daily: dict[tuple[str, str], int] = defaultdict(int)

    def configure(self, limit: int) -> None:
        """Set a new limit and forget past requests."""
        with self._lock:
            self.limit = limit
            self._recent.clear()
            self._daily.clear()

    def admit(self, key: str) -> Admission:
        now = time.monotonic()
        day = self._day(key)
        daily_limit = self.daily_limit or 0
        with self._lock:
            used_today = self._daily[day]
            if self.daily_limit is not None and used_today >= self.daily_limit:
                return Admission(False, "DAILY", self.limit, 0, daily_limit, 0)
            recent = self._recent[key]
            while recent and recent[0] <= now - self.window_seconds:
                recent.popleft()
            if self.limit and len(recent) >= self.limit:
                return Admission(False, self.policy, self.limit, 0, daily_limit,
                                 max(0, daily_limit - used_today))
            if self.limit:
                recent.append(now)
            self._daily[day] = used_today + 1
            return Admission(True, "", self.limit, self.limit - len(recent), daily_limit,
                             max(0, daily_limit - used_today - 1))

    def retry_after(self, key: str) -> float:
        """Return the seconds until the rolling window admits `key` again (0 when it does now)."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent[key]
            while recent and recent[0] <= now - self.window_seconds:
                recent.popleft()
            if not self.limit or len(recent) < self.limit:
                return 0.0
            # The window frees up as its oldest entries expire.
            return max(0.0, recent[len(recent) - self.limit] + self.window_seconds - now)

    def refund(self, key: str) -> None:
        """Give back the budget of a request admitted here but refused by another limit."""
        with self._lock:
            recent = self._recent[key]
            if self.limit and recent:
                # The newest entry stands for it: entries differ only by when they expire.
                recent.pop()
            day = self._day(key)
            if self._daily[day]:
                self._daily[day] -= 1

    @staticmethod
    def _day(key: str) -> tuple[str, str]:
        return key, datetime.now(UTC).date().isoformat()


class ConcurrencyLimit:
    """Allow at most `limit` requests in flight per key at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = defaultdict(int)

    def configure(self, limit: int) -> None:
        with self._lock:
            self.limit = limit

    def acquire(self, key: str) -> bool:
        """Take a slot for `key`; False when all are taken (nothing to release then)."""
        with self._lock:
            if self.limit and self._in_flight[key] >= self.limit:
                return False
            self._in_flight[key] += 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] -= 1
