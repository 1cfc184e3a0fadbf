"""Cutting work into provider-sized batches, and tidying overlapping read pages."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.batching import batch_size, chunk, json_size, latest_per_key, push_group_size


class TestBatchSize:
    def test_provider_maximum_by_default(self):
        assert batch_size(500) == 500
        assert batch_size(500, None) == 500
        assert batch_size(500, 0) == 500

    def test_smaller_request_is_honoured_and_larger_is_capped(self):
        assert batch_size(100, 25) == 25
        assert batch_size(100, 1000) == 100

    def test_a_provider_without_batches_is_a_programming_error(self):
        with pytest.raises(ValueError, match="at least 1"):
            batch_size(0)


class TestChunk:
    def test_splits_by_count(self):
        assert list(chunk(range(7), max_items=3)) == [[0, 1, 2], [3, 4, 5], [6]]

    def test_nothing_in_nothing_out(self):
        assert list(chunk([], max_items=3)) == []

    def test_splits_by_payload_size(self):
        items = ["a" * 8] * 5  # 10 bytes each as JSON
        assert [len(b) for b in chunk(items, max_items=100, max_bytes=25)] == [2, 2, 1]

    def test_an_oversized_item_travels_alone(self):
        items = ["x", "y" * 100, "z"]
        assert list(chunk(items, max_items=10, max_bytes=20)) == [["x"], ["y" * 100], ["z"]]

    def test_json_size_counts_utf8_bytes(self):
        assert json_size("é") == 4  # two quotes and two bytes

    def test_invalid_limit(self):
        with pytest.raises(ValueError):
            list(chunk([1], max_items=0))

    @given(st.lists(st.text(max_size=20), max_size=60), st.integers(1, 10), st.one_of(st.none(), st.integers(1, 80)))
    def test_batches_keep_order_and_limits(self, items, max_items, max_bytes):
        batches = list(chunk(items, max_items=max_items, max_bytes=max_bytes))
        assert [item for batch in batches for item in batch] == items
        for batch in batches:
            assert 1 <= len(batch) <= max_items
            if max_bytes is not None and len(batch) > 1:
                assert sum(json_size(item) for item in batch) <= max_bytes


class TestLatestPerKey:
    def test_the_later_copy_of_a_repeated_record_wins(self):
        rows = [("a", 1), ("b", 1), ("a", 2)]
        assert latest_per_key(rows, key=lambda row: row[0]) == [("b", 1), ("a", 2)]

    @given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers())))
    def test_one_per_key(self, rows):
        result = latest_per_key(rows, key=lambda row: row[0])
        assert len(result) == len({row[0] for row in rows})
        for key, value in result:
            assert value == [v for k, v in rows if k == key][-1]


def test_an_upsert_takes_the_providers_group_unless_the_marketer_chose_a_size():
    # HubSpot: 100 a write call, 1,000 an upsert (its unsubscribes span ten calls).
    assert push_group_size(100, 1000) == 1000
    assert push_group_size(100, None) == 100
    # A chosen size is the records per write call: one call per upsert, as chosen.
    assert push_group_size(100, 1000, 50) == 50
    assert push_group_size(100, 1000, 500) == 100
