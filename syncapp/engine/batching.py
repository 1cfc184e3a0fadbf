"""Cutting pending work into the batches a provider accepts, and tidying read pages."""
from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def batch_size(provider_max: int, requested: int | None = None) -> int:
    """Return the records per write call: the sync's size when set, capped by the provider.

    An unset or zero request means the provider's maximum: fewer, fuller calls.
    """
    if provider_max < 1:
        raise ValueError(f"a provider's maximum batch must be at least 1, not {provider_max}")
    if not requested:
        return provider_max
    return min(requested, provider_max)


def push_group_size(provider_max: int, provider_group: int | None, requested: int | None = None) -> int:
    """Return the records per `upsert_batch`: the sync's size when set, else the provider's group.

    A provider's group spans several of its write calls (see Provider.push_group). A
    size the marketer chose is the records per write call, so it is kept as it is.
    """
    if requested:
        return batch_size(provider_max, requested)
    return max(batch_size(provider_max), provider_group or 0)


def json_size(item: Any) -> int:
    """Return the size in bytes of `item` as compact UTF-8 JSON."""
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))


def chunk(
    items: Iterable[T],
    *,
    max_items: int,
    max_bytes: int | None = None,
    size_of: Callable[[T], int] = json_size,
) -> Iterator[list[T]]:
    """Yield consecutive batches of at most `max_items` items and `max_bytes` bytes.

    An item larger than `max_bytes` on its own travels alone: the provider, not the
    batcher, then says whether it is acceptable, and the error names that one record.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, not {max_items}")
    batch: list[T] = []
    batch_bytes = 0
    for item in items:
        size = size_of(item) if max_bytes is not None else 0
        too_big = max_bytes is not None and batch and batch_bytes + size > max_bytes
        if len(batch) == max_items or too_big:
            yield batch
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += size
    if batch:
        yield batch


def latest_per_key(items: Sequence[T], key: Callable[[T], Hashable]) -> list[T]:
    """Return one item per key, the last occurrence winning, in order of last occurrence.

    Delta windows overlap on purpose so that nothing is missed, so a page may repeat a
    record; the later copy is the newer one.
    """
    latest = {key(item): index for index, item in enumerate(items)}
    return [items[index] for index in sorted(latest.values())]
