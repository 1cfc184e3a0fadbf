"""Delta-read bookkeeping: watermarks, the overlap window and (id, modified) de-duplication.

Two ways of reading what changed, both knowing no provider and no HTTP. Times are
integers in milliseconds since the epoch; providers convert.

Keyset reads (`ScanWindow`, then `KeysetWindow`), for providers with a search sorted by
modification time and filterable on the time and on a numeric record id (HubSpot):

- A full read lists every record by id (`ScanWindow`): the list's `after` is an id
  keyset, so edits during the scan shift nothing. Its cursor holds when the scan started
  and where it stands, so a scan cut short resumes where it stopped. When it ends, the
  cursor becomes a delta cursor whose watermark is the scan's start: whatever was
  edited during the scan is read again by the next delta.
- A delta read (`KeysetWindow`) sends a fresh query for every page: the records
  modified at or after the watermark, oldest first. Nothing is paged by offset, so a
  record edited during the read moves nothing else, and no query comes near a result
  cap. The next query starts at the newest time of the page; the records of that
  instant already delivered come back and are dropped by (id, modified). When a whole
  page shares one instant (bulk changes stamp many records with the same millisecond)
  the read pages within that instant by id, `id > last id`, then goes on strictly after
  it. Every query moves forward, so a read always ends.
- A cursor can be saved after any page: the watermark, the (id, modified) pairs
  delivered within the overlap before it, and where a read within one instant stands.
  A read resumed from it delivers every record changed since it was saved, and repeats
  none of the deliveries it records.
- The watermark saved is never later than the time the read (or the scan) began, by
  the reader's clock: a change made while a read is under way may become searchable
  only after the read went past its time, and the next read must reach it.

Offset reads (`DeltaWindow`), for providers that page a time-sorted list only by offset
(Mailchimp's members):

- A record read earlier and modified since jumps to the end of the ordering, moving
  every later record one place down, so the record at the next offset would be
  skipped. When a record comes back in the same read with a newer modification time,
  the read rewinds to where the record stood before and re-reads from there (the
  re-read records are de-duplicated, not delivered again). The limit: if the process
  dies after such an edit but before the edited record comes back, the record skipped
  by the shift is not re-read until it changes again or a full resync runs.
- Result caps: when a query reaches the cap the read restarts from the newest time seen;
  the records re-read at that exact time are dropped as duplicates.

Both guard against late commits and clock skew the same way: the next read starts
`overlap` before the watermark, and the de-duplication drops what was delivered already,
so the overlap costs no repeated deliveries. The overlap must exceed the provider's
indexing delay plus the difference between its clock and the reader's.
"""
from __future__ import annotations

import enum
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# The format `DeltaWindow` saves; `KeysetWindow` reads it too, as a delta cursor.
CURSOR_VERSION = 1
KEYSET_CURSOR_VERSION = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MALFORMED = "The saved cursor is malformed; run a full resync to reset it."


class InvalidCursor(ValueError):
    """A saved cursor could not be read."""


class CursorStuck(RuntimeError):
    """The provider's replies do not let the read move on (e.g. more ties than a query returns)."""


class Step(enum.Enum):
    """What the reader does after a page."""

    NEXT_PAGE = "next_page"
    NEW_QUERY = "new_query"
    DONE = "done"


def epoch_ms(moment: datetime) -> int:
    """Return a datetime as whole milliseconds since the epoch (naive means UTC), exactly."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # Integer arithmetic: float timestamps can land a millisecond short.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    """Return the UTC datetime for milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=ms)


def load_cursor(text: str | None) -> tuple[int | None, dict[str, int]]:
    """Return (since, seen) from a saved cursor; (None, {}) for no cursor."""
    if not text:
        return None, {}
    data = _parse(text)
    if data.get("v") != CURSOR_VERSION:
        raise InvalidCursor("The saved cursor has an unknown format; run a full resync to reset it.")
    return _since(data.get("since")), _read_seen(data.get("seen", {}))


def dump_cursor(since: int | None, seen: dict[str, int]) -> str:
    """Return the cursor text for `since` and the (id, modified) pairs to de-duplicate."""
    return _dump({"v": CURSOR_VERSION, "since": since, "seen": _group_seen(seen)})


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidCursor("The saved cursor is not JSON; run a full resync to reset it.") from None
    if not isinstance(data, dict):
        raise InvalidCursor("The saved cursor has an unknown format; run a full resync to reset it.")
    return data


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _since(value: Any) -> int | None:
    if value is not None and not _is_int(value):
        raise InvalidCursor(_MALFORMED)
    return value


def _read_seen(seen_by_time: Any) -> dict[str, int]:
    if not isinstance(seen_by_time, dict):
        raise InvalidCursor(_MALFORMED)
    seen: dict[str, int] = {}
    try:
        for modified, ids in seen_by_time.items():
            for record_id in ids:
                seen[str(record_id)] = int(modified)
    except (TypeError, ValueError):
        raise InvalidCursor(_MALFORMED) from None
    return seen


def _group_seen(seen: dict[str, int]) -> dict[str, list[str]]:
    # Grouped by time, because bulk changes share timestamps: the cursor stays small.
    by_time: dict[int, list[str]] = defaultdict(list)
    for record_id, modified in seen.items():
        by_time[modified].append(record_id)
    return {str(modified): sorted(ids) for modified, ids in sorted(by_time.items())}


class DeltaWindow:
    """Track one delta read across queries and pages.

    The reader calls `start_query()` for the inclusive lower bound of each query (None:
    from the beginning), `admit()` for every record of a page in order, then
    `page_done()` to learn whether to fetch the next page, start a new query, or stop.
    `cursor()` after any page is a safe point to resume from.

    The position is the time from which a fresh query misses nothing this read has not
    delivered: the newest time read so far, or the rewind point after a shift.
    """

    def __init__(self, cursor: str | None, *, overlap_ms: int, result_cap: int | None = None):
        if overlap_ms < 0:
            raise ValueError("overlap_ms must not be negative")
        self.overlap_ms = overlap_ms
        self.result_cap = result_cap
        saved_since, self._delivered = load_cursor(cursor)
        self._position: int | None = saved_since
        self._first_query = True
        self._query_start: int | None = None
        self._query_newest: int | None = None
        self._query_returned = 0
        # id -> modified time for every record this read returned, delivered or not: a
        # record returned again with a newer time proves the offsets may have shifted.
        self._returned: dict[str, int] = {}
        self._rewind_to: int | None = None

    def start_query(self) -> int | None:
        """Begin a query and return its inclusive lower bound (None: from the beginning)."""
        if self._first_query:
            self._first_query = False
            start = None if self._position is None else self._position - self.overlap_ms
        elif self._rewind_to is not None:
            start = self._position = self._rewind_to
        else:
            # Restarting after a cap: from the newest time this query reached (which may
            # still lie inside the overlap, before the position).
            start = self._query_newest
        self._rewind_to = None
        self._query_start = start
        self._query_newest = None
        self._query_returned = 0
        return start

    def admit(self, record_id: str, modified: int | None) -> bool:
        """Return whether to deliver this record, and remember it."""
        if modified is None:
            # Without a time the record cannot be placed in the ordering: deliver it,
            # and leave the position alone.
            return True
        record_id = str(record_id)
        returned_before = self._returned.get(record_id)
        if returned_before is not None and returned_before < modified:
            # Modified while this read was under way: it moved to the end of the
            # ordering and every record after its old place moved one offset down.
            self._rewind_to = returned_before if self._rewind_to is None else min(self._rewind_to, returned_before)
        if returned_before is None or modified > returned_before:
            self._returned[record_id] = modified
        if self._query_newest is None or modified > self._query_newest:
            self._query_newest = modified
        if self._position is None or modified > self._position:
            self._position = modified
        delivered = self._delivered.get(record_id)
        if delivered is not None and modified <= delivered:
            return False
        self._delivered[record_id] = modified
        return True

    def page_done(self, *, returned: int, has_more: bool) -> Step:
        """Record that a page of `returned` results was read; return what to do next."""
        self._query_returned += returned
        if self._rewind_to is not None:
            return Step.NEW_QUERY
        if self.result_cap is not None and self._query_returned >= self.result_cap:
            if self._query_newest is None or self._query_newest == self._query_start:
                raise CursorStuck(
                    f"More than {self.result_cap} records share the modification time "
                    f"{self._query_start} ms; a query cannot page past them."
                )
            return Step.NEW_QUERY
        return Step.NEXT_PAGE if has_more else Step.DONE

    def cursor(self) -> str:
        """Return the cursor to resume from: the position and the overlap's deliveries."""
        position = self._position
        if self._rewind_to is not None:
            position = self._rewind_to if position is None else min(position, self._rewind_to)
        if position is None:
            return dump_cursor(None, {})
        floor = position - self.overlap_ms
        return dump_cursor(position, {rid: m for rid, m in self._delivered.items() if m >= floor})


@dataclass(frozen=True)
class KeysetQuery:
    """One fresh query of a keyset read.

    By time (`at` None): the records modified at or after `since` (strictly after when
    `strict`; every record when `since` is None), oldest first.
    Within one instant (`at` set): the records modified exactly at `at` whose numeric id
    is above `after_id` (every one when None), by id ascending.
    """

    since: int | None = None
    strict: bool = False
    at: int | None = None
    after_id: int | None = None


def open_keyset_read(cursor: str | None, *, overlap_ms: int, now_ms: int) -> ScanWindow | KeysetWindow:
    """Return the window a keyset read from `cursor` goes on in.

    No cursor starts a full scan at `now_ms`; a scan's cursor resumes it; a delta cursor
    (or one saved by `DeltaWindow`, which means the same) starts a delta read.
    """
    if overlap_ms < 0:
        raise ValueError("overlap_ms must not be negative")
    if not cursor:
        return ScanWindow(started=now_ms, overlap_ms=overlap_ms)
    data = _parse(cursor)
    if data.get("v") == CURSOR_VERSION:
        since, seen = load_cursor(cursor)
        return KeysetWindow(since=since, seen=seen, overlap_ms=overlap_ms, now_ms=now_ms)
    if data.get("v") != KEYSET_CURSOR_VERSION:
        raise InvalidCursor("The saved cursor has an unknown format; run a full resync to reset it.")
    seen = _read_seen(data.get("seen", {}))
    scan = data.get("scan")
    if scan is not None:
        if not isinstance(scan, dict) or not _is_int(scan.get("started")):
            raise InvalidCursor(_MALFORMED)
        after = scan.get("after")
        if after is not None and not isinstance(after, str):
            raise InvalidCursor(_MALFORMED)
        return ScanWindow(started=scan["started"], after=after, seen=seen, overlap_ms=overlap_ms)
    since = _since(data.get("since"))
    tie = data.get("tie")
    if tie is not None:
        if not isinstance(tie, dict) or not _is_int(tie.get("at")) or not (
            tie.get("after") is None or _is_int(tie.get("after"))
        ):
            raise InvalidCursor(_MALFORMED)
        tie = (tie["at"], tie.get("after"))
    return KeysetWindow(since=since, seen=seen, tie=tie, overlap_ms=overlap_ms, now_ms=now_ms)


class ScanWindow:
    """Track a full read that lists every record by id, and the delta cursor it ends in.

    The reader asks the list for the page at `after` (None: the first page), calls
    `admit()` for each record, then `page_done()` with the list's next `after` (None at
    the end). `cursor()` after any page resumes the scan; once `finished`, it is the
    delta cursor whose watermark is `started`, the time the scan began: a record edited
    during the scan, after the scan passed it, is read by the next delta.
    """

    def __init__(self, *, started: int, overlap_ms: int, after: str | None = None, seen: dict[str, int] | None = None):
        self.started = started
        self.overlap_ms = overlap_ms
        self.after = after
        self.finished = False
        self._seen = dict(seen or {})

    def admit(self, record_id: str, modified: int | None) -> None:
        """Remember a listed record (every one is delivered: a scan meets each record once)."""
        # The first delta reads again from `started - overlap`: what the scan delivered
        # from then on is de-duplicated there.
        if modified is not None and modified >= self.started - self.overlap_ms:
            self._seen[str(record_id)] = modified

    def page_done(self, *, next_after: str | None) -> None:
        """Record that a page was read; `next_after` is where the next one starts (None: the end)."""
        if next_after is not None and next_after == self.after:
            raise CursorStuck(f"The list answered page {next_after!r} with the same page again; it cannot move on.")
        self.after = next_after
        self.finished = next_after is None

    def cursor(self) -> str:
        """Return the cursor to resume the scan from, or once it is finished the delta cursor."""
        if self.finished:
            return _dump({"v": KEYSET_CURSOR_VERSION, "since": self.started, "seen": _group_seen(self._seen)})
        return _dump({
            "v": KEYSET_CURSOR_VERSION,
            "scan": {"started": self.started, "after": self.after},
            "seen": _group_seen(self._seen),
        })


class KeysetWindow:
    """Track a delta read made of fresh keyset queries.

    The reader sends `query()` (None: the read is over), calls `admit()` for every record
    of the reply in order, then `page_done()` saying whether the query matched more
    records than the page held. `cursor()` after any page is a safe point to resume from.

    The saved watermark is the newest modification time read, but never later than the
    time the read began (`now_ms`, the reader's clock): a record modified while the read
    is under way may show up in the search only after the read went past its time (a
    late commit, or a search index that trails writes), and the next read, starting
    `overlap` before the watermark, must reach it.
    """

    def __init__(
        self,
        *,
        since: int | None,
        overlap_ms: int,
        now_ms: int,
        seen: dict[str, int] | None = None,
        tie: tuple[int, int | None] | None = None,
    ):
        self.overlap_ms = overlap_ms
        self._newest = since
        self._seen = dict(seen or {})
        # (modified, id) in the order delivered, to forget what falls below the overlap.
        self._order = deque(sorted((modified, record_id) for record_id, modified in self._seen.items()))
        if tie is not None:
            # Resumed within one instant: go on from the last id read there, skipping the
            # overlap, so the watermark the interrupted read saved still bounds this one.
            # Records modified since carry later times, which the read reaches after it.
            at, after_id = tie
            self._began = now_ms if since is None else min(now_ms, since)
            self._query: KeysetQuery | None = KeysetQuery(at=at, after_id=after_id)
        else:
            self._began = now_ms
            self._query = KeysetQuery(since=None if since is None else since - overlap_ms)
        self._page_newest: int | None = None
        self._page_last_id: int | None = None

    @property
    def watermark(self) -> int | None:
        """The time the next read starts from, less the overlap (None: from the beginning)."""
        return None if self._newest is None else min(self._newest, self._began)

    def query(self) -> KeysetQuery | None:
        """Return the query for the next page; None when the read is over."""
        return self._query

    def admit(self, record_id: str, modified: int | None) -> bool:
        """Return whether to deliver this record (not delivered before at this time), and remember it."""
        record_id = str(record_id)
        if self._query is not None and self._query.at is not None:
            number = _numeric_id(record_id)
            if self._page_last_id is None or number > self._page_last_id:
                self._page_last_id = number
        if modified is None:
            # Without a time the record cannot be placed in the ordering: deliver it,
            # and leave the position alone.
            return True
        if self._page_newest is None or modified > self._page_newest:
            self._page_newest = modified
        delivered = self._seen.get(record_id)
        if delivered is not None and modified <= delivered:
            return False
        self._seen[record_id] = modified
        self._order.append((modified, record_id))
        return True

    def page_done(self, *, has_more: bool) -> None:
        """Record that the current query's page was read; choose the next query."""
        query, newest, last_id = self._query, self._page_newest, self._page_last_id
        self._page_newest = self._page_last_id = None
        if query is None:
            raise RuntimeError("The read is over: there is no page to finish.")
        if query.at is not None:
            if not has_more:
                # The instant is exhausted: carry on strictly after it.
                self._query = KeysetQuery(since=query.at, strict=True)
            elif last_id is None or (query.after_id is not None and last_id <= query.after_id):
                raise CursorStuck(
                    f"A query within the instant {query.at} ms returned no record past id {query.after_id}; "
                    "the read cannot move on."
                )
            else:
                self._query = KeysetQuery(at=query.at, after_id=last_id)
            return
        if newest is not None:
            self._newest = newest if self._newest is None else max(self._newest, newest)
            self._forget_below(self.watermark - self.overlap_ms)
        if not has_more:
            self._query = None
        elif newest is None:
            raise CursorStuck("A full page carried no modification times; the read cannot move on.")
        elif query.since is not None and newest < query.since:
            raise CursorStuck(f"A query from {query.since} ms returned records modified before it.")
        elif newest == query.since and not query.strict:
            # A full page of records all modified at the instant the query started from:
            # a query from that instant again would return the same page. Page by id.
            self._query = KeysetQuery(at=newest)
        else:
            self._query = KeysetQuery(since=newest)

    def cursor(self) -> str:
        """Return the cursor to resume from: the watermark, the overlap's deliveries, any instant under way."""
        since = self.watermark
        floor = None if since is None else since - self.overlap_ms
        seen = {rid: modified for rid, modified in self._seen.items() if floor is None or modified >= floor}
        data: dict[str, Any] = {"v": KEYSET_CURSOR_VERSION, "since": since, "seen": _group_seen(seen)}
        if self._query is not None and self._query.at is not None:
            data["tie"] = {"at": self._query.at, "after": self._query.after_id}
        return _dump(data)

    def _forget_below(self, floor: int) -> None:
        """Drop deliveries older than `floor`: no query of this read or the next reaches them."""
        order, seen = self._order, self._seen
        while order and order[0][0] < floor:
            modified, record_id = order.popleft()
            if seen.get(record_id) == modified:
                del seen[record_id]


def _numeric_id(record_id: str) -> int:
    try:
        return int(record_id)
    except ValueError:
        raise CursorStuck(f"Record id {record_id!r} is not a number; a read cannot page by it.") from None
