"""The rate budget: a sliding window and a concurrency cap shared across threads and processes."""
import multiprocessing
import threading
import time
import uuid

import pytest
from django.test import override_settings

from connections.ratelimit import BUCKETS, RateBudget

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit-tests"}}


class FakeClock:
    """A clock that only moves when the budget sleeps."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fake_budget(clock, **kwargs) -> RateBudget:
    return RateBudget(f"test-{uuid.uuid4()}", clock=clock, sleep=clock.sleep, **kwargs)


@pytest.fixture
def file_cache(tmp_path):
    caches = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}}
    with override_settings(CACHES=caches):
        yield


@override_settings(CACHES=LOCMEM)
def test_requests_within_the_limit_go_at_once():
    clock = FakeClock()
    budget = fake_budget(clock, requests=5, window_seconds=10)
    for _ in range(5):
        budget.acquire()
    assert clock.sleeps == []


@override_settings(CACHES=LOCMEM)
def test_the_request_over_the_limit_waits_until_the_oldest_leaves_the_window():
    clock = FakeClock()
    budget = fake_budget(clock, requests=5, window_seconds=10)
    for _ in range(5):
        budget.acquire()
    budget.acquire()
    # The five sit in the current one-second bucket, which counts for BUCKETS more.
    waited = sum(clock.sleeps)
    assert (BUCKETS + 1) - 1 <= waited <= (BUCKETS + 1) * 1.1


@override_settings(CACHES=LOCMEM)
def test_requests_spread_over_the_window_free_up_one_bucket_at_a_time():
    clock = FakeClock()
    budget = fake_budget(clock, requests=4, window_seconds=8)
    for _ in range(4):
        budget.acquire()
        clock.now += 1.0
    start = clock.now
    budget.acquire()
    # The oldest request's bucket leaves the 8 s window (plus one bucket) first.
    assert clock.now - start <= 8 * (1 + 1 / BUCKETS)
    assert len(clock.sleeps) >= 1


@override_settings(CACHES=LOCMEM)
def test_no_span_of_the_window_ever_holds_more_than_the_limit():
    clock = FakeClock()
    budget = fake_budget(clock, requests=7, window_seconds=5)
    times = []
    # Two windows' worth: the cache expires stale buckets in real time, which this
    # fake clock outruns if it goes on for longer.
    for _ in range(14):
        budget.acquire()
        times.append(clock.now)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 5) <= 7


@override_settings(CACHES=LOCMEM)
def test_hold_off_makes_every_holder_of_the_budget_wait():
    clock = FakeClock()
    budget = fake_budget(clock, requests=100, window_seconds=10)
    twin = RateBudget(budget.key, 100, 10, clock=clock, sleep=clock.sleep)
    budget.hold_off(7)
    twin.acquire()
    assert sum(clock.sleeps) >= 7


@override_settings(CACHES=LOCMEM)
def test_a_narrower_budget_has_its_own_rate_shared_by_every_holder_of_the_account():
    clock = FakeClock()
    account = fake_budget(clock, requests=100, window_seconds=10, max_concurrency=3)
    search = account.narrower("search", 2, 1)
    assert (search.key, search.requests, search.window_seconds, search.max_concurrency) == (
        f"{account.key}:search", 2, 1, None)
    search.acquire()
    account.narrower("search", 2, 1).acquire()
    assert clock.sleeps == []
    search.acquire()
    assert sum(clock.sleeps) >= 1
    # The account's own budget is untouched by the narrower one.
    before = len(clock.sleeps)
    account.acquire()
    assert len(clock.sleeps) == before


@override_settings(CACHES=LOCMEM)
def test_a_budget_without_a_rate_never_waits():
    clock = FakeClock()
    budget = fake_budget(clock)
    for _ in range(1000):
        budget.acquire()
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "kwargs",
    [{"requests": 5}, {"window_seconds": 5}, {"requests": 0, "window_seconds": 5}, {"requests": 5, "window_seconds": 0},
     {"max_concurrency": 0}],
)
def test_impossible_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        RateBudget("k", **kwargs)


def test_a_budget_needs_a_key():
    with pytest.raises(ValueError, match="key"):
        RateBudget("", 5, 5)


def hold_slots(budget: RateBudget, threads: int, hold_seconds: float) -> list[tuple[float, float]]:
    spans = []
    lock = threading.Lock()

    def work():
        with budget.slot():
            entered = time.monotonic()
            time.sleep(hold_seconds)
            with lock:
                spans.append((entered, time.monotonic()))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    return spans


def most_overlapping(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


@override_settings(CACHES=LOCMEM)
def test_threads_never_exceed_the_concurrency_cap():
    budget = RateBudget(f"test-{uuid.uuid4()}", max_concurrency=2)
    spans = hold_slots(budget, threads=6, hold_seconds=0.05)
    assert len(spans) == 6
    assert most_overlapping(spans) <= 2


@override_settings(CACHES=LOCMEM)
def test_a_slot_is_freed_when_the_block_raises():
    budget = RateBudget(f"test-{uuid.uuid4()}", max_concurrency=1)
    with pytest.raises(RuntimeError):
        with budget.slot():
            raise RuntimeError("request failed")
    with budget.slot():
        pass


@override_settings(CACHES=LOCMEM)
def test_a_slot_left_by_a_dead_holder_is_freed_when_its_lease_runs_out():
    budget = RateBudget(f"test-{uuid.uuid4()}", max_concurrency=1, lease_seconds=1)
    # Taken and never released, as by a process that was killed mid-request.
    budget._take_slot()
    started = time.monotonic()
    with budget.slot():
        pass
    assert 0.5 <= time.monotonic() - started < 5


def test_threads_share_the_budget_through_the_file_cache(file_cache):
    budget = RateBudget(f"test-{uuid.uuid4()}", requests=5, window_seconds=0.5)
    times = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            budget.acquire()
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(times) == 15
    assert max_in_any_span(times, MEASURED_SPAN) <= 5
    assert times[-1] - times[0] >= 2 * 0.5


# Shorter than the 0.5 s window: a timestamp is taken a moment after the budget admits
# the request, and a busy machine can stretch that moment.
MEASURED_SPAN = 0.4


def max_in_any_span(times: list[float], span: float) -> int:
    return max(sum(1 for t in times if start <= t < start + span) for start in times)


def acquire_in_process(key: str, count: int, results) -> None:
    budget = RateBudget(key, requests=5, window_seconds=0.5, max_concurrency=2)
    for _ in range(count):
        budget.acquire()
        admitted = time.time()
        with budget.slot():
            entered = time.time()
            time.sleep(0.01)
            results.put((admitted, entered, time.time()))


def test_two_processes_share_one_budget(file_cache):
    """Both limits hold across processes: the rate and the requests in flight."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    key = f"test-{uuid.uuid4()}"
    processes = [context.Process(target=acquire_in_process, args=(key, 8, results)) for _ in range(2)]
    started = time.time()
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=30) for _ in range(16)]
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    assert max_in_any_span([admitted for admitted, _, _ in outcomes], MEASURED_SPAN) <= 5
    assert most_overlapping([(entered, left) for _, entered, left in outcomes]) <= 2
    # 16 requests at 5 per 0.5 s cannot finish before three windows have passed.
    assert time.time() - started >= 1.4
