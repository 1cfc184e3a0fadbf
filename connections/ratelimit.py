"""A per-connection rate budget and concurrency cap, shared by every worker and process.

Where a budget is kept (`scope`):
- `shared` (the default): where every process that shares Django's cache shares it. With
  a cache whose counters are atomic (Redis, settings.REDIS_URL, across machines;
  memcached; the in-process memory cache), in that cache. With the file cache (the
  processes of one machine), in a small file per budget beside the cache's files, read
  and replaced under an exclusive file lock that serialises those processes; there a
  concurrency slot is an exclusive lock on a file, which the kernel frees when its
  process dies. A process takes requests from the shared window a block at a time (a
  lease) and hands them to its threads from memory: a block costs one round trip to the
  shared state, not one per request (`RateBudget._lease`).
- `process`: in this process's memory alone, for a connection that only one process
  uses: no cache round trip at all (two processes would each allow the whole budget).
- `none`: not kept. The provider's own replies (429 with Retry-After, or backoff) pace
  the requests; a hold-off they ask for still holds this process's requests back.

The rate is a sliding window made of `BUCKETS` buckets: a request is admitted when the
current bucket and the `BUCKETS` before it together hold fewer than the limit. Any span
of `window_seconds` touches at most that many buckets, so no span ever exceeds the
limit; the price is a window one bucket longer than published. (The bucket after the
current one is counted too, for workers whose clock reading lags a boundary.) A leased
request is counted in the bucket it was leased in, and is sent only while that bucket is
the current one; what a lease left unsent when its bucket ended is taken off that
bucket's count by the process's next lease, while the bucket is still in the window.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyLibMCCache, PyMemcacheCache
from django.core.cache.backends.redis import RedisCache

BUCKETS = 10
SCOPES = ("shared", "process", "none")
# The most requests one lease takes from a shared window; smaller for small limits (see
# RateBudget.__init__), so that what leases hold unsent is never much of the window.
LEASE_MAX = 1000
# Without a rate, a shared budget still honours a hold-off another process set after a
# 429: this process reads it at most this often.
HOLD_READ_SECONDS = 1.0
# Backends whose add() and incr() are atomic on their own.
_ATOMIC_BACKENDS = (RedisCache, PyMemcacheCache, PyLibMCCache, LocMemCache)
# How long to wait between tries for a concurrency slot: short at first, then longer.
_SLOT_POLL_FIRST = 0.02
_SLOT_POLL_MAX = 0.5


# A file-kept window is a few hundred bytes: the hold and a dozen bucket counts.
_WINDOW_FILE_MAX = 65536


def _window_parse(raw: bytes) -> dict | None:
    """Return a file-kept window, empty for an empty file; None when it cannot be read (see _window_file)."""
    if not raw:
        return {"hold": None, "counts": {}}
    try:
        stored = json.loads(raw)
        return {"hold": stored["hold"], "counts": {int(index): int(count) for index, count in stored["counts"].items()}}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _Kept:
    """What one process keeps of one budget: its lease and hold-off; for `process` scope, the budget itself."""

    def __init__(self, max_concurrency: int | None):
        self.lock = threading.Lock()
        # The bucket the leased requests are counted in, how many are left to send, and
        # how many this process sent in that bucket (the next lease is sized by it).
        self.lease_bucket: int | None = None
        self.leased = 0
        self.sent_in_bucket = 0
        self.hold_until = 0.0
        self.hold_read_at = -math.inf
        # `process` scope: requests per bucket, and the concurrency slots.
        self.counts: dict[int, int] = {}
        self.slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None


_kept: dict[tuple, _Kept] = {}
_kept_lock = threading.Lock()
_kept_pid = os.getpid()


def _kept_for(key: tuple, max_concurrency: int | None) -> _Kept:
    """Return this process's state of a budget, one for every RateBudget of that key in the process."""
    global _kept_pid
    with _kept_lock:
        if _kept_pid != os.getpid():
            # A forked child starts afresh: what its parent leased is the parent's to send.
            _kept.clear()
            _kept_pid = os.getpid()
        kept = _kept.get(key)
        if kept is None:
            kept = _kept[key] = _Kept(max_concurrency)
        return kept


class RateBudget:
    """Admit at most `requests` per `window_seconds` and `max_concurrency` at once for `key`.

    Either limit may be None for "unlimited" (Mailchimp publishes no request rate).
    `scope` says where the budget is kept: "shared", "process" or "none" (see above).
    """

    SCOPES = SCOPES

    def __init__(
        self,
        key: str,
        requests: int | None = None,
        window_seconds: float | None = None,
        max_concurrency: int | None = None,
        *,
        scope: str = "shared",
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
        if scope not in SCOPES:
            raise ValueError(f"A rate budget is kept {', '.join(SCOPES)}; not {scope!r}.")
        self.key = key
        self.requests = requests
        self.window_seconds = window_seconds
        self.max_concurrency = max_concurrency
        self.scope = scope
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
            # At most a twenty-second of the limit per lease: however many processes
            # hold one, what they hold unsent stays a small part of the window.
            self._lease_max = max(1, min(LEASE_MAX, requests // (2 * (BUCKETS + 1))))
        self._kept_key = (scope, cache_alias, self._prefix, requests, window_seconds, max_concurrency)
        self._kept_state: _Kept | None = None
        self._kept_pid = 0
        self._paths: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return (f"RateBudget({self.key!r}, {self.requests}, {self.window_seconds}, {self.max_concurrency}, "
                f"scope={self.scope!r})")

    @property
    def _cache(self):
        return caches[self.cache_alias]

    @property
    def _kept(self) -> _Kept:
        if self._kept_pid != os.getpid():
            self._kept_state = _kept_for(self._kept_key, self.max_concurrency)
            self._kept_pid = os.getpid()
        return self._kept_state

    def narrower(self, name: str, requests: int, window_seconds: float) -> RateBudget:
        """Return the budget of some of this account's endpoints that have a rate of their own.

        It is kept the same way (its key derives from this one's) and limits only the
        rate: requests keep holding this budget's concurrency slots.
        """
        return RateBudget(
            f"{self.key}:{name}",
            requests,
            window_seconds,
            scope=self.scope,
            cache_alias=self.cache_alias,
            lease_seconds=self.lease_seconds,
            sleep=self._sleep,
            clock=self._clock,
        )

    def acquire(self) -> None:
        """Block (sleeping) until a request may be sent within the rate limit."""
        while True:
            wait = self._take()
            if wait is None:
                return
            # A little jitter so that waiting workers do not all wake at the same instant.
            self._sleep(wait * (1 + 0.1 * random.random()))

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `max_concurrency` in-flight slots while the block runs."""
        if self.max_concurrency is None or self.scope == "none":
            yield
            return
        if self.scope == "process":
            with self._kept.slots:
                yield
            return
        if not isinstance(self._cache, _ATOMIC_BACKENDS):
            held = self._take_file_slot()
            try:
                yield
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)
                held.close()
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
        kept = self._kept
        with kept.lock:
            kept.hold_until = max(kept.hold_until, until)
        if self.scope != "shared":
            return
        if not isinstance(self._cache, _ATOMIC_BACKENDS):
            with self._window_file() as (window, save):
                if window is None:
                    # Unreadable (see _window_file): the hold is what it can still say.
                    window = {"hold": None, "counts": {}} if self.requests is None else {
                        "hold": None, "counts": {int(self._clock() // self._bucket_seconds): self.requests}}
                if window["hold"] is None or window["hold"] < until:
                    save({**window, "hold": until})
            return
        key = f"{self._prefix}:hold"
        with self._atomic():
            current = self._cache.get(key)
            if current is None or current < until:
                self._cache.set(key, until, timeout=math.ceil(seconds) + 1)

    def _take(self) -> float | None:
        """Take a request; return None, or the seconds to wait before trying again."""
        kept = self._kept
        with kept.lock:
            now = self._clock()
            if kept.hold_until > now:
                return kept.hold_until - now
            if self.scope == "none":
                return None
            if self.requests is None:
                return self._held_elsewhere(kept, now) if self.scope == "shared" else None
            current = int(now // self._bucket_seconds)
            if kept.lease_bucket == current and kept.leased > 0:
                kept.leased -= 1
                kept.sent_in_bucket += 1
                return None
            if self.scope == "process":
                return self._take_in_process(kept, now, current)
            return self._lease(kept)

    def _held_elsewhere(self, kept: _Kept, now: float) -> float | None:
        """Return the wait a hold-off set by another process asks for; read at most every HOLD_READ_SECONDS."""
        if now - kept.hold_read_at < HOLD_READ_SECONDS:
            return None
        kept.hold_read_at = now
        if isinstance(self._cache, _ATOMIC_BACKENDS):
            until = self._cache.get(f"{self._prefix}:hold")
        else:
            # Read without the lock: a window being rewritten reads as unreadable, and
            # the hold is read again within the second.
            try:
                with open(self._lock_path("window"), "rb") as kept_file:
                    window = _window_parse(kept_file.read(_WINDOW_FILE_MAX))
            except FileNotFoundError:
                window = None
            until = window["hold"] if window is not None else None
        if until is None or until <= now:
            return None
        kept.hold_until = until
        return until - now

    def _take_in_process(self, kept: _Kept, now: float, current: int) -> float | None:
        """Take a request from the window kept in this process's memory (kept.lock is held)."""
        for index in [index for index in kept.counts if index < current - BUCKETS]:
            del kept.counts[index]
        if sum(kept.counts.values()) < self.requests:
            kept.counts[current] = kept.counts.get(current, 0) + 1
            return None
        oldest = min(index for index, count in kept.counts.items() if count > 0)
        return max((oldest + BUCKETS + 1) * self._bucket_seconds - now, self._bucket_seconds / 10)

    def _lease(self, kept: _Kept) -> float | None:
        """Lease a block of requests from the shared window and take the first; or return the seconds to wait.

        The block doubles with what this process sent in the bucket so far, up to the
        lease's maximum: a process sending little leases one request at a time and holds
        none unsent. kept.lock is held, so the process's other threads wait for this
        lease instead of taking their own.

        On lock-free backends every process counts its block first and then reads the
        others' buckets; it keeps only what fits under the limit in what it read and
        gives the rest back. What it read includes every block counted before its own,
        whole or as kept, so the blocks kept never add up to more than the limit.
        """
        if not isinstance(self._cache, _ATOMIC_BACKENDS):
            return self._lease_from_file(kept)
        with self._atomic():
            # Read the clock only once the lock is held: a worker that waited for it
            # across a bucket boundary must count in the bucket that is current now.
            now = self._clock()
            current = int(now // self._bucket_seconds)
            if kept.lease_bucket != current:
                self._give_back(kept, current)
                kept.lease_bucket, kept.sent_in_bucket = current, 0
            block = min(self._lease_max, max(1, kept.sent_in_bucket))
            # The bucket after the current one too: on lock-free backends a worker a
            # moment behind must still see what the others already counted there.
            others = [i for i in range(current - BUCKETS, current + 2) if i != current]
            hold_key = f"{self._prefix}:hold"
            mine = self._increment(self._bucket_key(current), block)
            counts = self._cache.get_many([hold_key, *(self._bucket_key(i) for i in others)])
            until = counts.pop(hold_key, None)
            held = until is not None and until > now
            granted = 0 if held else max(0, block - max(0, mine + sum(counts.values()) - self.requests))
            if granted < block:
                self._increment(self._bucket_key(current), granted - block)
        by_index = {i: counts.get(self._bucket_key(i), 0) for i in others} | {current: mine - block}
        return self._leased(kept, until=until if held else None, granted=granted, counts=by_index, current=current,
                            now=now)

    def _lease_from_file(self, kept: _Kept) -> float | None:
        """`_lease` for the file cache: the window is one small file, read and rewritten under its lock."""
        with self._window_file() as (window, save):
            now = self._clock()
            current = int(now // self._bucket_seconds)
            counts = window["counts"] if window is not None else {current: self.requests}
            # Buckets ahead of the current one stay counted: a worker whose clock leads
            # ours counted there.
            counts = {index: count for index, count in counts.items() if index >= current - BUCKETS}
            if kept.lease_bucket != current:
                if kept.leased and kept.lease_bucket in counts:
                    counts[kept.lease_bucket] = max(0, counts[kept.lease_bucket] - kept.leased)
                kept.leased, kept.lease_bucket, kept.sent_in_bucket = 0, current, 0
            until = window["hold"] if window is not None else None
            held = until is not None and until > now
            block = min(self._lease_max, max(1, kept.sent_in_bucket))
            granted = 0 if held else max(0, min(block, self.requests - sum(counts.values())))
            counts[current] = counts.get(current, 0) + granted
            save({"hold": until, "counts": counts})
        return self._leased(kept, until=until if held else None, granted=granted, counts=counts, current=current,
                            now=now)

    def _leased(self, kept: _Kept, *, until: float | None, granted: int, counts: dict[int, int], current: int,
                now: float) -> float | None:
        """Finish a lease: None when `granted` requests (one of them this one) were taken, else the seconds to wait.

        `until`: the hold after a 429 in force, if any; `counts`: the window's requests by bucket.
        """
        if until is not None:
            kept.hold_until = until
            return until - now
        if granted:
            kept.leased = granted - 1
            kept.sent_in_bucket += 1
            return None
        # Full: wait until the oldest bucket still holding requests leaves the window.
        oldest = min((index for index, count in counts.items() if count > 0), default=current)
        return max((oldest + BUCKETS + 1) * self._bucket_seconds - now, self._bucket_seconds / 10)

    @contextlib.contextmanager
    def _window_file(self) -> Iterator[tuple[dict | None, Callable[[dict], None]]]:
        """Hold the file-kept window's exclusive lock; yield what it holds and a function that rewrites it.

        What it holds is {"hold": until or None, "counts": {bucket: requests}}, or None
        when it cannot be read: only a process that died in the middle of rewriting it
        leaves it so, and the lease then takes the window as full, for one window.
        Rewritten in place, not replaced by a rename: on ext4 a rename over a file
        waits for its data to reach the disk, milliseconds a lease.
        """
        descriptor = os.open(self._lock_path("window"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            window = _window_parse(os.pread(descriptor, _WINDOW_FILE_MAX, 0))

            def save(changed: dict) -> None:
                data = json.dumps({"hold": changed["hold"], "counts": changed["counts"]}).encode()
                os.pwrite(descriptor, data, 0)
                os.ftruncate(descriptor, len(data))

            yield window, save
        finally:
            # Closing the descriptor releases the lock.
            os.close(descriptor)

    def _give_back(self, kept: _Kept, current: int) -> None:
        """Take what the last lease left unsent off its bucket's count, while that bucket is in the window.

        For the cache-kept window (`_lease_from_file` does it for the file-kept one). A
        bucket still in the window is younger than its key's time to live by a bucket at
        least, so the key is there to be lowered: a count is never recreated below zero.
        """
        unsent, bucket = kept.leased, kept.lease_bucket
        kept.leased = 0
        if not unsent or bucket is None or bucket < current - BUCKETS:
            return
        with contextlib.suppress(ValueError):
            self._cache.decr(self._bucket_key(bucket), unsent)

    def _bucket_key(self, index: int) -> str:
        return f"{self._prefix}:b{index % self._ring}"

    def _increment(self, key: str, delta: int) -> int:
        cache = self._cache
        cache.add(key, 0, timeout=self._bucket_ttl)
        try:
            return cache.incr(key, delta)
        except ValueError:
            # Expired between add() and incr(): start the bucket again.
            cache.add(key, 0, timeout=self._bucket_ttl)
            return cache.incr(key, delta)

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

    def _take_file_slot(self):
        """Block (sleeping) until one of the slot files can be locked; return it, locked.

        Where the cache is one machine's (the file cache), a slot is an exclusive lock on
        a file beside the rate lock: two system calls instead of cache writes, and the
        kernel frees the slot of a process that dies at once, without waiting for a lease.
        Each take opens its own file description, so threads exclude each other too.
        """
        poll = _SLOT_POLL_FIRST
        while True:
            first = random.randrange(self.max_concurrency)
            for offset in range(self.max_concurrency):
                handle = open(self._lock_path(f"s{(first + offset) % self.max_concurrency}"), "a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                return handle
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

    def _lock_path(self, suffix: str = "") -> str:
        """Return the path of this budget's lock file (or of its file-kept window: suffix "window")."""
        cache = self._cache
        directory = (cache._dir if isinstance(cache, FileBasedCache)
                     else os.path.join(tempfile.gettempdir(), "syncapp-ratelimit"))
        path = self._paths.get((directory, suffix))
        if path is None:
            # Made once per budget and directory: a lease must not cost a mkdir.
            os.makedirs(directory, exist_ok=True)
            name = f"{self._prefix.replace(':', '-')}{'-' + suffix if suffix else ''}.lock"
            path = self._paths[(directory, suffix)] = os.path.join(directory, name)
        return path
