"""Named transforms: each converts a value into the hub's form and back."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.transforms import (
    TRANSFORMS,
    InvalidTransformSpec,
    TransformChain,
    TransformContext,
    TransformError,
    build_transform,
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
        for name in TRANSFORMS:
            spec = {"name": name, "map": {"a": "b"}} if name == "value_map" else name
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
