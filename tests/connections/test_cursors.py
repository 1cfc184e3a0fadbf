"""Delta reads: nothing missed, nothing repeated, across edits, ties, caps and crashes.

The keyset reads (a full scan by id, then fresh time-sorted queries) are HubSpot's; the
offset window (`DeltaWindow`) is for providers that page only by offset (Mailchimp).
"""
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connections.providers.cursors import (
    CursorStuck,
    DeltaWindow,
    InvalidCursor,
    KeysetQuery,
    KeysetWindow,
    ScanWindow,
    Step,
    dump_cursor,
    epoch_ms,
    from_epoch_ms,
    load_cursor,
    open_keyset_read,
)


class FakeSearch:
    """A provider's ascending, offset-paged search over id -> modified time."""

    def __init__(self, records: dict[str, int], *, page_size: int, cap: int | None = None):
        self.records = dict(records)
        self.page_size = page_size
        self.cap = cap
        self.requests = 0

    def page(self, start: int | None, offset: int) -> tuple[list[tuple[str, int]], bool]:
        if self.cap is not None:
            assert offset < self.cap, "asked for a page past the result cap"
        self.requests += 1
        matching = sorted(
            ((modified, rid) for rid, modified in self.records.items() if start is None or modified >= start)
        )
        window = matching[offset : offset + self.page_size]
        return [(rid, modified) for modified, rid in window], offset + self.page_size < len(matching)


def read(cursor, *, overlap_ms, search: FakeSearch, between_pages=None, stop_after_pages=None):
    """Drive a window from `cursor` like a provider does; return the deliveries and the last cursor."""
    window = DeltaWindow(cursor, overlap_ms=overlap_ms, result_cap=search.cap)
    delivered: list[tuple[str, int]] = []
    cursor = None
    pages = 0
    step = Step.NEW_QUERY
    while step is not Step.DONE:
        if step is Step.NEW_QUERY:
            start, offset = window.start_query(), 0
        results, has_more = search.page(start, offset)
        offset += len(results)
        delivered += [(rid, modified) for rid, modified in results if window.admit(rid, modified)]
        step = window.page_done(returned=len(results), has_more=has_more)
        cursor = window.cursor()
        pages += 1
        if stop_after_pages is not None and pages >= stop_after_pages:
            break
        if between_pages is not None and step is not Step.DONE:
            between_pages(pages, search)
    return delivered, cursor


def test_a_first_read_delivers_every_record_once_in_order():
    search = FakeSearch({f"r{i}": 1000 + i for i in range(25)}, page_size=10)
    delivered, cursor = read(None, overlap_ms=0, search=search)
    assert delivered == [(f"r{i}", 1000 + i) for i in range(25)]
    assert search.requests == 3
    assert load_cursor(cursor)[0] == 1024


def test_an_empty_source_gives_a_cursor_that_reads_everything_next_time():
    delivered, cursor = read(None, overlap_ms=5, search=FakeSearch({}, page_size=10))
    assert delivered == []
    assert load_cursor(cursor) == (None, {})


def test_a_delta_read_delivers_only_what_changed_since_the_cursor():
    records = {f"r{i}": 1000 + i for i in range(10)}
    search = FakeSearch(records, page_size=4)
    _, cursor = read(None, overlap_ms=3, search=search)
    search.records.update({"r2": 2000, "new": 2001})
    delivered, _ = read(cursor, overlap_ms=3, search=search)
    assert delivered == [("r2", 2000), ("new", 2001)]


def test_a_second_read_without_changes_delivers_nothing_despite_the_overlap():
    search = FakeSearch({f"r{i}": 1000 + i for i in range(10)}, page_size=4)
    _, cursor = read(None, overlap_ms=5, search=search)
    delivered, cursor_after = read(cursor, overlap_ms=5, search=search)
    assert delivered == []
    assert load_cursor(cursor_after)[0] == 1009


def test_the_overlap_catches_a_late_commit_older_than_the_watermark():
    search = FakeSearch({"a": 1000, "b": 1010}, page_size=10)
    _, cursor = read(None, overlap_ms=5, search=search)
    # Committed after the read, stamped before the newest time the read saw.
    search.records["late"] = 1007
    delivered, _ = read(cursor, overlap_ms=5, search=search)
    assert delivered == [("late", 1007)]


def test_a_late_commit_older_than_the_overlap_is_out_of_reach():
    search = FakeSearch({"a": 1000, "b": 1010}, page_size=10)
    _, cursor = read(None, overlap_ms=5, search=search)
    search.records["too_late"] = 1004
    assert read(cursor, overlap_ms=5, search=search)[0] == []


def test_the_cursor_keeps_only_the_deliveries_inside_the_overlap():
    search = FakeSearch({"old": 1000, "near": 1096, "edge": 1095, "top": 1100}, page_size=10)
    _, cursor = read(None, overlap_ms=5, search=search)
    since, seen = load_cursor(cursor)
    assert since == 1100
    assert seen == {"near": 1096, "edge": 1095, "top": 1100}


def test_a_record_modified_again_is_delivered_again():
    search = FakeSearch({"a": 1000}, page_size=10)
    _, cursor = read(None, overlap_ms=10, search=search)
    search.records["a"] = 1003
    assert read(cursor, overlap_ms=10, search=search)[0] == [("a", 1003)]


def test_an_older_copy_of_a_delivered_record_is_not_delivered():
    window = DeltaWindow(dump_cursor(1000, {"a": 1000}), overlap_ms=10)
    window.start_query()
    assert window.admit("a", 995) is False
    assert window.admit("a", 1000) is False
    assert window.admit("a", 1001) is True


def test_the_result_cap_restarts_the_query_from_the_newest_time_seen():
    search = FakeSearch({f"r{i:02}": 1000 + i for i in range(25)}, page_size=4, cap=8)
    delivered, cursor = read(None, overlap_ms=0, search=search)
    assert delivered == [(f"r{i:02}", 1000 + i) for i in range(25)]
    assert load_cursor(cursor)[0] == 1024


def test_ties_across_the_cap_are_neither_missed_nor_repeated():
    # Five records share the time at which the cap falls.
    records = {f"a{i}": 1000 + i for i in range(6)} | {f"t{i}": 2000 for i in range(5)} | {"z": 3000}
    search = FakeSearch(records, page_size=4, cap=8)
    delivered, _ = read(None, overlap_ms=0, search=search)
    assert sorted(delivered) == sorted(records.items())
    assert len(delivered) == len(records)


def test_more_ties_than_the_cap_stop_the_read_with_a_clear_error():
    search = FakeSearch({f"t{i}": 2000 for i in range(10)}, page_size=4, cap=8)
    with pytest.raises(CursorStuck, match="share the modification time"):
        read(dump_cursor(2000, {}), overlap_ms=0, search=search)


def test_a_cap_reached_inside_the_overlap_restarts_inside_it():
    # The overlap holds more late commits than one query returns.
    records = {"a": 1000} | {f"late{i}": 1090 + i for i in range(6)}
    search = FakeSearch({"a": 1000}, page_size=2, cap=4)
    _, cursor = read(None, overlap_ms=0, search=search)
    search.records = records | {"top": 1100}
    delivered, _ = read(dump_cursor(1100, {"top": 1100}), overlap_ms=20, search=search)
    assert sorted(delivered) == sorted((rid, m) for rid, m in records.items() if m >= 1080)


def test_a_record_edited_during_the_read_causes_a_rewind_so_none_is_skipped():
    records = {f"r{i}": 1000 + i for i in range(12)}
    search = FakeSearch(records, page_size=4)

    def edit_first_record(pages, search):
        if pages == 1:
            # r0 was read on page 1; editing it moves it to the end of the ordering and
            # shifts r4 into page 1's range, where plain offset paging would skip it.
            search.records["r0"] = 5000

    delivered, _ = read(None, overlap_ms=0, search=search, between_pages=edit_first_record)
    assert set(delivered) == set(records.items()) | {("r0", 5000)}
    assert len(delivered) == len(set(delivered))


def test_a_record_edited_before_the_read_reached_it_causes_no_rewind():
    search = FakeSearch({f"r{i}": 1000 + i for i in range(12)}, page_size=4)

    def edit_unread_record(pages, search):
        if pages == 1:
            search.records["r9"] = 5000

    delivered, _ = read(None, overlap_ms=0, search=search, between_pages=edit_unread_record)
    assert [rid for rid, _ in delivered] == [f"r{i}" for i in range(12) if i != 9] + ["r9"]
    assert search.requests == 3


def test_the_cursor_saved_while_a_rewind_is_pending_resumes_from_the_rewind_point():
    window = DeltaWindow(None, overlap_ms=0)
    window.start_query()
    for rid, modified in [("a", 1000), ("b", 1001), ("c", 1002)]:
        window.admit(rid, modified)
    window.admit("a", 2000)
    assert window.page_done(returned=4, has_more=True) is Step.NEW_QUERY
    since, seen = load_cursor(window.cursor())
    assert since == 1000
    assert seen == {"a": 2000, "b": 1001, "c": 1002}
    assert window.start_query() == 1000


def test_a_read_resumed_from_any_page_cursor_delivers_the_rest_exactly_once():
    records = {f"r{i:02}": 1000 + i // 3 for i in range(30)}
    for stop in range(1, 8):
        search = FakeSearch(records, page_size=4, cap=12)
        first, cursor = read(None, overlap_ms=2, search=search, stop_after_pages=stop)
        rest, _ = read(cursor, overlap_ms=2, search=search)
        assert sorted(first + rest) == sorted(records.items()), stop


def test_an_invalid_cursor_is_refused_with_a_clear_message():
    for text in ["not json", "[]", '{"v": 99}', '{"v": 1, "since": "x"}', '{"v": 1, "since": 1, "seen": {"x": [1]}}']:
        with pytest.raises(InvalidCursor, match="full resync"):
            load_cursor(text)


def test_the_cursor_groups_ids_by_time_and_round_trips():
    text = dump_cursor(1005, {"a": 1005, "b": 1005, "c": 1001})
    assert json.loads(text) == {"v": 1, "since": 1005, "seen": {"1001": ["c"], "1005": ["a", "b"]}}
    assert load_cursor(text) == (1005, {"a": 1005, "b": 1005, "c": 1001})


def test_records_without_a_time_are_delivered_and_leave_the_position_alone():
    window = DeltaWindow(dump_cursor(1000, {}), overlap_ms=0)
    window.start_query()
    assert window.admit("x", None) is True
    assert load_cursor(window.cursor())[0] == 1000


def test_a_negative_overlap_is_refused():
    with pytest.raises(ValueError):
        DeltaWindow(None, overlap_ms=-1)


edits = st.lists(st.tuples(st.integers(0, 14), st.integers(0, 29), st.integers(1, 40)), max_size=8)
record_times = st.lists(st.integers(0, 40), max_size=30)
caps = st.sampled_from([None, 6, 12])


def more_ties_than_the_cap(times, cap) -> bool:
    return cap is not None and max((times.count(t) for t in set(times)), default=0) >= cap


@settings(max_examples=300, deadline=None)
@given(times=record_times, page_size=st.integers(1, 6), cap=caps, edits=edits)
def test_edits_during_a_read_lose_no_change_and_repeat_none(times, page_size, cap, edits):
    """Edits between pages (moving forward in time, as clocks do): every record's final
    version is delivered, and no (id, modified) pair twice."""
    if more_ties_than_the_cap(times, cap):
        return
    search = FakeSearch({f"r{i:02}": 1000 + t for i, t in enumerate(times)}, page_size=page_size, cap=cap)
    clock = [1000 + max(times, default=0)]

    def apply_edits(pages, search):
        for at_page, index, delta in edits:
            rid = f"r{index:02}"
            if at_page == pages and rid in search.records:
                clock[0] += delta
                search.records[rid] = clock[0]

    delivered, _ = read(None, overlap_ms=0, search=search, between_pages=apply_edits)
    assert len(delivered) == len(set(delivered)), "an (id, modified) pair was delivered twice"
    assert set(search.records.items()) <= set(delivered), "a record's final version was missed"


@settings(max_examples=300, deadline=None)
@given(times=record_times, page_size=st.integers(1, 6), cap=caps, overlap=st.integers(0, 10), crash_after=st.integers(1, 12))
def test_a_read_resumed_after_a_crash_delivers_the_rest_exactly_once(times, page_size, cap, overlap, crash_after):
    if more_ties_than_the_cap(times, cap):
        return
    records = {f"r{i:02}": 1000 + t for i, t in enumerate(times)}
    search = FakeSearch(records, page_size=page_size, cap=cap)
    first, cursor = read(None, overlap_ms=overlap, search=search, stop_after_pages=crash_after)
    rest, _ = read(cursor, overlap_ms=overlap, search=search)
    assert sorted(first + rest) == sorted(records.items())


def test_times_convert_to_milliseconds_exactly_and_back():
    moment = datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=timezone.utc)
    assert epoch_ms(moment) == 1714566600123
    assert from_epoch_ms(1714566600123) == moment
    assert epoch_ms(datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))) == 1714566600000
    assert epoch_ms(datetime(2024, 5, 1, 12, 30)) == 1714566600000


# Keyset reads.


class FakeCrm:
    """A CRM's records (numeric id -> modified ms), listed by id and searched by keyset queries.

    Like HubSpot: a list page starts at an id (`after`), a search matches a time range or
    one instant past an id, and records sharing a time come back in no promised order.
    A change takes a time later than any before it, and a bulk change gives all its
    records the same one; a late change (a late commit, or a search index that trails
    writes) shows up stamped up to `late` ms before the newest time already visible.
    """

    def __init__(self, times: list[int], *, page_size: int, list_size: int, tie_seed: int = 0):
        self.records = {number: 1000 + offset for number, offset in enumerate(times, start=1)}
        self.clock = max(self.records.values(), default=1000)
        self.next_id = len(times) + 1
        self.page_size = page_size
        self.list_size = list_size
        self.ties = random.Random(tie_seed)
        self.searches = 0
        self.lists = 0

    def bulk_edit(self, ids, *, created: int = 0, gap: int = 1, late: int = 0) -> None:
        if late:
            stamp = self.clock - late
        else:
            self.clock += gap
            stamp = self.clock
        for number in ids:
            # A record's new version is never stamped before its old one.
            if number in self.records and self.records[number] < stamp:
                self.records[number] = stamp
        for _ in range(created):
            self.records[self.next_id] = stamp
            self.next_id += 1

    def list_page(self, after: str | None) -> tuple[list[tuple[str, int]], str | None]:
        self.lists += 1
        ids = sorted(number for number in self.records if number >= int(after or 0))
        page = [(str(number), self.records[number]) for number in ids[: self.list_size]]
        return page, str(ids[self.list_size]) if len(ids) > self.list_size else None

    def search(self, query: KeysetQuery) -> tuple[list[tuple[str, int]], bool]:
        self.searches += 1
        if query.at is not None:
            after_id = query.after_id if query.after_id is not None else 0
            ids = sorted(n for n, m in self.records.items() if m == query.at and n > after_id)
            matching = [(str(number), query.at) for number in ids]
        else:
            def included(modified):
                if query.since is None:
                    return True
                return modified > query.since if query.strict else modified >= query.since

            found = [(m, n) for n, m in self.records.items() if included(m)]
            matching = [(str(n), m) for m, n in sorted(found, key=lambda pair: (pair[0], self.ties.random()))]
        return matching[: self.page_size], len(matching) > self.page_size


def keyset_pages(crm: FakeCrm, cursor, *, overlap_ms: int, skew_ms: int = 0):
    """Read like the HubSpot client does; yield (deliveries, cursor) per page."""
    window = open_keyset_read(cursor, overlap_ms=overlap_ms, now_ms=crm.clock + skew_ms)
    if isinstance(window, ScanWindow):
        while not window.finished:
            records, next_after = crm.list_page(window.after)
            for rid, modified in records:
                window.admit(rid, modified)
            window.page_done(next_after=next_after)
            yield records, window.cursor()
        return
    while (query := window.query()) is not None:
        records, has_more = crm.search(query)
        delivered = [(rid, m) for rid, m in records if window.admit(rid, m)]
        window.page_done(has_more=has_more)
        yield delivered, window.cursor()


def keyset_read(crm, cursor=None, *, overlap_ms=0, skew_ms=0):
    """Return (deliveries, last cursor) of one whole read."""
    delivered = []
    for page, cursor in keyset_pages(crm, cursor, overlap_ms=overlap_ms, skew_ms=skew_ms):
        delivered += page
    return delivered, cursor


def full_then_delta(crm, *, overlap_ms=0):
    """Return the cursor after a complete scan and a complete delta read."""
    _, cursor = keyset_read(crm, overlap_ms=overlap_ms)
    return keyset_read(crm, cursor, overlap_ms=overlap_ms)[1]


def test_a_full_read_lists_every_record_by_id_and_ends_watermarked_at_its_start():
    crm = FakeCrm([5, 1, 3, 2, 4], page_size=2, list_size=2)
    delivered, cursor = keyset_read(crm, overlap_ms=2, skew_ms=7)
    assert delivered == [("1", 1005), ("2", 1001), ("3", 1003), ("4", 1002), ("5", 1004)]
    assert (crm.lists, crm.searches) == (3, 0)
    started = crm.clock + 7
    assert json.loads(cursor) == {"v": 2, "since": started, "seen": {}}


def test_a_scan_keeps_for_de_duplication_only_what_the_first_delta_reads_again():
    crm = FakeCrm([0, 8, 9, 10], page_size=10, list_size=10)
    _, cursor = keyset_read(crm, overlap_ms=2)
    assert json.loads(cursor)["seen"] == {"1008": ["2"], "1009": ["3"], "1010": ["4"]}
    assert keyset_read(crm, cursor, overlap_ms=2)[0] == []


def test_a_scan_cut_short_resumes_where_it_stopped_with_its_start_time():
    crm = FakeCrm(list(range(7)), page_size=10, list_size=3)
    pages = keyset_pages(crm, None, overlap_ms=0)
    first, cursor = next(pages)
    pages.close()
    assert json.loads(cursor) == {"v": 2, "scan": {"started": 1006, "after": "4"}, "seen": {}}
    crm.bulk_edit([2, 6], created=1, gap=5)
    rest, final = keyset_read(crm, cursor)
    assert [rid for rid, _ in first + rest] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert json.loads(final) == {"v": 2, "since": 1006, "seen": {"1006": ["7"], "1011": ["6", "8"]}}
    # Record 2 was edited after the scan passed it: the next delta brings it, and only it.
    assert keyset_read(crm, final)[0] == [("2", 1011)]


def test_a_delta_read_sends_a_fresh_query_per_page_from_the_newest_time_read():
    crm = FakeCrm([], page_size=3, list_size=10)
    cursor = full_then_delta(crm)
    crm.bulk_edit([], created=1)
    for _ in range(6):
        crm.bulk_edit([], created=1, gap=2)
    window = open_keyset_read(cursor, overlap_ms=0, now_ms=crm.clock)
    queries = []
    while (query := window.query()) is not None:
        queries.append(query)
        records, has_more = crm.search(query)
        for rid, modified in records:
            window.admit(rid, modified)
        window.page_done(has_more=has_more)
    assert queries == [KeysetQuery(since=1000), KeysetQuery(since=1005), KeysetQuery(since=1009)]


def test_a_record_edited_during_a_delta_read_shifts_nothing_and_comes_back_once_more():
    crm = FakeCrm([], page_size=2, list_size=10)
    cursor = full_then_delta(crm)
    crm.bulk_edit([], created=6)
    crm.records.update({number: 1000 + number for number in crm.records})
    crm.clock = 1006
    pages = keyset_pages(crm, cursor, overlap_ms=0)
    delivered, _ = next(pages)
    assert delivered == [("1", 1001), ("2", 1002)]
    # One record already delivered and one not yet reached are edited between pages.
    crm.bulk_edit([1, 5], gap=10)
    for page, _ in pages:
        delivered += page
    assert delivered[:5] == [("1", 1001), ("2", 1002), ("3", 1003), ("4", 1004), ("6", 1006)]
    assert sorted(delivered[5:]) == [("1", 1016), ("5", 1016)]


def test_more_records_at_one_instant_than_a_page_are_paged_by_id_within_it():
    crm = FakeCrm([], page_size=4, list_size=10, tie_seed=3)
    cursor = full_then_delta(crm)
    crm.bulk_edit([], created=2)
    crm.bulk_edit([], created=9)
    crm.bulk_edit([], created=1)
    window = open_keyset_read(cursor, overlap_ms=0, now_ms=crm.clock)
    queries, delivered = [], []
    while (query := window.query()) is not None:
        queries.append(query)
        records, has_more = crm.search(query)
        delivered += [(rid, m) for rid, m in records if window.admit(rid, m)]
        window.page_done(has_more=has_more)
    assert sorted(delivered) == sorted((str(n), m) for n, m in crm.records.items())
    assert len(delivered) == len(set(delivered)) == 12
    assert queries == [
        KeysetQuery(since=1000),
        KeysetQuery(since=1002),
        KeysetQuery(at=1002),
        KeysetQuery(at=1002, after_id=6),
        KeysetQuery(at=1002, after_id=10),
        KeysetQuery(since=1002, strict=True),
    ]


def test_a_read_cut_short_within_an_instant_resumes_from_the_last_id_read_there():
    crm = FakeCrm([], page_size=3, list_size=10)
    cursor = full_then_delta(crm)
    crm.bulk_edit([], created=8)
    pages = keyset_pages(crm, cursor, overlap_ms=5)
    first = []
    for page, cursor in pages:
        first += page
        if json.loads(cursor).get("tie", {}).get("after"):
            break
    pages.close()
    saved = json.loads(cursor)
    assert saved["tie"] == {"at": 1001, "after": 3} and saved["since"] == 1001
    crm.searches = 0
    rest, _ = keyset_read(crm, cursor, overlap_ms=5)
    assert sorted(first + rest, key=lambda pair: int(pair[0])) == [(str(n), 1001) for n in range(1, 9)]
    # Within the instant from id 3 (two pages), then strictly after it (one).
    assert crm.searches == 3


def test_a_change_that_shows_up_late_behind_the_read_is_reached_by_the_next_read():
    crm = FakeCrm([], page_size=2, list_size=10)
    cursor = full_then_delta(crm)
    for _ in range(4):
        crm.bulk_edit([], created=1)
    pages = keyset_pages(crm, cursor, overlap_ms=5)
    delivered, _ = next(pages)
    # Stamped 1001, behind the read, but searchable only now; then the clock moves far on.
    crm.bulk_edit([], created=1, late=3)
    crm.bulk_edit([], created=1, gap=20)
    for page, cursor in pages:
        delivered += page
    assert delivered == [("1", 1001), ("2", 1002), ("3", 1003), ("4", 1004), ("6", 1024)]
    # The watermark stays at the time the read began (1004), not the newest time read.
    assert json.loads(cursor)["since"] == 1004
    assert keyset_read(crm, cursor, overlap_ms=5)[0] == [("5", 1001)]


def test_a_read_resumed_within_an_instant_keeps_the_interrupted_reads_watermark():
    crm = FakeCrm([], page_size=2, list_size=10)
    cursor = full_then_delta(crm)
    crm.bulk_edit([], created=5)
    pages = keyset_pages(crm, cursor, overlap_ms=5)
    delivered = []
    for page, cursor in pages:
        delivered += page
        if json.loads(cursor).get("tie", {}).get("after"):
            break
    pages.close()
    assert json.loads(cursor)["tie"] == {"at": 1001, "after": 2}
    crm.bulk_edit([], created=1, late=3)
    crm.bulk_edit([], created=1, gap=19)
    rest, cursor = keyset_read(crm, cursor, overlap_ms=5)
    assert sorted(delivered + rest) == [*((str(n), 1001) for n in range(1, 6)), ("7", 1020)]
    assert json.loads(cursor)["since"] == 1001
    assert keyset_read(crm, cursor, overlap_ms=5)[0] == [("6", 998)]


def test_a_reply_that_does_not_move_past_the_last_id_stops_the_read_instead_of_looping():
    window = KeysetWindow(since=1000, overlap_ms=0, now_ms=2000, tie=(1000, 7))
    window.admit("5", 1000)
    window.admit("7", 1000)
    with pytest.raises(CursorStuck, match="past id 7"):
        window.page_done(has_more=True)


def test_a_full_page_without_times_stops_the_read_instead_of_looping():
    window = KeysetWindow(since=1000, overlap_ms=0, now_ms=2000)
    assert window.admit("1", None) is True
    with pytest.raises(CursorStuck, match="no modification times"):
        window.page_done(has_more=True)


def test_a_list_that_answers_the_same_page_again_stops_the_scan():
    window = ScanWindow(started=1000, overlap_ms=0, after="40")
    with pytest.raises(CursorStuck, match="same page"):
        window.page_done(next_after="40")


def test_a_cursor_saved_by_the_offset_window_is_read_as_a_delta_cursor():
    window = open_keyset_read(dump_cursor(1005, {"a": 1005}), overlap_ms=3, now_ms=2000)
    assert isinstance(window, KeysetWindow)
    assert window.query() == KeysetQuery(since=1002)
    assert window.admit("a", 1005) is False


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    '{"v": 3}',
    '{"v": 2, "since": "x"}',
    '{"v": 2, "since": 1, "seen": {"x": ["a"]}}',
    '{"v": 2, "since": 1, "tie": {"at": "1"}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "after": "7"}}',
    '{"v": 2, "scan": {"after": "1"}}',
    '{"v": 2, "scan": {"started": 1, "after": 5}}',
])
def test_an_invalid_keyset_cursor_is_refused_with_a_clear_message(text):
    with pytest.raises(InvalidCursor, match="full resync"):
        open_keyset_read(text, overlap_ms=0, now_ms=0)


def test_the_keyset_cursors_round_trip():
    for text in [
        '{"v":2,"since":1005,"seen":{"1001":["c"],"1005":["a","b"]}}',
        '{"v":2,"since":1005,"seen":{"1005":["7"]},"tie":{"at":1005,"after":7}}',
        '{"v":2,"scan":{"started":1005,"after":"301"},"seen":{"1003":["9"]}}',
    ]:
        assert open_keyset_read(text, overlap_ms=10, now_ms=2000).cursor() == text


bulk_edits = st.lists(
    st.tuples(
        st.integers(1, 25),  # after which page (counted over every read)
        st.lists(st.integers(1, 45), max_size=4),  # the records edited, in one instant
        st.integers(0, 3),  # records created in that instant
        st.integers(1, 3),  # how far the clock moved
        st.floats(0, 1),  # how late the change shows, as a share of the delay allowed
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(
    times=st.lists(st.integers(0, 6), max_size=40),
    page_size=st.integers(1, 5),
    list_size=st.integers(1, 5),
    overlap=st.integers(0, 4),
    skew_share=st.floats(-1, 1),
    edits=bulk_edits,
    crashes=st.lists(st.integers(1, 12), max_size=4),
    tie_seed=st.integers(0, 1000),
)
def test_keyset_reads_cut_short_anywhere_deliver_every_change_and_repeat_none(
    times, page_size, list_size, overlap, skew_share, edits, crashes, tie_seed
):
    """A full scan, then delta reads, with bulk and late edits between pages and crashes anywhere.

    A crash keeps the deliveries of the pages read and the cursor of the last one (the
    engine saves both in one transaction); the next read resumes from that cursor.
    Every record's final version is delivered, and no (id, modified) pair twice. The
    reader's clock is off the CRM's by `skew`, and changes show up to `late` ms late,
    together within the overlap.
    """
    crm = FakeCrm(times, page_size=page_size, list_size=list_size, tie_seed=tie_seed)
    skew = round(skew_share * overlap)
    committed: list[tuple[str, int]] = []
    cursor = None
    pages_read = 0
    # Pages a read may take before it stops (None: until it ends), then a last clean read.
    for stop_after in [*crashes, None, None]:
        for count, (page, page_cursor) in enumerate(keyset_pages(crm, cursor, overlap_ms=overlap, skew_ms=skew), 1):
            committed += page
            cursor = page_cursor
            pages_read += 1
            assert pages_read < 400, "the reads do not end"
            for at_page, ids, created, gap, late_share in edits:
                if at_page == pages_read:
                    late = int(late_share * (overlap - abs(skew)))
                    crm.bulk_edit(ids, created=created, gap=gap, late=late)
            if stop_after is not None and count >= stop_after:
                break
    final = keyset_read(crm, cursor, overlap_ms=overlap, skew_ms=skew)[0]
    committed += final
    assert len(committed) == len(set(committed)), "an (id, modified) pair was delivered twice"
    assert {(str(n), m) for n, m in crm.records.items()} <= set(committed), "a record's latest version was missed"
