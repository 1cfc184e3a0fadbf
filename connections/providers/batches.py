"""Send batches so that a refused or repeated record does not take the others down with it.

Some batch endpoints refuse a whole call when one input is bad (HubSpot answers 400 to a
batch holding one invalid email). `isolate_rejections` takes the inputs the error names
out of the batch and sends the rest again; when the error names none, it splits the
batch in halves, until every acceptable input has been sent and every refused one has
its own error. `split_repeats` keeps two inputs for the same record out of one call.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from connections.providers.base import ProviderError

Item = TypeVar("Item")
Reply = TypeVar("Reply")

# Replies that refuse the content of a call (bad request, conflict, too large,
# unprocessable), as opposed to the credentials or the service's health.
REJECTION_STATUSES = frozenset({400, 409, 413, 422})


class Isolated(Generic[Item, Reply]):
    """What a batch became: the calls that went through and the inputs refused."""

    def __init__(self) -> None:
        self.accepted: list[tuple[list[Item], Reply]] = []
        self.rejected: list[tuple[Item, ProviderError]] = []


def isolate_rejections(
    items: Sequence[Item],
    send: Callable[[list[Item]], Reply],
    *,
    blamed: Callable[[ProviderError, Item], bool] = lambda error, item: False,
) -> Isolated[Item, Reply]:
    """Send `items` with `send`, taking out the ones the provider refuses.

    `blamed(error, item)` tells whether an error names that input. Errors other than a
    refusal of the content (authentication, exhausted retries) propagate.
    """
    outcome: Isolated[Item, Reply] = Isolated()
    pending = [list(items)] if items else []
    while pending:
        group = pending.pop()
        try:
            outcome.accepted.append((group, send(group)))
        except ProviderError as error:
            if error.status not in REJECTION_STATUSES:
                raise
            if len(group) == 1:
                outcome.rejected.append((group[0], error))
                continue
            named = [item for item in group if blamed(error, item)]
            if named:
                outcome.rejected.extend((item, error) for item in named)
                rest = [item for item in group if not any(item is other for other in named)]
                if rest:
                    pending.append(rest)
            else:
                middle = len(group) // 2
                pending += [group[middle:], group[:middle]]
    return outcome


def mentions_email(text: str, email: str) -> bool:
    """Return whether `text` names `email` as a whole address (case-insensitive)."""
    if not email:
        return False
    pattern = r"(?<![\w.+-])" + re.escape(email) + r"(?![\w-]|\.\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def split_repeats(
    items: Sequence[Item], key: Callable[[Item], Hashable], *, max_items: int | None = None
) -> list[list[Item]]:
    """Split `items` into as few calls as possible in which no key appears twice, in order.

    With `max_items`, no call holds more than that (the provider's batch maximum).
    """
    calls: list[list[Item]] = []
    keys_per_call: list[set] = []
    for item in items:
        item_key = key(item)
        for call, keys in zip(calls, keys_per_call, strict=True):
            if item_key not in keys and (max_items is None or len(call) < max_items):
                call.append(item)
                keys.add(item_key)
                break
        else:
            calls.append([item])
            keys_per_call.append({item_key})
    return calls
