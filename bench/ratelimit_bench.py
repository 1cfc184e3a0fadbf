"""What the client rate budget costs per request, against a no-op budget measured in the same run.

Every request a provider client sends first calls `budget.acquire()` and then holds
`budget.slot()` while it is on the wire (connections/http.py). This times that pair, as
the HTTP layer calls it, for the budgets Syncapp builds (connections/registry.py), on
the cache of the default settings (Django's file cache, in a fresh directory) and kept
in the process:

- HubSpot's published rate, 190 requests per 10 s, no concurrency cap;
- Mailchimp's 10 simultaneous connections, no rate;
- limits lifted as the benchmarks lift them (bench/sync_bench.py: 1,000,000 requests
  per 10 s), and a budget not kept at all (the connection's "rate budget" set to none);

each kept by every process through the cache (`shared`, the default) and in this process
alone (`process`, for a connection only one process uses). The baseline is a budget whose
acquire and slot do nothing. A limit is never reached here: each measurement takes fewer
requests than the rate allows, on a budget of its own, so what is timed is the
bookkeeping, not waiting. For scale, it also times a request over loopback to a
minimal HTTP server in this process (`requests`, as the clients send them), and prints
each budget's cost as a share of that request.

    python bench/ratelimit_bench.py [--requests 150] [--requests-unlimited 2000] [--repeats 30]

Budgets with a published rate are measured over `--requests` (fewer than the rate
allows), the others over `--requests-unlimited`, each from a fresh budget, so a lease's
first blocks, which are small, are in the figure. It prints microseconds per request
(the median over the repeats), the ratio to the baseline, and the share of the loopback
request. With `--threads N` the same requests are spread over N threads sharing one
budget, as the read-ahead thread and the push threads share a connection's.
"""
from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

CACHE_DIR = tempfile.mkdtemp(prefix="ratelimit-bench-")
settings.configure(CACHES={"default": {
    "BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": CACHE_DIR,
    # As syncapp/settings/base.py has it.
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}})
django.setup()

from connections.ratelimit import RateBudget  # noqa: E402

# (label, requests, window seconds, max concurrency, measured over: "limited" or "unlimited" requests)
BUDGETS = (
    ("HubSpot 190 per 10 s", 190, 10, None, "limited"),
    ("Mailchimp 10 connections", None, None, 10, "unlimited"),
    ("lifted: 1,000,000 per 10 s", 1_000_000, 10, None, "unlimited"),
)
SCOPES = ("shared", "process")


class NoBudget:
    """The baseline: a budget that admits everything at once and keeps nothing."""

    def acquire(self) -> None:
        return None

    def slot(self):
        return contextlib.nullcontext()


def supported_scopes() -> tuple[str, ...]:
    """The scopes this version of RateBudget knows (an older one keeps every budget in the cache)."""
    return tuple(getattr(RateBudget, "SCOPES", ("shared",)))


def one_request(budget) -> None:
    """What HttpClient._send does around a request, without the request."""
    budget.acquire()
    with budget.slot():
        pass


def timed(make_budget, requests: int, threads: int) -> float:
    """Return the seconds `requests` acquire-and-slot pairs take on a fresh budget, spread over `threads`."""
    budget = make_budget()
    per_thread = requests // threads
    start = threading.Barrier(threads + 1)

    def work():
        start.wait()
        for _ in range(per_thread):
            one_request(budget)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - began) / (per_thread * threads)


def median_micros(make_budget, *, requests: int, repeats: int, threads: int) -> float:
    return statistics.median(timed(make_budget, requests, threads) for _ in range(repeats)) * 1e6


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK would add 40 ms to every request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):  # noqa: N802 - the name http.server dispatches to
        body = b'{"results": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def loopback_request_micros(*, requests_per_repeat: int, repeats: int) -> float:
    """Return the median microseconds of a GET over loopback with a kept-alive session."""
    import requests

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/things"
    session = requests.Session()
    try:
        session.get(url, timeout=5)
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(requests_per_repeat):
                session.get(url, timeout=5)
            runs.append((time.perf_counter() - began) / requests_per_repeat)
        return statistics.median(runs) * 1e6
    finally:
        session.close()
        server.shutdown()
        server.server_close()


def budget_maker(requests, window, concurrency, scope):
    def make():
        options = {} if scope == "shared" else {"scope": scope}
        # A key of its own each time: no measurement inherits another's counts.
        return RateBudget(f"bench-{uuid.uuid4()}", requests, window, concurrency, **options)
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150,
                        help="requests per measurement, below HubSpot's 190 per 10 s (default 150)")
    parser.add_argument("--requests-unlimited", type=int, default=2000,
                        help="requests per measurement for budgets without a rate to reach (default 2,000)")
    parser.add_argument("--repeats", type=int, default=30, help="measurements per budget; the median is shown")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing each budget (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()

    print("machine:", platform.processor() or platform.machine(), f"{os.cpu_count()} cores,",
          "python", platform.python_version(), "load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"median of {options.repeats} measurements, {options.threads} thread(s); file cache in {CACHE_DIR}")
    counts = {"limited": options.requests, "unlimited": options.requests_unlimited}
    baseline = median_micros(NoBudget, requests=options.requests, repeats=options.repeats, threads=options.threads)
    request = loopback_request_micros(requests_per_repeat=options.requests, repeats=max(3, options.repeats // 3))
    figures = [{"budget": "no-op (baseline)", "scope": "", "requests": options.requests, "micros": baseline,
                "ratio": 1.0, "of_request": baseline / request}]
    cases = [(label, requests, window, concurrency, measured, scope)
             for label, requests, window, concurrency, measured in BUDGETS for scope in supported_scopes()
             if scope != "none"]
    if "none" in supported_scopes():
        cases.append(("not kept (rate budget: none)", None, None, 10, "unlimited", "none"))
    for label, requests, window, concurrency, measured, scope in cases:
        micros = median_micros(budget_maker(requests, window, concurrency, scope), requests=counts[measured],
                               repeats=options.repeats, threads=options.threads)
        figures.append({"budget": label, "scope": scope, "requests": counts[measured], "micros": micros,
                        "ratio": micros / baseline, "of_request": micros / request})
    print(f"a GET over loopback: {request:.1f} us")
    print(f"{'budget':<32} {'kept':<8} {'requests':>8} {'us/request':>11} {'x no-op':>9} {'of a GET':>9}")
    for row in figures:
        print(f"{row['budget']:<32} {row['scope']:<8} {row['requests']:>8} {row['micros']:>11.2f} "
              f"{row['ratio']:>9.1f} {100 * row['of_request']:>8.1f}%")
    print("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if options.json:
        options.json.write_text(json.dumps({"loopback_get_micros": request, "budgets": figures}, indent=2))


if __name__ == "__main__":
    main()
