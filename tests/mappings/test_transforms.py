"""Named transforms: each converts a value into the hub's form and back."""
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connections.providers.base import FIELD_KINDS
from mappings.transforms import (
    NAME_PARTICLES,
    TRANSFORM_INFO,
    TRANSFORMS,
    InvalidTransformSpec,
    TransformChain,
    TransformContext,
    TransformError,
    build_transform,
    full_name_part,
    shared_field_error,
    transform_fit_errors,
    transform_spec_errors,
)

US = TransformContext(phone_region="US")
GB = TransformContext(phone_region="GB")


def to_hub(specs, value, context=US):
    return TransformChain(specs).to_hub(value, context)


def to_external(specs, value, context=US):
    return TransformChain(specs).to_external(value, context)


class TestText:
    def test_trim(self):
        assert to_hub(["trim"], "  Ann \t") == "Ann"
        assert to_external(["trim"], " Ann ") == "Ann"

    def test_case(self):
        assert to_hub(["lowercase"], "ÀNN") == "ànn"
        assert to_hub(["uppercase"], "us") == "US"
        assert to_external(["uppercase"], "gb") == "GB"

    def test_whitespace_only_becomes_empty(self):
        assert to_hub(["trim"], "   ") == ""

    def test_non_text_passes_through(self):
        assert to_hub(["trim", "lowercase"], None) is None
        assert to_hub(["trim"], 42) == 42

    def test_no_transforms_is_identity(self):
        assert to_hub([], "  x ") == "  x "
        assert not TransformChain([])
        assert not TransformChain(None)


class TestPhone:
    def test_national_numbers_use_the_connection_region(self):
        assert to_hub(["phone_e164"], "(415) 555-0100", US) == "+14155550100"
        assert to_hub(["phone_e164"], "020 7946 0958", GB) == "+442079460958"

    def test_e164_goes_out_as_is(self):
        assert to_external(["phone_e164"], "+14155550100") == "+14155550100"

    def test_empty_is_no_phone(self):
        assert to_hub(["phone_e164"], "") is None
        assert to_hub(["trim", "phone_e164"], "  ") is None

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [("1-800-FLOWERS", "letters"), ("call me maybe", "not a phone"), ("+1 415 555 0100 ext. 12", "extension")],
    )
    def test_bad_numbers_are_field_errors_naming_the_value(self, raw, reason):
        with pytest.raises(TransformError, match=reason) as caught:
            to_hub(["phone_e164"], raw)
        assert repr(raw) in str(caught.value)


class TestDate:
    def test_iso_both_ways(self):
        assert to_hub(["date"], "1990-02-28") == "1990-02-28"
        assert to_hub([{"name": "date", "format": "iso"}], "1990-02-28T10:00:00Z") == "1990-02-28"
        assert to_external(["date"], "1990-02-28") == "1990-02-28"

    def test_impossible_dates_are_clear_field_errors(self):
        with pytest.raises(TransformError, match=r"'1990-02-30' is not a real date \(day is out of range for month\)"):
            to_hub(["date"], "1990-02-30")
        with pytest.raises(TransformError, match="not a real date"):
            to_hub([{"name": "date", "format": "%m/%d/%Y"}], "02/30/1990")

    def test_provider_formats(self):
        us = [{"name": "date", "format": "%m/%d/%Y"}]
        assert to_hub(us, "02/28/1990") == "1990-02-28"
        assert to_external(us, "1990-02-28") == "02/28/1990"
        eu = [{"name": "date", "format": "%d/%m/%Y"}]
        assert to_hub(eu, "28/02/1990") == "1990-02-28"

    def test_wrong_format_names_the_expected_one(self):
        with pytest.raises(TransformError, match="format MM/DD/YYYY"):
            to_hub([{"name": "date", "format": "%m/%d/%Y"}], "1990-02-28")
        with pytest.raises(TransformError, match="format YYYY-MM-DD"):
            to_hub(["date"], "yesterday")

    def test_hubspot_epoch_milliseconds(self):
        spec = [{"name": "date", "format": "epoch_ms"}]
        assert to_hub(spec, "634953600000") == "1990-02-14"
        assert to_external(spec, "1990-02-14") == 634953600000
        with pytest.raises(TransformError, match="milliseconds"):
            to_hub(spec, "soon")

    def test_empty_dates_stay_empty(self):
        assert to_hub(["date"], "") == ""
        assert to_external(["date"], None) is None

    def test_hostile_date(self, hostile_contacts):
        (row,) = [row for row in hostile_contacts if "birthday" in row]
        with pytest.raises(TransformError):
            to_hub(["date"], row["birthday"])

    @given(st.dates())
    def test_round_trip(self, day):
        for fmt in ("iso", "%m/%d/%Y", "%d.%m.%Y", "epoch_ms"):
            spec = [{"name": "date", "format": fmt}]
            assert to_hub(spec, to_external(spec, day.isoformat())) == day.isoformat()


class TestValueMap:
    spec = [{"name": "value_map", "map": {"customer": "Customer", "lead": "Lead", "client": "Customer"}}]

    def test_maps_both_ways(self):
        assert to_hub(self.spec, "lead") == "Lead"
        assert to_external(self.spec, "Lead") == "lead"

    def test_the_first_listed_external_value_goes_out(self):
        assert to_hub(self.spec, "client") == "Customer"
        assert to_external(self.spec, "Customer") == "customer"

    def test_unmapped_values_are_field_errors(self):
        with pytest.raises(TransformError, match="'vip' is not one of the mapped values"):
            to_hub(self.spec, "vip")
        with pytest.raises(TransformError, match="no external value"):
            to_external(self.spec, "VIP")

    def test_empty_passes(self):
        assert to_hub(self.spec, "") == ""


class TestOptoutFlag:
    @pytest.mark.parametrize("raw", ["true", "TRUE", True, "1", "yes"])
    def test_an_opt_out_is_an_unsubscribe(self, raw):
        assert to_hub(["optout_flag"], raw) == "unsubscribed"

    @pytest.mark.parametrize("raw", ["false", False, "", None, "0"])
    def test_anything_else_is_no_statement(self, raw):
        assert to_hub(["optout_flag"], raw) is None

    def test_garbage_is_a_field_error(self):
        with pytest.raises(TransformError, match="opt-out flag"):
            to_hub(["optout_flag"], "perhaps")

    def test_out_only_opt_outs_are_stated(self):
        assert to_external(["optout_flag"], "unsubscribed") == "true"
        assert to_external(["optout_flag"], "cleaned") == "true"
        assert to_external(["optout_flag"], "subscribed") is None
        assert to_external(["trim", "optout_flag"], "unknown") is None


class TestSpecs:
    def test_out_runs_in_reverse(self):
        chain = [{"name": "value_map", "map": {"A": "x"}}, "uppercase"]
        # In: the map turns "A" into "x", then uppercase makes "X". Out: uppercase runs
        # first ("x" -> "X"), then the map, which has no entry for "X".
        assert to_hub(chain, "A") == "X"
        with pytest.raises(TransformError):
            to_external(chain, "x")  # uppercased to "X", which the map does not know

    def test_every_registered_transform_builds_from_its_name_or_spec(self):
        params = {"value_map": {"map": {"a": "b"}}, "default_if_empty": {"value": "x"}, "full_name": {"part": "first"}}
        for name in TRANSFORMS:
            spec = {"name": name, **params[name]} if name in params else name
            assert build_transform(spec).name == name

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("titlecase", "unknown transform 'titlecase'"),
            ({"name": "value_map"}, "`map` must be"),
            ({"name": "date", "format": ""}, "`format` must be"),
            (42, "is not a transform name"),
            ({"map": {}}, "is not a transform name"),
        ],
    )
    def test_bad_specs_are_named(self, spec, message):
        with pytest.raises(InvalidTransformSpec, match=message):
            TransformChain([spec])
        assert transform_spec_errors([spec]) == [str(pytest.raises(InvalidTransformSpec, build_transform, spec).value)]

    def test_spec_list_checks(self):
        assert transform_spec_errors(["trim", "phone_e164"]) == []
        assert transform_spec_errors("trim") == ["transforms must be a list"]


def test_hostile_values_survive_text_transforms(hostile_contacts):
    for row in hostile_contacts:
        for value in (row["firstname"], row["lastname"]):
            assert to_hub(["trim"], value) == value.strip()


def hostile_texts(rows):
    for row in rows:
        for key in ("firstname", "lastname", "email", "birthday"):
            if isinstance(row.get(key), str):
                yield row[key]


class TestDirections:
    def test_a_step_marked_in_runs_only_into_the_hub(self):
        chain = ["trim", {"name": "uppercase", "direction": "in"}]
        assert to_hub(chain, " gb ") == "GB"
        assert to_external(chain, "gb ") == "gb"

    def test_a_step_marked_out_runs_only_out_of_the_hub(self):
        chain = [{"name": "default_if_empty", "value": "Unknown", "direction": "out"}]
        assert to_external(chain, "") == "Unknown"
        assert to_hub(chain, "") == ""

    def test_each_direction_is_an_ordered_chain(self):
        chain = TransformChain(
            ["trim", {"name": "lowercase", "direction": "in"}, {"name": "uppercase", "direction": "out"}])
        assert [t.name for t in chain.inbound] == ["trim", "lowercase"]
        # Out runs the outbound steps in reverse.
        assert [t.name for t in chain.outbound] == ["uppercase", "trim"]

    def test_a_bad_direction_is_a_spec_error(self):
        assert transform_spec_errors([{"name": "trim", "direction": "sideways"}]) == [
            "trim: `direction` must be 'in', 'out' or 'both'"]


class TestTitleCase:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("ANN LEE", "Ann Lee"),
            ("ann lee", "Ann Lee"),
            ("anne-marie", "Anne-Marie"),
            ("o'neil", "O'Neil"),
            ("D\u2019ANGELO", "D\u2019Angelo"),
            ("mcdonald", "McDonald"),
            ("McDonald", "McDonald"),
            ("DeVries", "DeVries"),
            ("mack", "Mack"),
            ("ANN VAN DER BERG", "Ann van der Berg"),
            ("van der berg", "van der Berg"),
            ("van", "Van"),
            ("josé ÁLVAREZ", "José Álvarez"),
            ("ΟΔΥΣΣΕΑΣ", "Οδυσσεας"),
            ("ИВАН ПЕТРОВ", "Иван Петров"),
            ("山田太郎", "山田太郎"),
            ("محمد", "محمد"),
            ("  ann  ", "  Ann  "),
        ],
    )
    def test_names_in_any_script(self, raw, expected):
        assert to_hub(["title_case"], raw) == expected
        assert to_external(["title_case"], raw) == expected

    @given(st.text(max_size=60))
    def test_idempotent(self, text):
        once = to_hub(["title_case"], text)
        assert to_hub(["title_case"], once) == once
        assert len(once) == len(text)

    def test_hostile_text_is_only_recased(self, hostile_contacts):
        for text in hostile_texts(hostile_contacts):
            result = to_hub(["title_case"], text)
            assert result.lower() == text.lower() or len(result) == len(text)

    def test_empty_and_non_text(self):
        assert to_hub(["title_case"], None) is None
        assert to_hub(["title_case"], "") == ""


class TestMoreDates:
    @pytest.mark.parametrize(
        ("fmt", "external", "hub"),
        [
            ("iso", "1990-02-28", "1990-02-28"),
            ("YYYY-MM-DD", "1990-02-28", "1990-02-28"),
            ("MM/DD/YYYY", "02/28/1990", "1990-02-28"),
            ("%m/%d/%Y", "02/28/1990", "1990-02-28"),
            ("iso_datetime", "1990-02-28T00:00:00+00:00", "1990-02-28"),
            ("epoch_ms", 636163200000, "1990-02-28"),
            ("birthday", "02/28", "--02-28"),
            ("MM/DD", "02/29", "--02-29"),
        ],
    )
    def test_each_format_both_ways(self, fmt, external, hub):
        spec = [{"name": "date", "format": fmt}]
        assert to_hub(spec, external) == hub
        assert to_external(spec, hub) == external

    def test_iso_datetime_reads_the_date_in_the_offset_written(self):
        spec = [{"name": "date", "format": "iso_datetime"}]
        assert to_hub(spec, "1990-02-28T23:30:00-05:00") == "1990-02-28"
        assert to_hub(spec, "1990-02-28T10:00:00Z") == "1990-02-28"
        with pytest.raises(TransformError, match="no UTC offset"):
            to_hub(spec, "1990-02-28T10:00:00")

    def test_a_full_hub_date_goes_out_as_a_birthday_without_its_year(self):
        spec = [{"name": "date", "format": "birthday"}]
        assert to_external(spec, "1990-07-04") == "07/04"

    @pytest.mark.parametrize(
        ("fmt", "raw", "reason"),
        [
            ("birthday", "13/01", "not a real day of the year"),
            ("birthday", "02/30", "not a real day of the year"),
            ("birthday", "2/3/1990", "not a birthday in the format MM/DD"),
            ("birthday", "Feb 3", "not a birthday in the format MM/DD"),
            ("epoch_ms", "9" * 10_000, "10000-character value is not a date"),
            ("epoch_ms", "9" * 30, "not a date in milliseconds"),
            ("epoch_ms", True, "is not a date"),
            ("iso", "2024-13-01", "not a real date"),
            ("iso", "1990-02-28 or so", "not a date in the format YYYY-MM-DD"),
            ("iso_datetime", "tomorrow", "not a date in the format ISO 8601"),
            ("%m/%d/%Y", "<script>alert(1)</script>", "not a date in the format MM/DD/YYYY"),
        ],
    )
    def test_unparseable_dates_are_field_errors(self, fmt, raw, reason):
        with pytest.raises(TransformError, match=reason):
            to_hub([{"name": "date", "format": fmt}], raw)

    @pytest.mark.parametrize("fmt", ["birthday", "iso_datetime", "epoch_ms", "iso"])
    def test_unparseable_hub_dates_are_field_errors_on_the_way_out(self, fmt):
        with pytest.raises(TransformError):
            to_external([{"name": "date", "format": fmt}], "not a date")

    def test_hostile_values_never_crash(self, hostile_contacts):
        for fmt in ("iso", "iso_datetime", "epoch_ms", "birthday", "%m/%d/%Y"):
            for text in hostile_texts(hostile_contacts):
                try:
                    result = to_hub([{"name": "date", "format": fmt}], text)
                except TransformError as error:
                    assert str(error)
                else:
                    assert result or not text.strip()

    @pytest.mark.parametrize("fmt", ["MM-DD", "%d/%m", "%m/%d/%y"])
    def test_patterns_that_cannot_round_trip_are_spec_errors(self, fmt):
        with pytest.raises(InvalidTransformSpec, match="a day"):
            build_transform({"name": "date", "format": fmt})

    @given(st.dates())
    def test_round_trip_of_the_new_formats(self, day):
        spec = [{"name": "date", "format": "iso_datetime"}]
        assert to_hub(spec, to_external(spec, day.isoformat())) == day.isoformat()

    @given(st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)))
    def test_birthday_round_trip(self, day):
        spec = [{"name": "date", "format": "birthday"}]
        partial = f"--{day.month:02d}-{day.day:02d}"
        assert to_hub(spec, to_external(spec, partial)) == partial


class TestValueMapForTagsAndMergeValues:
    stages = [{"name": "value_map", "map": {"Customer": "customer", "Prospect": ["lead", "mql", "sql"]}}]

    def test_several_hub_values_go_out_as_one(self):
        assert to_external(self.stages, "mql") == "Prospect"
        assert to_external(self.stages, "customer") == "Customer"
        assert to_hub(self.stages, "Prospect") == "lead"

    def test_default_for_hub_values_outside_the_map(self):
        spec = [{**self.stages[0], "default": "Other"}]
        assert to_external(spec, "evangelist") == "Other"
        with pytest.raises(TransformError, match="not one of the mapped values"):
            to_hub(spec, "Other")

    def test_hub_default_for_external_values_outside_the_map(self):
        spec = [{**self.stages[0], "hub_default": "other"}]
        assert to_hub(spec, "VIP") == "other"

    def test_round_trip_of_the_first_listed_values(self):
        for hub in ("customer", "lead"):
            assert to_hub(self.stages, to_external(self.stages, hub)) == hub

    def test_error_messages_stay_short_with_huge_values(self):
        with pytest.raises(TransformError) as caught:
            to_hub(self.stages, "x" * 10_000)
        assert len(str(caught.value)) < 300

    def test_lists_are_not_looked_up(self):
        with pytest.raises(TransformError, match="list or object"):
            to_hub(self.stages, ["a"])

    def test_nested_hub_values_are_spec_errors(self):
        with pytest.raises(InvalidTransformSpec, match="a value or a list of values"):
            build_transform({"name": "value_map", "map": {"a": {"b": 1}}})


class TestDefaultIfEmpty:
    def test_in_fills_the_hub(self):
        spec = [{"name": "default_if_empty", "value": "Unknown", "direction": "in"}]
        assert to_hub(spec, "") == "Unknown"
        assert to_hub(spec, "   ") == "Unknown"
        assert to_hub(spec, None) == "Unknown"
        assert to_hub(spec, "Acme") == "Acme"
        assert to_external(spec, "") == ""

    def test_both_ways_by_default(self):
        spec = [{"name": "default_if_empty", "value": "n/a"}]
        assert to_hub(spec, "") == "n/a"
        assert to_external(spec, None) == "n/a"
        assert TransformChain(spec).fills_empty_out

    @pytest.mark.parametrize("spec", [{"name": "default_if_empty"}, {"name": "default_if_empty", "value": ""},
                                      {"name": "default_if_empty", "value": {"a": 1}}])
    def test_a_value_is_required(self, spec):
        with pytest.raises(InvalidTransformSpec, match="`value` must be"):
            build_transform(spec)


class TestTruncate:
    def test_to_a_length(self):
        assert to_hub([{"name": "truncate", "length": 3}], "Annabel") == "Ann"
        assert to_external([{"name": "truncate", "length": 10}], "Ann") == "Ann"

    def test_to_the_destination_maximum(self):
        assert to_external(["truncate"], "Annabel", TransformContext(max_length=4)) == "Anna"
        assert to_external(["truncate"], "Annabel", TransformContext()) == "Annabel"

    @pytest.mark.parametrize(
        ("text", "length", "expected"),
        [
            ("Jose\u0301", 4, "Jos"),  # never an e without its accent
            ("\U0001f44d\U0001f3fd!", 1, "\U0001f44d"[:0]),  # a thumb without its skin tone is refused
            ("ab\U0001f1eb\U0001f1f7", 3, "ab"),  # never half a flag
            ("a\U0001f468\u200d\U0001f469", 2, "a"),  # never a joined emoji cut at the joiner
            ("\u05db\u05d4\u05df", 2, "\u05db\u05d4"),
        ],
    )
    def test_never_splits_a_character(self, text, length, expected):
        if expected == "":
            with pytest.raises(TransformError, match="without splitting"):
                to_hub([{"name": "truncate", "length": length}], text)
            return
        assert to_hub([{"name": "truncate", "length": length}], text) == expected

    def test_huge_values(self):
        assert to_hub([{"name": "truncate", "length": 255}], "é" * 10_000) == "é" * 255

    @pytest.mark.parametrize("length", [0, -1, "10", 2.5, True])
    def test_bad_lengths_are_spec_errors(self, length):
        with pytest.raises(InvalidTransformSpec, match="whole number"):
            build_transform({"name": "truncate", "length": length})

    @given(st.text(max_size=40), st.integers(min_value=1, max_value=40))
    def test_result_is_a_prefix_within_the_limit(self, text, length):
        try:
            result = to_hub([{"name": "truncate", "length": length}], text)
        except TransformError:
            return
        assert text.startswith(result) and len(result) <= length
        assert result or not text


def hub_of(first, last):
    return TransformContext(hub_values={"first_name": first, "last_name": last})


class TestFullName:
    first = [{"name": "full_name", "part": "first"}]
    last = [{"name": "full_name", "part": "last"}]

    @pytest.mark.parametrize(
        ("full", "first", "last"),
        [
            ("Ann Marie Lee", "Ann Marie", "Lee"),
            ("  Ann   Lee ", "Ann", "Lee"),
            ("Ann", "Ann", ""),
            ("Ann van der Berg", "Ann", "van der Berg"),
            ("Иван Петров", "Иван", "Петров"),
            ("山田太郎", "山田太郎", ""),
            ("", "", ""),
        ],
    )
    def test_split_into_the_hub(self, full, first, last):
        assert to_hub(self.first, full) == first
        assert to_hub(self.last, full) == last

    def test_join_out_of_the_hub_is_the_same_for_both_parts(self):
        for spec in (self.first, self.last):
            assert to_external(spec, "ignored", hub_of("Ann Marie", "Lee")) == "Ann Marie Lee"
        assert to_external(self.last, "", hub_of("", "Lee")) == "Lee"
        assert to_external(self.first, "Ann", hub_of("Ann", None)) == "Ann"
        assert to_external(self.first, "", hub_of("", "")) == ""

    def test_join_needs_the_hub_record(self):
        with pytest.raises(TransformError, match="needs the hub record"):
            to_external(self.first, "Ann")

    def test_non_text_is_an_error(self):
        with pytest.raises(TransformError, match="not a name"):
            to_hub(self.first, 42)

    def test_part_is_required(self):
        with pytest.raises(InvalidTransformSpec, match="`part` must be"):
            build_transform({"name": "full_name"})

    word = st.text(alphabet=st.characters(categories=("L",)), min_size=1, max_size=8).filter(
        lambda w: w.lower() not in NAME_PARTICLES)

    @given(st.lists(word, min_size=1, max_size=3), word)
    def test_round_trip(self, firsts, last):
        first = " ".join(firsts)
        full = to_external(self.first, first, hub_of(first, last))
        assert (to_hub(self.first, full), to_hub(self.last, full)) == (first, last)

    def test_hostile_names_round_trip(self, hostile_contacts):
        for row in hostile_contacts:
            first, last = row["firstname"].strip(), row["lastname"].strip()
            if not first or not last or " " in last or len(last.split()) != 1:
                continue
            full = to_external(self.first, first, hub_of(first, last))
            assert to_hub(self.last, full) == last


class TestSharedFields:
    first = [{"name": "full_name", "part": "first"}]
    last = [{"name": "full_name", "part": "last"}]

    def test_the_two_parts_of_a_full_name_may_share_a_field(self):
        assert shared_field_error(self.first, self.last, external_field="name") is None
        assert full_name_part(self.last) == "last"

    @pytest.mark.parametrize("other", [["trim"], [{"name": "full_name", "part": "first"}], []])
    def test_anything_else_may_not(self, other):
        assert "already the target of another mapping" in shared_field_error(self.first, other, external_field="name")

    def test_parts_joining_different_fields_may_not(self):
        other = [{"name": "full_name", "part": "last", "last_field": "attributes.surname"}]
        assert "different hub fields" in shared_field_error(self.first, other, external_field="name")


class TestFit:
    @pytest.mark.parametrize(
        ("specs", "external_kind", "hub_kind", "errors"),
        [
            (["phone_e164"], "phone", "phone", []),
            (["phone_e164"], "date", "phone", ["phone_e164 cannot apply to a date field"]),
            (["phone_e164"], "text", "text", ["phone_e164 cannot fill the hub's text field"]),
            (["title_case"], "number", "text", ["title_case cannot apply to a number field"]),
            ([{"name": "date", "format": "epoch_ms"}], "date", "date", []),
            ([{"name": "date", "format": "epoch_ms"}], "text", "date",
             ["date format milliseconds since 1970 at midnight UTC cannot apply to a text field"]),
            ([{"name": "date", "format": "birthday"}], "birthday", "birthday", []),
            ([{"name": "date", "format": "birthday"}], "date", "date",
             ["date format MM/DD cannot apply to a date field"]),
            ([{"name": "value_map", "map": {"VIP": "customer"}}], "tags", "enum", []),
            (["optout_flag"], "bool", "consent", []),
            (["optout_flag"], "text", "text",
             ["optout_flag cannot apply to a text field", "optout_flag cannot fill the hub's text field"]),
            (["truncate"], "bool", "text", ["truncate cannot apply to a bool field"]),
            ([{"name": "full_name", "part": "last"}], "text", "text", []),
            (["trim", "nonsense"], "text", "text", []),  # left to transform_spec_errors
            (["trim"], "blob", "text", ["'blob' is not a kind of field"]),
        ],
    )
    def test_fit_errors(self, specs, external_kind, hub_kind, errors):
        assert transform_fit_errors(specs, external_kind=external_kind, hub_kind=hub_kind) == errors

    def test_every_transform_has_editor_metadata(self):
        assert set(TRANSFORM_INFO) == set(TRANSFORMS)
        for name, info in TRANSFORM_INFO.items():
            assert info.label and info.help, name
            assert info.external_kinds <= set(FIELD_KINDS) and info.hub_kinds <= set(FIELD_KINDS), name
            for param in info.params:
                assert param.kind in ("text", "number", "choice", "map"), (name, param)
                assert bool(param.choices) == (param.kind == "choice"), (name, param)


class TestTrace:
    def test_each_step_shows_its_value(self):
        chain = TransformChain(["trim", "title_case", {"name": "truncate", "length": 3}])
        steps = chain.trace_to_hub("  annabel ", US)
        assert [(step.name, step.label, step.value, step.error) for step in steps] == [
            ("trim", "Trim spaces", "annabel", None),
            ("title_case", "Title case (names)", "Annabel", None),
            ("truncate", "Truncate", "Ann", None),
        ]

    def test_stops_at_the_failing_step(self):
        chain = TransformChain(["trim", "phone_e164", "uppercase"])
        steps = chain.trace_to_hub(" call me ", US)
        assert [step.name for step in steps] == ["trim", "phone_e164"]
        assert steps[-1].value is None and "not a phone" in steps[-1].error

    def test_out_runs_in_reverse_and_stops_at_no_statement(self):
        chain = TransformChain(["trim", "optout_flag"])
        steps = chain.trace_to_external("subscribed", US)
        assert [(step.name, step.value) for step in steps] == [("optout_flag", None)]
        chain = TransformChain(["trim", {"name": "date", "format": "birthday"}])
        assert [(s.name, s.value) for s in chain.trace_to_external("--07-04", US)] == [("date", "07/04"),
                                                                                      ("trim", "07/04")]

    def test_directions_are_respected(self):
        chain = TransformChain([{"name": "uppercase", "direction": "out"}])
        assert chain.trace_to_hub("ab", US) == []
        assert [step.value for step in chain.trace_to_external("ab", US)] == ["AB"]
