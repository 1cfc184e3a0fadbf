"""Request counts by provider, method and route template, for tests and benchmarks."""
from __future__ import annotations

import threading
from collections import Counter, defaultdict


class RequestStats:
    """Count every request that reaches an emulated API, whatever its outcome."""

    def __init__(self):
        self._lock = threading.Lock()
        self._routes: dict[str, Counter] = defaultdict(Counter)
        self._statuses: dict[str, Counter] = defaultdict(Counter)
        self._writes = 0

    def count_request(self, provider: str, route: str, *, write: bool) -> None:
        """Count one request to `route` ("METHOD /template"); `write` when it asks for a change."""
        with self._lock:
            self._routes[provider][route] += 1
            if write:
                self._writes += 1

    def count_response(self, provider: str, status: int | str) -> None:
        """Count one reply by status code ("reset" for a dropped connection)."""
        with self._lock:
            self._statuses[provider][str(status)] += 1

    def snapshot(self) -> dict:
        with self._lock:
            requests = {provider: dict(routes) for provider, routes in self._routes.items()}
            return {
                "requests": requests,
                "total": sum(sum(routes.values()) for routes in requests.values()),
                "writes": self._writes,
                "statuses": {provider: dict(statuses) for provider, statuses in self._statuses.items()},
            }

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._statuses.clear()
            self._writes = 0
