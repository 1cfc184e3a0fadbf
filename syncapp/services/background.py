"""Reading ahead: fetch the next page over HTTP while the current one is written."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

from django.db import connections

T = TypeVar("T")

_END = object()
# How long a stopped consumer waits for the reader thread before leaving it behind.
_JOIN_SECONDS = 5.0


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator[T], *, ahead: int = 1) -> Iterator[T]:
    """Yield the items of `items`, producing up to `ahead` of them in a background thread.

    The producer's exceptions are raised in the consumer, where the item would have
    been. Closing the returned generator early stops the producer after its current item.
    """
    buffer: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # noqa: BLE001 - handed over to the consumer
            offer(_Failure(error))
        finally:
            # Providers may touch the database (token refresh); release this thread's
            # connections rather than leaking one per run.
            connections.close_all()

    thread = threading.Thread(target=produce, name="syncapp-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(_JOIN_SECONDS)
