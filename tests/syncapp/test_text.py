"""Cleaning incoming text so that it can be stored and compared."""
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.text import REPLACEMENT, clean_text, clean_value


def test_nul_bytes_are_removed():
    assert clean_text("Nu\x00ll") == "Null"


def test_lone_surrogates_become_the_replacement_character():
    assert clean_text("a\ud800b") == f"a{REPLACEMENT}b"
    clean_text("a\udfffb").encode("utf-8")


def test_decomposed_accents_compare_equal_to_composed_ones():
    assert clean_text("Jose\u0301") == clean_text("Jos\u00e9") == "Jos\u00e9"


def test_peoples_data_is_otherwise_kept_as_written():
    kept = ["<script>alert(1)</script>", "=HYPERLINK(\"x\")", "Abc\u202efdp.exe", "Jo\u200bsé", "Ann\r\nBcc: x",
            "  ", "😀 Grin", "𠮷野家"]
    for value in kept:
        assert clean_text(value) == value


def test_nested_values_are_cleaned_and_other_types_kept():
    assert clean_value(["a\x00", {"k\x00": "v\x00"}, 3, None, True]) == ["a", {"k": "v"}, 3, None, True]


def test_the_hostile_data_set_becomes_storable(hostile_contacts):
    for row in hostile_contacts:
        cleaned = clean_value(row)
        for value in cleaned.values():
            assert "\x00" not in value
            value.encode("utf-8")


@given(st.text())
def test_any_text_becomes_storable_and_cleaning_is_idempotent(text):
    cleaned = clean_text(text)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")
    assert clean_text(cleaned) == cleaned
