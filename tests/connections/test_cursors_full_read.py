"""A full read asked for while delta reads are under way (resync, backfill) loses none of their window."""
import json

from connections.providers.cursors import ScanWindow, full_scan_cursor, open_keyset_read
from tests.connections.test_cursors import FakeCrm, keyset_read


def archived_ids(delivered) -> set[str]:
    return {entry[1] for entry in delivered if entry[0] == "archived"}


def test_without_a_cursor_a_full_read_is_a_plain_scan():
    assert json.loads(full_scan_cursor(None, now_ms=5000)) == {"v": 2, "scan": {"started": 5000, "after": None},
                                                               "seen": {}}


def test_records_archived_before_a_full_read_began_are_still_delivered_after_it():
    crm = FakeCrm(list(range(6)), page_size=10, list_size=10)
    _, cursor = keyset_read(crm, archived=True)
    _, cursor = keyset_read(crm, cursor, archived=True)
    # Archived after the last delta, before the resync: the scan's list leaves them out.
    crm.archive([2, 4], gap=5)
    crm.bulk_edit([], gap=5)
    delivered, cursor = keyset_read(crm, full_scan_cursor(cursor, now_ms=crm.clock), archived=True)
    assert {entry[0] for entry in delivered} == {"1", "3", "5", "6"}
    delivered, _ = keyset_read(crm, cursor, archived=True)
    assert archived_ids(delivered) == {"2", "4"}


def test_a_plain_scan_from_nothing_would_have_missed_them():
    """The window the full-read cursor keeps: what a scan started from no cursor loses."""
    crm = FakeCrm(list(range(6)), page_size=10, list_size=10)
    _, cursor = keyset_read(crm, archived=True)
    _, cursor = keyset_read(crm, cursor, archived=True)
    crm.archive([2, 4], gap=5)
    crm.bulk_edit([], gap=5)
    _, cursor = keyset_read(crm, None, archived=True)
    delivered, _ = keyset_read(crm, cursor, archived=True)
    assert archived_ids(delivered) == set()


def test_records_archived_during_the_full_read_are_delivered_once():
    crm = FakeCrm(list(range(4)), page_size=10, list_size=2)
    _, cursor = keyset_read(crm, archived=True)
    _, cursor = keyset_read(crm, cursor, archived=True)
    window = open_keyset_read(full_scan_cursor(cursor, now_ms=crm.clock), overlap_ms=0, now_ms=crm.clock,
                              archived=True)
    assert isinstance(window, ScanWindow)
    records, next_after = crm.list_page(window.after)
    for rid, modified in records:
        window.admit(rid, modified)
    window.page_done(next_after=next_after)
    crm.archive([1, 4])
    delivered, cursor = keyset_read(crm, window.cursor(), archived=True)
    delivered, cursor = keyset_read(crm, cursor, archived=True)
    assert archived_ids(delivered) == {"1", "4"}
    assert archived_ids(keyset_read(crm, cursor, archived=True)[0]) == set()


def test_a_scan_under_way_keeps_its_own_start_as_what_it_owes():
    scan = json.dumps({"v": 2, "scan": {"started": 1200, "after": "40"}, "seen": {}})
    assert json.loads(full_scan_cursor(scan, now_ms=3000))["archived"] == {"since": 1200}


def test_a_cursor_that_cannot_be_read_is_reset_by_the_full_read():
    for broken in ("not json", '{"v": 9}', '{"v": 2, "since": "x"}'):
        assert json.loads(full_scan_cursor(broken, now_ms=3000)) == {
            "v": 2, "scan": {"started": 3000, "after": None}, "seen": {}}


def test_a_delta_cursor_that_never_passed_over_archived_records_owes_all_of_them():
    assert json.loads(full_scan_cursor('{"v": 2, "since": null, "seen": {}}', now_ms=3000))["archived"] == {
        "since": 0}
