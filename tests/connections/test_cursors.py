"""Delta reads: nothing missed, nothing repeated, across edits, ties, archives and crashes.

The keyset reads (a full scan by id, fresh time-sorted searches, ties paged by id, a
pass over archived records) are HubSpot's; the time-sorted list read (ties paged by
offset, watching the instant's count) is Mailchimp's.
"""
import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connections.providers.cursors import (
    CursorStuck,
    InvalidCursor,
    KeysetQuery,
    KeysetWindow,
    ScanWindow,
    Ties,
    epoch_ms,
    from_epoch_ms,
    open_keyset_read,
    open_time_sorted_read,
)


def test_times_convert_to_milliseconds_exactly_and_back():
    moment = datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)
    assert epoch_ms(moment) == 1714566600123
    assert from_epoch_ms(1714566600123) == moment
    assert epoch_ms(datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))) == 1714566600000
    assert epoch_ms(datetime(2024, 5, 1, 12, 30)) == 1714566600000


def test_a_negative_overlap_is_refused():
    with pytest.raises(ValueError):
        open_time_sorted_read(None, overlap_ms=-1, now_ms=0)
    with pytest.raises(ValueError):
        open_keyset_read(None, overlap_ms=-1, now_ms=0)


# Time-sorted list reads.


class FakeAudience:
    """A list sorted by modification time, narrowed by a time range and paged by offset.

    Like Mailchimp's members: no id filter; records sharing a time come back in the
    order they were created, the same from one request to the next; every reply counts
    the records the query matches. A change takes the present time (several changes may
    share it, and records keep joining the present instant); a late change (a late
    commit) shows up stamped up to `late` before the present.
    """

    def __init__(self, times: list[int], *, page_size: int):
        # id -> (modified, creation order)
        self.records = {f"m{order:03}": (1000 + offset, order) for order, offset in enumerate(times)}
        self.clock = max((modified for modified, _ in self.records.values()), default=1000)
        self.next_order = len(times)
        self.page_size = page_size
        self.queries: list[KeysetQuery] = []

    def change(self, ids, *, created: int = 0, gap: int = 0, late: int = 0) -> None:
        self.clock += gap
        stamp = self.clock - late
        for rid in ids:
            # A record's new version is never stamped before its old one.
            if rid in self.records and self.records[rid][0] < stamp:
                self.records[rid] = (stamp, self.records[rid][1])
        for _ in range(created):
            self.records[f"m{self.next_order:03}"] = (stamp, self.next_order)
            self.next_order += 1

    def query(self, query: KeysetQuery) -> tuple[list[tuple[str, int]], bool, int]:
        """Return (page, has more, how many match) as the Mailchimp client reads a reply."""
        self.queries.append(query)
        if query.at is not None:
            matching = sorted((order, rid) for rid, (modified, order) in self.records.items() if modified == query.at)
            found = [(rid, query.at) for _, rid in matching]
        else:
            def included(modified):
                if query.since is None:
                    return True
                return modified > query.since if query.strict else modified >= query.since

            matching = sorted((modified, order, rid) for rid, (modified, order) in self.records.items()
                              if included(modified))
            found = [(rid, modified) for modified, _, rid in matching]
        offset = query.offset or 0
        page = found[offset: offset + self.page_size]
        return page, bool(page) and offset + len(page) < len(found), len(found)

    def versions(self) -> set[tuple[str, int]]:
        return {(rid, modified) for rid, (modified, _) in self.records.items()}


def sorted_pages(audience: FakeAudience, cursor, *, overlap_ms: int, skew_ms: int = 0, dated: bool = False):
    """Read like the Mailchimp client does; yield (deliveries, cursor) per page.

    `dated`: each reply carries the provider's clock (its Date header), the present of
    the audience when it answered, which the client hands to the window.
    """
    window = open_time_sorted_read(cursor, overlap_ms=overlap_ms, now_ms=audience.clock + skew_ms)
    while (query := window.query()) is not None:
        records, has_more, total = audience.query(query)
        if dated:
            window.began_by_provider(audience.clock)
        delivered = [(rid, m) for rid, m in records if window.admit(rid, m)]
        window.page_done(has_more=has_more, total=total)
        yield delivered, window.cursor()


def sorted_read(audience, cursor=None, *, overlap_ms=0, skew_ms=0, dated=False):
    delivered = []
    for page, page_cursor in sorted_pages(audience, cursor, overlap_ms=overlap_ms, skew_ms=skew_ms, dated=dated):
        delivered += page
        cursor = page_cursor
    return delivered, cursor


def test_a_first_read_of_a_sorted_list_delivers_every_record_once_oldest_first():
    audience = FakeAudience(list(range(25)), page_size=10)
    delivered, cursor = sorted_read(audience)
    assert delivered == [(f"m{i:03}", 1000 + i) for i in range(25)]
    assert audience.queries == [KeysetQuery(), KeysetQuery(since=1009), KeysetQuery(since=1018)]
    assert json.loads(cursor)["since"] == 1024


def test_a_sorted_read_without_changes_delivers_nothing_in_one_query_despite_the_overlap():
    audience = FakeAudience(list(range(10)), page_size=10)
    _, cursor = sorted_read(audience, overlap_ms=5)
    audience.queries.clear()
    delivered, after = sorted_read(audience, cursor, overlap_ms=5)
    assert delivered == []
    assert audience.queries == [KeysetQuery(since=1004)]
    assert json.loads(after)["since"] == 1009


def test_a_bulk_write_read_once_is_not_listed_again_once_the_provider_clock_is_past_the_overlap():
    # Syncapp's own push: 30 members changed in one second, read back once as echoes.
    audience = FakeAudience([0] * 30, page_size=10)
    audience.clock += 60
    _, cursor = sorted_read(audience, overlap_ms=5, dated=True)
    assert json.loads(cursor)["since"] == audience.clock
    audience.queries.clear()
    audience.clock += 60
    delivered, _ = sorted_read(audience, cursor, overlap_ms=5, dated=True)
    # One query, from the provider's time of the last read less the overlap: nothing listed again.
    assert delivered == [] and audience.queries == [KeysetQuery(since=audience.clock - 60 - 5)]


def test_a_providers_date_far_ahead_of_our_clock_is_trusted_up_to_the_overlap_only():
    audience = FakeAudience([0] * 5, page_size=10)
    window = open_time_sorted_read(None, overlap_ms=5, now_ms=audience.clock + 60)
    records, has_more, total = audience.query(window.query())
    window.began_by_provider(audience.clock + 86_400_000)  # a day ahead: a wrong Date
    for rid, modified in records:
        window.admit(rid, modified)
    window.page_done(has_more=has_more, total=total)
    assert json.loads(window.cursor())["since"] == audience.clock + 60 + 5


def test_without_the_providers_clock_the_watermark_stays_at_the_newest_change_read():
    audience = FakeAudience([0] * 30, page_size=10)
    audience.clock += 60
    _, cursor = sorted_read(audience, overlap_ms=5)
    assert json.loads(cursor)["since"] == 1000


def test_a_read_cut_short_keeps_the_newest_change_read_as_its_watermark():
    audience = FakeAudience(list(range(25)), page_size=10)
    audience.clock += 60
    pages = sorted_pages(audience, None, overlap_ms=5, dated=True)
    _, cursor = next(pages)
    assert json.loads(cursor)["since"] == 1009


def test_a_record_edited_during_a_sorted_read_shifts_nothing_and_comes_back_once_more():
    audience = FakeAudience(list(range(12)), page_size=4)
    pages = sorted_pages(audience, None, overlap_ms=0)
    delivered, _ = next(pages)
    # The plain offset paging this replaces would skip m004 after this edit.
    audience.change(["m000"], gap=10)
    for page, _ in pages:
        delivered += page
    assert sorted(delivered) == sorted([(f"m{i:03}", 1000 + i) for i in range(12)] + [("m000", 1021)])
    assert len(delivered) == len(set(delivered))


def test_a_bulk_import_in_one_second_is_paged_by_offset_within_it():
    audience = FakeAudience([0] * 9 + [1], page_size=4)
    delivered, cursor = sorted_read(audience)
    assert sorted(delivered) == sorted(audience.versions()) and len(delivered) == 10
    assert audience.queries == [
        KeysetQuery(),
        KeysetQuery(at=1000, offset=0),
        KeysetQuery(at=1000, offset=4),
        KeysetQuery(at=1000, offset=8),
        KeysetQuery(since=1000, strict=True),
    ]
    assert "tie" not in json.loads(cursor)


def test_records_leaving_the_second_being_paged_make_the_read_step_back_so_none_is_skipped():
    audience = FakeAudience([0] * 10, page_size=3)
    pages = sorted_pages(audience, None, overlap_ms=0)
    delivered = []
    for page, cursor in pages:
        delivered += page
        if json.loads(cursor).get("tie", {}).get("offset") == 3:
            break
    # Two records already read are edited again: every later one moves up two places.
    audience.change(["m000", "m002"], gap=5)
    for page, _ in pages:
        delivered += page
    assert sorted(delivered) == sorted([(f"m{i:03}", 1000) for i in range(10)] + [("m000", 1005), ("m002", 1005)])
    assert len(delivered) == len(set(delivered))
    assert KeysetQuery(at=1000, offset=1) in audience.queries


def test_a_read_cut_short_within_a_second_resumes_from_its_offset_and_count():
    audience = FakeAudience([0] * 8, page_size=3)
    pages = sorted_pages(audience, None, overlap_ms=5)
    first = []
    for page, cursor in pages:
        first += page
        if json.loads(cursor).get("tie", {}).get("offset"):
            break
    pages.close()
    assert json.loads(cursor)["tie"] == {"at": 1000, "offset": 3, "total": 8}
    # While the process was down, a record already read left the second.
    audience.change(["m001"], gap=3)
    rest, _ = sorted_read(audience, cursor, overlap_ms=5)
    assert sorted(first + rest) == sorted([(f"m{i:03}", 1000) for i in range(8)] + [("m001", 1003)])
    assert len(first + rest) == len(set(first + rest))


def test_a_cursor_saved_by_the_former_offset_reader_goes_on_as_a_sorted_read():
    window = open_time_sorted_read('{"v":1,"since":1005,"seen":{"1005":["a"]}}', overlap_ms=3, now_ms=2000)
    assert window.query() == KeysetQuery(since=1002)
    assert window.admit("a", 1005) is False


def test_the_sorted_read_cursor_round_trips():
    text = '{"v":2,"since":1005,"seen":{"1005":["a","b"]},"tie":{"at":1005,"offset":1000,"total":2400}}'
    assert open_time_sorted_read(text, overlap_ms=10, now_ms=2000).cursor() == text


@pytest.mark.parametrize("text", [
    '{"v": 2, "scan": {"started": 1, "after": "5"}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "after": 7}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "offset": -1}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "offset": 3, "total": "x"}}',
])
def test_a_cursor_a_sorted_read_cannot_resume_is_refused_with_a_clear_message(text):
    with pytest.raises(InvalidCursor, match="full resync"):
        open_time_sorted_read(text, overlap_ms=0, now_ms=0)


def test_a_reply_that_returns_nothing_where_more_match_stops_the_read_instead_of_looping():
    window = KeysetWindow(since=None, overlap_ms=0, now_ms=2000, ties=Ties.BY_OFFSET,
                          tie=KeysetQuery(at=1000, offset=5))
    with pytest.raises(CursorStuck, match="offset 5"):
        window.page_done(has_more=True, total=9)


def test_a_strict_query_answered_with_its_own_instant_stops_the_read():
    window = KeysetWindow(since=None, overlap_ms=0, now_ms=2000, ties=Ties.BY_OFFSET,
                          tie=KeysetQuery(at=1000, offset=0))
    window.admit("a", 1000)
    window.page_done(has_more=False, total=1)
    assert window.query() == KeysetQuery(since=1000, strict=True)
    window.admit("a", 1000)
    window.admit("b", 1000)
    with pytest.raises(CursorStuck):
        window.page_done(has_more=True, total=5)


changes = st.lists(
    st.tuples(
        st.integers(1, 25),  # after which page (counted over every read)
        st.lists(st.integers(0, 45), max_size=3),  # records changed, in one instant
        st.booleans(),  # and every record the page just delivered (they leave their instant)
        st.integers(0, 3),  # records created in that instant
        st.integers(0, 3),  # how far the clock moved (0: the present instant again)
        st.floats(0, 1),  # how late the change shows, as a share of the delay allowed
    ),
    max_size=8,
)
# Bulk imports: many records in each of a few instants further apart than any overlap
# (later changes add instants of every spacing).
list_times = st.lists(st.integers(0, 3).map(lambda step: step * 10), max_size=40)


@settings(max_examples=500, deadline=None)
@given(
    times=list_times,
    page_size=st.integers(1, 5),
    overlap=st.integers(0, 4),
    skew_share=st.floats(-1, 1),
    edits=changes,
    crashes=st.lists(st.integers(1, 12), max_size=4),
    dated=st.booleans(),
)
def test_sorted_reads_cut_short_anywhere_deliver_every_change_and_repeat_none(
    times, page_size, overlap, skew_share, edits, crashes, dated
):
    """Reads of a time-sorted list, with changes between pages and crashes anywhere.

    Many records share a time (bulk imports) and keep joining the present one; records
    read within an instant leave it when changed again. A crash keeps the deliveries of
    the pages read and the cursor of the last one; the next read resumes from it. Every
    record's final version is delivered, and no (id, modified) pair twice.
    """
    audience = FakeAudience(times, page_size=page_size)
    skew = round(skew_share * overlap)
    committed: list[tuple[str, int]] = []
    cursor = None
    pages_read = 0
    for stop_after in [*crashes, None, None]:
        for count, (page, page_cursor) in enumerate(
            sorted_pages(audience, cursor, overlap_ms=overlap, skew_ms=skew, dated=dated), 1
        ):
            committed += page
            cursor = page_cursor
            pages_read += 1
            assert pages_read < 400, "the reads do not end"
            for at_page, numbers, page_too, created, gap, late_share in edits:
                if at_page == pages_read:
                    late = int(late_share * (overlap - abs(skew)))
                    ids = [f"m{n:03}" for n in numbers] + ([rid for rid, _ in page] if page_too else [])
                    audience.change(ids, created=created, gap=gap, late=late)
            if stop_after is not None and count >= stop_after:
                break
    committed += sorted_read(audience, cursor, overlap_ms=overlap, skew_ms=skew, dated=dated)[0]
    assert len(committed) == len(set(committed)), "an (id, modified) pair was delivered twice"
    assert audience.versions() <= set(committed), "a record's latest version was missed"


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
        # Archived records (numeric id -> when archived): out of the search and the list,
        # listed on their own.
        self.archived: dict[int, int] = {}
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

    def archive(self, ids, *, gap: int = 1) -> None:
        """Archive these live records (a restore when `restore`), each change in one new instant."""
        self.clock += gap
        for number in ids:
            if number in self.records:
                del self.records[number]
                self.archived[number] = self.clock

    def restore(self, ids, *, gap: int = 1) -> None:
        self.clock += gap
        for number in ids:
            if number in self.archived:
                del self.archived[number]
                self.records[number] = self.clock

    def list_page(self, after: str | None, *, archived: bool = False) -> tuple[list[tuple[str, int]], str | None]:
        self.lists += 1
        listed = self.archived if archived else self.records
        ids = sorted(number for number in listed if number >= int(after or 0))
        page = [(str(number), listed[number]) for number in ids[: self.list_size]]
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


def keyset_pages(crm: FakeCrm, cursor, *, overlap_ms: int, skew_ms: int = 0, archived: bool = False,
                 dated: bool = False):
    """Read like the HubSpot client does; yield (deliveries, cursor) per page.

    Archived records are delivered as ("archived", id, when archived). `dated`: each
    search reply carries the CRM's clock when it answered (its Date header).
    """
    window = open_keyset_read(cursor, overlap_ms=overlap_ms, now_ms=crm.clock + skew_ms, archived=archived)
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
        if dated:
            window.began_by_provider(crm.clock)
        delivered = [(rid, m) for rid, m in records if window.admit(rid, m)]
        window.page_done(has_more=has_more)
        yield delivered, window.cursor()
    while window.next_archived_page():
        records, next_after = crm.list_page(window.archived_after, archived=True)
        delivered = [("archived", rid, at) for rid, at in records if window.admit_archived(rid, at)]
        window.archived_page_done(next_after=next_after)
        yield delivered, window.cursor()


def keyset_read(crm, cursor=None, *, overlap_ms=0, skew_ms=0, archived=False, dated=False):
    """Return (deliveries, last cursor) of one whole read."""
    delivered = []
    for page, page_cursor in keyset_pages(crm, cursor, overlap_ms=overlap_ms, skew_ms=skew_ms, archived=archived,
                                          dated=dated):
        delivered += page
        cursor = page_cursor
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
    for page, page_cursor in pages:
        delivered += page
        cursor = page_cursor
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
    window = KeysetWindow(since=1000, overlap_ms=0, now_ms=2000, tie=KeysetQuery(at=1000, after_id=7))
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


def test_a_cursor_saved_by_the_former_offset_reader_is_read_as_a_delta_cursor():
    window = open_keyset_read('{"v":1,"since":1005,"seen":{"1005":["a"]}}', overlap_ms=3, now_ms=2000)
    assert isinstance(window, KeysetWindow)
    assert window.query() == KeysetQuery(since=1002)
    assert window.admit("a", 1005) is False


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    '{"v": 3}',
    '{"v": 1, "since": "x"}',
    '{"v": 1, "since": 1, "seen": {"x": [1]}}',
    '{"v": 2, "since": "x"}',
    '{"v": 2, "since": 1, "seen": {"x": ["a"]}}',
    '{"v": 2, "since": 1, "tie": {"at": "1"}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "after": "7"}}',
    '{"v": 2, "scan": {"after": "1"}}',
    '{"v": 2, "scan": {"started": 1, "after": 5}}',
    '{"v": 2, "since": 1, "tie": {"at": 1, "offset": 0, "total": 3}}',
    '{"v": 2, "since": 1, "archived": {"since": "x"}}',
    '{"v": 2, "since": 1, "archived": {"since": 1, "started": 2, "after": 7}}',
])
def test_an_invalid_keyset_cursor_is_refused_with_a_clear_message(text):
    with pytest.raises(InvalidCursor, match="full resync"):
        open_keyset_read(text, overlap_ms=0, now_ms=0, archived=True)


def test_the_keyset_cursors_round_trip():
    for text in [
        '{"v":2,"since":1005,"seen":{"1001":["c"],"1005":["a","b"]}}',
        '{"v":2,"since":1005,"seen":{"1005":["7"]},"tie":{"at":1005,"after":7}}',
        '{"v":2,"scan":{"started":1005,"after":"301"},"seen":{"1003":["9"]}}',
    ]:
        assert open_keyset_read(text, overlap_ms=10, now_ms=2000).cursor() == text
    for text in [
        '{"v":2,"since":1005,"seen":{"1005":["7"]},"archived":{"since":990}}',
        '{"v":2,"since":1005,"seen":{"1005":["7"]},"archived":{"since":990,"started":1100,"after":"42"}}',
    ]:
        assert open_keyset_read(text, overlap_ms=10, now_ms=2000, archived=True).cursor() == text


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
    dated=st.booleans(),
)
def test_keyset_reads_cut_short_anywhere_deliver_every_change_and_repeat_none(
    times, page_size, list_size, overlap, skew_share, edits, crashes, tie_seed, dated
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
        for count, (page, page_cursor) in enumerate(keyset_pages(crm, cursor, overlap_ms=overlap, skew_ms=skew,
                                                                   dated=dated), 1):
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
    final = keyset_read(crm, cursor, overlap_ms=overlap, skew_ms=skew, dated=dated)[0]
    committed += final
    assert len(committed) == len(set(committed)), "an (id, modified) pair was delivered twice"
    assert {(str(n), m) for n, m in crm.records.items()} <= set(committed), "a record's latest version was missed"


# Archived records: the pass that ends a HubSpot delta read.


def archives(delivered) -> list[tuple[str, int]]:
    return [(rid, at) for kind, rid, at in (d for d in delivered if len(d) == 3)]


def test_a_delta_read_ends_with_one_pass_delivering_what_was_archived_since_the_last():
    crm = FakeCrm(list(range(6)), page_size=10, list_size=10)
    crm.archive([1], gap=1)
    _, cursor = keyset_read(crm, archived=True)
    crm.clock += 100
    cursor = keyset_read(crm, cursor, archived=True)[1]
    crm.archive([2, 3], gap=1)
    crm.lists = 0
    delivered, cursor = keyset_read(crm, cursor, archived=True)
    # Record 1 was archived before the previous pass: it is not delivered again.
    assert archives(delivered) == [("2", crm.clock), ("3", crm.clock)]
    assert crm.lists == 1
    assert json.loads(cursor)["archived"] == {"since": crm.clock}
    assert keyset_read(crm, cursor, archived=True)[0] == []


def test_an_archived_pass_cut_short_resumes_where_it_stopped_and_still_reaches_back():
    crm = FakeCrm(list(range(9)), page_size=10, list_size=2)
    cursor = full_then_delta(crm)
    crm.archive([1, 2, 3, 4, 5])
    pages = keyset_pages(crm, cursor, overlap_ms=0, archived=True)
    first = []
    for page, cursor in pages:
        first += page
        if json.loads(cursor).get("archived", {}).get("after"):
            break
    pages.close()
    assert json.loads(cursor)["archived"] == {"since": 1008, "started": 1009, "after": "3"}
    # While the process is down: one record ahead of the pass, and one behind it
    # (restored, then archived again).
    crm.archive([6])
    crm.restore([1])
    crm.archive([1])
    rest, cursor = keyset_read(crm, cursor, archived=True)
    assert sorted(archives(first + rest)) == [*((str(n), 1009) for n in range(1, 6)), ("6", 1010)]
    assert json.loads(cursor)["archived"] == {"since": 1009}
    assert archives(keyset_read(crm, cursor, archived=True)[0]) == [("1", 1012)]


def test_a_restored_record_comes_back_through_the_search():
    crm = FakeCrm(list(range(3)), page_size=10, list_size=10)
    cursor = full_then_delta(crm)
    crm.archive([2])
    delivered, cursor = keyset_read(crm, cursor, archived=True)
    assert delivered == [("archived", "2", 1003)]
    crm.restore([2])
    assert keyset_read(crm, cursor, archived=True)[0] == [("2", 1004)]


def test_an_archived_list_that_answers_the_same_page_again_stops_the_pass():
    window = open_keyset_read('{"v":2,"since":1000,"seen":{},"archived":{"since":900,"started":1000,"after":"4"}}',
                              overlap_ms=0, now_ms=2000, archived=True)
    window.page_done(has_more=False)
    assert window.next_archived_page() and window.archived_after == "4"
    with pytest.raises(CursorStuck, match="same page"):
        window.archived_page_done(next_after="4")


archive_events = st.lists(
    st.tuples(
        st.integers(1, 25),  # after which page (counted over every read)
        st.sampled_from(["archive", "restore", "edit"]),
        st.lists(st.integers(1, 30), max_size=4),  # the records
        st.integers(1, 3),  # how far the clock moved
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(st.integers(0, 6), max_size=30),
    page_size=st.integers(1, 5),
    list_size=st.integers(1, 5),
    overlap=st.integers(0, 4),
    skew_share=st.floats(-1, 1),
    events=archive_events,
    crashes=st.lists(st.integers(1, 12), max_size=4),
)
def test_archives_and_restores_between_pages_and_crashes_are_each_delivered_once(
    times, page_size, list_size, overlap, skew_share, events, crashes
):
    """Records archived, restored and edited between pages of reads cut short anywhere.

    Every record's final state is delivered (its live version, or when it was
    archived), and nothing twice.
    """
    crm = FakeCrm(times, page_size=page_size, list_size=list_size)
    skew = round(skew_share * overlap)
    committed: list = []
    cursor = None
    pages_read = 0
    for stop_after in [*crashes, None, None]:
        pages = keyset_pages(crm, cursor, overlap_ms=overlap, skew_ms=skew, archived=True)
        for count, (page, page_cursor) in enumerate(pages, 1):
            committed += page
            cursor = page_cursor
            pages_read += 1
            assert pages_read < 400, "the reads do not end"
            for at_page, kind, numbers, gap in events:
                if at_page == pages_read:
                    if kind == "edit":
                        crm.bulk_edit(numbers, gap=gap)
                    else:
                        getattr(crm, kind)(numbers, gap=gap)
            if stop_after is not None and count >= stop_after:
                break
    committed += keyset_read(crm, cursor, overlap_ms=overlap, skew_ms=skew, archived=True)[0]
    assert len(committed) == len(set(committed)), "a version or an archive was delivered twice"
    final = {(str(n), m) for n, m in crm.records.items()} | {("archived", str(n), at) for n, at in crm.archived.items()}
    assert final <= set(committed), "a record's final state was missed"
