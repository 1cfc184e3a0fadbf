"""A per-connection rate budget and concurrency cap, shared by every worker and process.

The state lives in Django's cache, so every process that shares the cache shares the
budget: with Redis (settings.REDIS_URL) across machines, with the file cache across the
processes of one machine. Counters are updated with the backend's atomic operations
where it has them (Redis, memcached, the in-process memory cache); otherwise every
read-modify-write runs under an exclusive file lock, which serialises the processes of
one machine.

The rate is a sliding window made of `BUCKETS` buckets: a request is admitted when the
current bucket and the `BUCKETS` before it together hold fewer than the limit. Any span
of `window_seconds` touches at most that many buckets, so no span ever exceeds the
limit; the price is a window one bucket longer than published. (The bucket after the
current one is counted too, for workers whose clock reading lags a boundary.)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyLibMCCache, PyMemcacheCache
from django.core.cache.backends.redis import RedisCache

BUCKETS = 10
# Backends whose add() and incr() are atomic on their own.
_ATOMIC_BACKENDS = (RedisCache, PyMemcacheCache, PyLibMCCache, LocMemCache)
# How long to wait between tries for a concurrency slot: short at first, then longer.
_SLOT_POLL_FIRST = 0.02
_SLOT_POLL_MAX = 0.5


class RateBudget:
    """Admit at most `requests` per `window_seconds` and `max_concurrency` at once for `key`.

    Either limit may be None for "unlimited" (Mailchimp publishes no request rate).
    """

    def __init__(
        self,
        key: str,
        requests: int | None = None,
        window_seconds: float | None = None,
        max_concurrency: int | None = None,
        *,
        cache_alias: str = "default",
        lease_seconds: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        if not key:
            raise ValueError("A rate budget needs a key naming what it limits.")
        if (requests is None) != (window_seconds is None):
            raise ValueError("Give both requests and window_seconds, or neither.")
        if requests is not None and (requests < 1 or window_seconds <= 0):
            raise ValueError("A rate limit needs at least one request per positive window.")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1.")
        self.key = key
        self.requests = requests
        self.window_seconds = window_seconds
        self.max_concurrency = max_concurrency
        self.cache_alias = cache_alias
        # A slot held by a process that died is freed when its lease runs out; the lease
        # must outlast the longest request (connect plus read timeout).
        self.lease_seconds = lease_seconds
        self._sleep = sleep
        self._clock = clock
        self._prefix = f"ratebudget:{hashlib.sha256(key.encode()).hexdigest()[:24]}"
        if requests is not None:
            self._bucket_seconds = window_seconds / BUCKETS
            # Whole seconds: Redis expiries are integers.
            self._bucket_ttl = max(1, math.ceil((BUCKETS + 2) * self._bucket_seconds))
            # Bucket keys are reused round a ring; a stale key has expired before its
            # turn comes again (or before it is read as the next bucket), so the ring
            # needs two more positions than a ttl spans.
            self._ring = max(2 * (BUCKETS + 2), math.ceil(self._bucket_ttl / self._bucket_seconds) + 2)

    def __repr__(self) -> str:
        return f"RateBudget({self.key!r}, {self.requests}, {self.window_seconds}, {self.max_concurrency})"

    @property
    def _cache(self):
        return caches[self.cache_alias]

    def narrower(self, name: str, requests: int, window_seconds: float) -> RateBudget:
        """Return the budget of some of this account's endpoints that have a rate of their own.

        It is shared the same way (its key derives from this one's) and limits only the
        rate: requests keep holding this budget's concurrency slots.
        """
        return RateBudget(
            f"{self.key}:{name}",
            requests,
            window_seconds,
            cache_alias=self.cache_alias,
            lease_seconds=self.lease_seconds,
            sleep=self._sleep,
            clock=self._clock,
        )

    def acquire(self) -> None:
        """Block (sleeping) until a request may be sent within the rate limit."""
        while True:
            wait = self._hold_remaining()
            if wait <= 0:
                if self.requests is None:
                    return
                wait = self._try_take()
                if wait is None:
                    return
            # A little jitter so that waiting workers do not all wake at the same instant.
            self._sleep(wait * (1 + 0.1 * random.random()))

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `max_concurrency` in-flight slots while the block runs."""
        if self.max_concurrency is None:
            yield
            return
        key, token = self._take_slot()
        try:
            yield
        finally:
            self._release_slot(key, token)

    def hold_off(self, seconds: float) -> None:
        """Make every worker of this budget wait `seconds` (the provider said slow down)."""
        if seconds <= 0:
            return
        until = self._clock() + seconds
        key = f"{self._prefix}:hold"
        with self._atomic():
            current = self._cache.get(key)
            if current is None or current < until:
                self._cache.set(key, until, timeout=math.ceil(seconds) + 1)

    def _hold_remaining(self) -> float:
        until = self._cache.get(f"{self._prefix}:hold")
        return 0.0 if until is None else until - self._clock()

    def _bucket_key(self, index: int) -> str:
        return f"{self._prefix}:b{index % self._ring}"

    def _try_take(self) -> float | None:
        """Take a request from the window; return None, or the seconds to wait first."""
        with self._atomic():
            # Read the clock only once the lock is held: a worker that waited for it
            # across a bucket boundary must count in the bucket that is current now.
            now = self._clock()
            current = int(now // self._bucket_seconds)
            # The bucket after the current one too: on lock-free backends a worker a
            # moment behind must still see what the others already counted there.
            others = [i for i in range(current - BUCKETS, current + 2) if i != current]
            mine = self._increment(self._bucket_key(current), 1)
            counts = self._cache.get_many([self._bucket_key(i) for i in others])
            used = mine + sum(counts.values())
            if used <= self.requests:
                return None
            self._increment(self._bucket_key(current), -1)
        # Full: wait until the oldest bucket still holding requests leaves the window.
        by_index = {i: counts.get(self._bucket_key(i), 0) for i in others} | {current: mine - 1}
        oldest = min((i for i, count in by_index.items() if count > 0), default=current)
        return max((oldest + BUCKETS + 1) * self._bucket_seconds - now, self._bucket_seconds / 10)

    def _increment(self, key: str, delta: int) -> int:
        cache = self._cache
        if isinstance(cache, _ATOMIC_BACKENDS):
            cache.add(key, 0, timeout=self._bucket_ttl)
            try:
                return cache.incr(key, delta)
            except ValueError:
                # Expired between add() and incr(): start the bucket again.
                cache.add(key, 0, timeout=self._bucket_ttl)
                return cache.incr(key, delta)
        # Under the file lock (see _atomic): a plain read and write is safe here.
        value = cache.get(key, 0) + delta
        cache.set(key, value, timeout=self._bucket_ttl)
        return value

    def _take_slot(self) -> tuple[str, str]:
        """Block (sleeping) until a concurrency slot is free; return its key and our token."""
        token = uuid.uuid4().hex
        poll = _SLOT_POLL_FIRST
        while True:
            # Start at a random slot so that waiting workers do not all try the same one.
            first = random.randrange(self.max_concurrency)
            for offset in range(self.max_concurrency):
                key = f"{self._prefix}:s{(first + offset) % self.max_concurrency}"
                with self._atomic():
                    if self._cache.add(key, token, timeout=math.ceil(self.lease_seconds)):
                        return key, token
            self._sleep(poll * (1 + random.random()))
            poll = min(poll * 2, _SLOT_POLL_MAX)

    def _release_slot(self, key: str, token: str) -> None:
        with self._atomic():
            # After an expired lease the slot may be someone else's now: leave it to them.
            if self._cache.get(key) == token:
                self._cache.delete(key)

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        if isinstance(self._cache, _ATOMIC_BACKENDS):
            yield
            return
        # flock() on a file opened for this call excludes other processes and, because
        # each call opens its own file description, other threads of this process too.
        with open(self._lock_path(), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _lock_path(self) -> Path:
        cache = self._cache
        directory = (Path(cache._dir) if isinstance(cache, FileBasedCache)
                     else Path(tempfile.gettempdir()) / "syncapp-ratelimit")
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{self._prefix.replace(':', '-')}.lock"
