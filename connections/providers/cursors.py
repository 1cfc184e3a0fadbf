"""Delta-read bookkeeping: watermarks, the overlap window and (id, modified) de-duplication.

Knows no provider and no HTTP. Times are integers in milliseconds since the epoch;
providers convert. Every read is made of fresh queries sorted by modification time,
oldest first (`KeysetWindow`): nothing is paged by a plain offset into a list that
changes under it, so a record edited during a read shifts nothing else.

- A delta read sends a fresh query for every page: the records modified at or after
  the watermark. The next query starts at the newest time of the page; the records of
  that instant already delivered come back and are dropped by (id, modified). When a
  whole page shares one instant (bulk changes, imports), a query from it would return
  the same page: the read pages within that instant, then goes on strictly after it.
  Every query moves forward, so a read always ends.
- Within one instant, a provider whose search filters on a numeric id (HubSpot) pages
  by id, `id > last id` (`Ties.BY_ID`): edits move nothing. A provider that can only
  narrow a list to one instant and page it by offset (Mailchimp, whose times are whole
  seconds) pages by position (`Ties.BY_OFFSET`), and watches the instant's count in
  every reply. A record edited again leaves the instant for a later time; if it had
  been read already, everything after it moves up one place and the next offset would
  skip a record. The count dropping by d says that up to d records moved up: the read
  steps back d places, and the records read again are dropped as duplicates. Records
  only leave an instant in the past (a change is stamped with the present), so the
  count drops exactly as often as records leave. An instant still under way can gain
  records too, which can hide a loss in the count; the next read reaches that instant
  again inside its overlap (the watermark is never later than the time the read
  began, see below), and delivers what this one skipped. The order within an instant
  must be the same from one request to the next.
- A cursor can be saved after any page: the watermark, the (id, modified) pairs
  delivered within the overlap before it, and where a read within one instant stands
  (the last id; or the offset and the instant's count). A read resumed from it
  delivers every record changed since it was saved, and repeats none of the deliveries
  it records.
- The watermark saved is never later than the time the read began, by the reader's
  clock: a change made while a read is under way may become visible only after the
  read went past its time, and the next read must reach it.
- A read that reached the end of the list moves the watermark to the time its first
  query was answered, by the provider's clock (the reply's Date header), when that is
  later than the newest change read: every change made before then was visible to the
  read (the overlap covers the rest), so the next read starts there less the overlap.
  Without this, a bulk write (Syncapp's own push, read back once as echoes) would stay
  inside every later read's overlap and be listed again by each, until a newer change
  moved the watermark. The provider's clock, not the reader's: a reader whose clock
  runs ahead would otherwise move the watermark past changes it never saw. A read
  resumed within an instant does not move it so: that instant may have gained records
  behind the position it resumed from while it was the present.
- Late commits and clock skew: the next read starts `overlap` before the watermark,
  and the de-duplication drops what was delivered already, so the overlap costs no
  repeated deliveries. The overlap must exceed the provider's indexing delay plus the
  difference between its clock and the reader's.

A provider whose search is rate-limited more tightly than its list (HubSpot) makes its
first read a full scan (`ScanWindow`): the list by id, whose `after` is an id keyset,
so edits during the scan shift nothing. Its cursor holds when the scan started and
where it stands; when it ends, the cursor becomes a delta cursor whose watermark is
the scan's start: whatever was edited during the scan is read again by the next delta.
A full read asked for later (a resync, a backfill) starts a scan from the delta cursor
in use (`full_scan_cursor`): the list leaves archived records out, so the scan keeps
the old cursor's bound for archived records, and the first delta after it delivers
every record archived since the last pass, not only those archived since the scan.

A provider whose search leaves archived records out (HubSpot) ends each delta read
with a pass over its archived list (`KeysetWindow.next_archived_page`), which pages by id
and cannot filter on the time of archiving: every archived record is listed, and those
archived since the previous pass began (less the overlap) are delivered, once. The
pass's start is saved with its position, so a pass cut short resumes where it stopped
and still reaches back to the previous pass.
"""
from __future__ import annotations

import enum
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Saved by the offset reader Syncapp used for Mailchimp before keyset reads: read as a
# delta cursor (a watermark and its de-duplication), which is what it means.
OFFSET_CURSOR_VERSION = 1
KEYSET_CURSOR_VERSION = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MALFORMED = "The saved cursor is malformed; run a full resync to reset it."
_UNKNOWN = "The saved cursor has an unknown format; run a full resync to reset it."


class InvalidCursor(ValueError):
    """A saved cursor could not be read."""


class CursorStuck(RuntimeError):
    """The provider's replies do not let the read move on (e.g. a page that repeats the last)."""


class Ties(enum.Enum):
    """How a read pages through more records of one instant than a page holds."""

    BY_ID = "id"
    BY_OFFSET = "offset"


def epoch_ms(moment: datetime) -> int:
    """Return a datetime as whole milliseconds since the epoch (naive means UTC), exactly."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: float timestamps can land a millisecond short.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    """Return the UTC datetime for milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=ms)


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidCursor("The saved cursor is not JSON; run a full resync to reset it.") from None
    if not isinstance(data, dict) or data.get("v") not in (OFFSET_CURSOR_VERSION, KEYSET_CURSOR_VERSION):
        raise InvalidCursor(_UNKNOWN)
    return data


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(value: Any) -> int | None:
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


@dataclass(frozen=True)
class KeysetQuery:
    """One fresh query of a keyset read.

    By time (`at` None): the records modified at or after `since` (strictly after when
    `strict`; every record when `since` is None), oldest first.
    Within one instant (`at` set): the records modified exactly at `at`, by id
    ascending from above `after_id` (every one when None) with `Ties.BY_ID`, or in the
    provider's order from position `offset` with `Ties.BY_OFFSET`.
    """

    since: int | None = None
    strict: bool = False
    at: int | None = None
    after_id: int | None = None
    offset: int | None = None


@dataclass
class _ArchivedPass:
    """Where the pass over archived records stands: its lower bound, and its position while under way."""

    since: int | None
    started: int | None = None
    after: str | None = None
    done: bool = False


def open_keyset_read(
    cursor: str | None, *, overlap_ms: int, now_ms: int, archived: bool = False
) -> ScanWindow | KeysetWindow:
    """Return the window a keyset read from `cursor` goes on in (ties by id).

    No cursor starts a full scan at `now_ms`; a scan's cursor resumes it; a delta cursor
    starts a delta read, which ends with a pass over the archived records when `archived`.
    """
    if overlap_ms < 0:
        raise ValueError("overlap_ms must not be negative")
    if not cursor:
        return ScanWindow(started=now_ms, overlap_ms=overlap_ms)
    data = _parse(cursor)
    scan = data.get("scan")
    if scan is not None and data["v"] == KEYSET_CURSOR_VERSION:
        if not isinstance(scan, dict) or not _is_int(scan.get("started")):
            raise InvalidCursor(_MALFORMED)
        after = scan.get("after")
        if after is not None and not isinstance(after, str):
            raise InvalidCursor(_MALFORMED)
        seen = _read_seen(data.get("seen", {}))
        archived = data.get("archived", {})
        if not isinstance(archived, dict):
            raise InvalidCursor(_MALFORMED)
        archived_since = _optional_int(archived.get("since"))
        return ScanWindow(started=scan["started"], after=after, seen=seen, overlap_ms=overlap_ms,
                          archived_since=archived_since)
    return _delta_window(data, overlap_ms=overlap_ms, now_ms=now_ms, ties=Ties.BY_ID, archived=archived)


def full_scan_cursor(cursor: str | None, *, now_ms: int) -> str:
    """Return the cursor of a full scan starting at `now_ms` that keeps what `cursor` still owes.

    A scan lists the live records only. The delta cursor in use owes the records
    archived since its last pass over them began (or since its watermark, when it has
    made none; since its start, for a scan under way): the new scan keeps that bound,
    and the first delta read after it delivers them. A cursor that cannot be read (a
    full resync is how it is reset) owes nothing that can be known: the scan starts clean.
    """
    owed: int | None = None
    if cursor:
        try:
            data = _parse(cursor)
        except InvalidCursor:
            data = {}
        scan = data.get("scan")
        archived = data.get("archived")
        if isinstance(archived, dict) and "since" in archived:
            owed = archived.get("since")
        elif isinstance(scan, dict):
            owed = scan.get("started")
        elif data:
            owed = data.get("since")
        if data and owed is None:
            # Never past the beginning: every archived record is still owed.
            owed = 0
        if not _is_int(owed):
            owed = None
    window = ScanWindow(started=now_ms, overlap_ms=0,
                        archived_since=None if owed is None else min(owed, now_ms))
    return window.cursor()


def open_time_sorted_read(cursor: str | None, *, overlap_ms: int, now_ms: int) -> KeysetWindow:
    """Return the window a read of a time-sorted list goes on in (ties by offset); no cursor reads everything."""
    if overlap_ms < 0:
        raise ValueError("overlap_ms must not be negative")
    if not cursor:
        return KeysetWindow(since=None, overlap_ms=overlap_ms, now_ms=now_ms, ties=Ties.BY_OFFSET)
    data = _parse(cursor)
    if "scan" in data:
        raise InvalidCursor(_UNKNOWN)
    return _delta_window(data, overlap_ms=overlap_ms, now_ms=now_ms, ties=Ties.BY_OFFSET, archived=False)


def _delta_window(data: dict[str, Any], *, overlap_ms: int, now_ms: int, ties: Ties, archived: bool) -> KeysetWindow:
    since = _optional_int(data.get("since"))
    seen = _read_seen(data.get("seen", {}))
    tie, tie_total = _read_tie(data.get("tie"), ties)
    archived_pass = _read_archived(data.get("archived"), since) if archived else None
    return KeysetWindow(
        since=since, seen=seen, tie=tie, tie_total=tie_total, overlap_ms=overlap_ms, now_ms=now_ms, ties=ties,
        archived_pass=archived_pass,
    )


def _read_tie(tie: Any, ties: Ties) -> tuple[KeysetQuery | None, int | None]:
    if tie is None:
        return None, None
    if not isinstance(tie, dict) or not _is_int(tie.get("at")):
        raise InvalidCursor(_MALFORMED)
    if ties is Ties.BY_ID:
        if "offset" in tie:
            raise InvalidCursor(_UNKNOWN)
        return KeysetQuery(at=tie["at"], after_id=_optional_int(tie.get("after"))), None
    if "after" in tie or not _is_int(tie.get("offset")) or tie["offset"] < 0:
        raise InvalidCursor(_MALFORMED)
    return KeysetQuery(at=tie["at"], offset=tie["offset"]), _optional_int(tie.get("total"))


def _read_archived(archived: Any, since: int | None) -> _ArchivedPass:
    if archived is None:
        # Saved before archived records were read: they are read from the watermark on.
        return _ArchivedPass(since=since)
    if not isinstance(archived, dict):
        raise InvalidCursor(_MALFORMED)
    after = archived.get("after")
    if after is not None and not isinstance(after, str):
        raise InvalidCursor(_MALFORMED)
    return _ArchivedPass(
        since=_optional_int(archived.get("since")), started=_optional_int(archived.get("started")), after=after
    )


class ScanWindow:
    """Track a full read that lists every record by id, and the delta cursor it ends in.

    The reader asks the list for the page at `after` (None: the first page), calls
    `admit()` for each record, then `page_done()` with the list's next `after` (None at
    the end). `cursor()` after any page resumes the scan; once `finished`, it is the
    delta cursor whose watermark is `started`, the time the scan began: a record edited
    during the scan, after the scan passed it, is read by the next delta.
    """

    def __init__(self, *, started: int, overlap_ms: int, after: str | None = None, seen: dict[str, int] | None = None,
                 archived_since: int | None = None):
        self.started = started
        self.overlap_ms = overlap_ms
        self.after = after
        self.finished = False
        self._seen = dict(seen or {})
        # The bound of the first pass over archived records after the scan, when it
        # reaches back before the scan's start (see full_scan_cursor); None: the start.
        self.archived_since = archived_since if archived_since is not None and archived_since < started else None

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
        data: dict[str, Any] = {"v": KEYSET_CURSOR_VERSION}
        if self.finished:
            data["since"] = self.started
        else:
            data["scan"] = {"started": self.started, "after": self.after}
        data["seen"] = _group_seen(self._seen)
        if self.archived_since is not None:
            data["archived"] = {"since": self.archived_since}
        return _dump(data)


class KeysetWindow:
    """Track a delta read made of fresh keyset queries.

    The reader sends `query()` (None: the search is over), calls `admit()` for every
    record of the reply in order, then `page_done()` saying whether the query matched
    more records than the page held (and, with `Ties.BY_OFFSET`, how many it matched).
    When the window tracks archived records, the reader then lists them while
    `next_archived_page()`: the page at `archived_after`, `admit_archived()` for each
    record, then `archived_page_done()`. `cursor()` after any page is a safe point to resume from.

    The saved watermark is the newest modification time read, but never later than the
    time the read began (`now_ms`, the reader's clock): a record modified while the read
    is under way may show up only after the read went past its time (a late commit, or
    a search index that trails writes), and the next read, starting `overlap` before
    the watermark, must reach it.
    """

    def __init__(
        self,
        *,
        since: int | None,
        overlap_ms: int,
        now_ms: int,
        seen: dict[str, int] | None = None,
        tie: KeysetQuery | None = None,
        tie_total: int | None = None,
        ties: Ties = Ties.BY_ID,
        archived_pass: _ArchivedPass | None = None,
    ):
        self.overlap_ms = overlap_ms
        self.ties = ties
        self._now_ms = now_ms
        self._newest = since
        self._seen = dict(seen or {})
        # (modified, id) in the order delivered, to forget what falls below the overlap.
        self._order = deque(sorted((modified, record_id) for record_id, modified in self._seen.items()))
        self._tie_total = tie_total
        self._archived = archived_pass
        if tie is not None:
            # Resumed within one instant: go on from where the interrupted read stood,
            # skipping the overlap, so the watermark it saved still bounds this read.
            # Records modified since carry later times, which the read reaches after it.
            self._began = now_ms if since is None else min(now_ms, since)
            self._query: KeysetQuery | None = tie
        else:
            # Never before the watermark the read starts from: that may be the provider's
            # clock, ahead of ours, and a watermark going back would reach records the
            # de-duplication has forgotten.
            self._began = now_ms if since is None else max(now_ms, since)
            self._query = KeysetQuery(since=None if since is None else since - overlap_ms)
        self._page_newest: int | None = None
        self._page_oldest: int | None = None
        self._page_last_id: int | None = None
        self._page_returned = 0
        # The provider's clock when the read's first query was answered (see `began_by_provider`).
        self._provider_began: int | None = None
        # A read resumed within an instant goes on paging an instant that may have been
        # the present when the interrupted read paged it, and gained records behind its
        # position: its watermark stays where the interrupted read put it.
        self._dated = tie is None

    def began_by_provider(self, answered_ms: int | None) -> None:
        """Record the provider's clock when the first query of this read was answered (its reply's Date).

        Once the read reaches the end of the list, the watermark moves to that time if
        it is later than the newest change read. Only the first reply counts: later
        ones answered after changes the read may have gone past. Ignored for a read
        resumed within an instant (see `__init__`); never more than the overlap ahead
        of our clock.
        """
        if self._dated and self._provider_began is None and answered_ms is not None:
            # A Date far ahead of our clock is more likely wrong (a proxy, a clock
            # glitch) than the clocks that far apart: trusted up to the overlap only,
            # so a wrong one can never move the next read past changes made since.
            self._provider_began = min(answered_ms, self._now_ms + self.overlap_ms)

    @property
    def watermark(self) -> int | None:
        """The time the next read starts from, less the overlap (None: from the beginning)."""
        read = None if self._newest is None else min(self._newest, self._began)
        if self._query is None and self._provider_began is not None:
            # The search went to the end: everything changed before the provider
            # answered its first query was visible to it.
            return self._provider_began if read is None else max(read, self._provider_began)
        return read

    def query(self) -> KeysetQuery | None:
        """Return the query for the next page; None when the search is over."""
        return self._query

    def admit(self, record_id: str, modified: int | None) -> bool:
        """Return whether to deliver this record (not delivered before at this time), and remember it."""
        record_id = str(record_id)
        self._page_returned += 1
        if self._query is not None and self._query.at is not None and self.ties is Ties.BY_ID:
            number = _numeric_id(record_id)
            if self._page_last_id is None or number > self._page_last_id:
                self._page_last_id = number
        if modified is None:
            # Without a time the record cannot be placed in the ordering: deliver it,
            # and leave the position alone.
            return True
        if self._page_newest is None or modified > self._page_newest:
            self._page_newest = modified
        if self._page_oldest is None or modified < self._page_oldest:
            self._page_oldest = modified
        return self._deliver(record_id, modified)

    def page_done(self, *, has_more: bool, total: int | None = None) -> None:
        """Record that the current query's page was read; choose the next query.

        `total` is how many records the query matched, where the reply says.
        """
        query, newest, oldest = self._query, self._page_newest, self._page_oldest
        last_id, returned = self._page_last_id, self._page_returned
        self._page_newest = self._page_oldest = self._page_last_id = None
        self._page_returned = 0
        if query is None:
            raise RuntimeError("The search is over: there is no page to finish.")
        if query.at is not None:
            if self.ties is Ties.BY_ID:
                self._query = self._next_by_id(query, has_more, last_id)
            else:
                self._query = self._next_by_offset(query, has_more, returned, total)
            return
        if newest is not None:
            self._newest = newest if self._newest is None else max(self._newest, newest)
            self._forget_below(self._floor())
        if not has_more:
            self._query = None
        elif newest is None:
            raise CursorStuck("A full page carried no modification times; the read cannot move on.")
        elif query.since is not None and (newest < query.since or (query.strict and newest == query.since)):
            raise CursorStuck(f"A query from {query.since} ms returned records modified before it.")
        elif oldest == newest:
            # A full page of records all modified at one instant: a query from that
            # instant would return the same page again. Page within it.
            self._tie_total = None
            self._query = KeysetQuery(at=newest) if self.ties is Ties.BY_ID else KeysetQuery(at=newest, offset=0)
        else:
            self._query = KeysetQuery(since=newest)

    def _next_by_id(self, query: KeysetQuery, has_more: bool, last_id: int | None) -> KeysetQuery:
        if not has_more:
            # The instant is exhausted: carry on strictly after it.
            return KeysetQuery(since=query.at, strict=True)
        if last_id is None or (query.after_id is not None and last_id <= query.after_id):
            raise CursorStuck(
                f"A query within the instant {query.at} ms returned no record past id {query.after_id}; "
                "the read cannot move on."
            )
        return KeysetQuery(at=query.at, after_id=last_id)

    def _next_by_offset(self, query: KeysetQuery, has_more: bool, returned: int, total: int | None) -> KeysetQuery:
        left = 0
        if total is not None:
            if self._tie_total is not None and total < self._tie_total:
                left = self._tie_total - total
            self._tie_total = total
        if left:
            # Records left the instant since the last page (edited again, so they come
            # later). Those read already moved the rest up: step back as many places.
            return KeysetQuery(at=query.at, offset=max(0, (query.offset or 0) - left))
        if has_more:
            if not returned:
                raise CursorStuck(
                    f"A query within the instant {query.at} ms at offset {query.offset} returned nothing though "
                    "more records match; the read cannot move on."
                )
            return KeysetQuery(at=query.at, offset=(query.offset or 0) + returned)
        self._tie_total = None
        return KeysetQuery(since=query.at, strict=True)

    def next_archived_page(self) -> bool:
        """Return whether a page of archived records is to be listed next, from `archived_after`.

        The pass begins once the search is over, and runs at most once per read.
        """
        archived = self._archived
        if archived is None or archived.done or self._query is not None:
            return False
        if archived.started is None:
            archived.started = self._now_ms
        return True

    @property
    def archived_after(self) -> str | None:
        """Where the next page of archived records starts (None: the first page)."""
        return None if self._archived is None else self._archived.after

    def admit_archived(self, record_id: str, archived_ms: int | None) -> bool:
        """Return whether to deliver an archived record: archived since the last pass, and not delivered yet."""
        archived = self._archived
        if archived is None or archived_ms is None:
            # Without a time it cannot be told from one delivered before: leave it.
            return False
        if archived.since is not None and archived_ms < archived.since - self.overlap_ms:
            return False
        return self._deliver(str(record_id), archived_ms)

    def archived_page_done(self, *, next_after: str | None) -> None:
        """Record that a page of archived records was read; `next_after` is where the next starts (None: the end)."""
        archived = self._archived
        if archived is None or archived.started is None or archived.done:
            raise RuntimeError("No pass over archived records is under way.")
        if next_after is not None and next_after == archived.after:
            raise CursorStuck(
                f"The archived list answered page {next_after!r} with the same page again; it cannot move on."
            )
        if next_after is None:
            # The next pass reaches back to when this one began: a record archived since,
            # behind this pass's position, is delivered then.
            archived.since, archived.started, archived.done = archived.started, None, True
            self._forget_below(self._floor())
        archived.after = next_after

    def cursor(self) -> str:
        """Return the cursor to resume from: the watermark, the overlap's deliveries, any instant or pass under way."""
        floor = self._floor()
        seen = {rid: modified for rid, modified in self._seen.items() if floor is None or modified >= floor}
        data: dict[str, Any] = {"v": KEYSET_CURSOR_VERSION, "since": self.watermark, "seen": _group_seen(seen)}
        query = self._query
        if query is not None and query.at is not None:
            if self.ties is Ties.BY_ID:
                data["tie"] = {"at": query.at, "after": query.after_id}
            else:
                data["tie"] = {"at": query.at, "offset": query.offset, "total": self._tie_total}
        archived = self._archived
        if archived is not None:
            data["archived"] = {"since": archived.since}
            if archived.started is not None:
                data["archived"].update(started=archived.started, after=archived.after)
        return _dump(data)

    def _deliver(self, record_id: str, modified: int) -> bool:
        delivered = self._seen.get(record_id)
        if delivered is not None and modified <= delivered:
            return False
        self._seen[record_id] = modified
        self._order.append((modified, record_id))
        return True

    def _floor(self) -> int | None:
        """Return the oldest time a query of this read or the next can reach (None: any)."""
        watermark = self.watermark
        if watermark is None:
            return None
        if self._archived is not None:
            if self._archived.since is None:
                return None
            watermark = min(watermark, self._archived.since)
        return watermark - self.overlap_ms

    def _forget_below(self, floor: int | None) -> None:
        """Drop deliveries older than `floor`: no query of this read or the next reaches them."""
        if floor is None:
            return
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
