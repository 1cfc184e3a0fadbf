"""mappings.services: which way a saved change alters values, for the backfill it asks."""
import pytest

from mappings.services import changed_direction

BASE = {"connection_id": 1, "hub_field": "first_name", "external_field": "firstname", "direction": "both",
        "transforms": [{"name": "trim"}], "is_owner": True, "conflict_policy": "manual",
        "never_overwrite_with_empty": True}


@pytest.mark.parametrize(
    ("change", "way"),
    [
        ({"transforms": [{"name": "trim"}, {"name": "uppercase", "direction": "in"}]}, "in"),
        ({"transforms": [{"name": "trim"}, {"name": "uppercase", "direction": "out"}]}, "out"),
        ({"transforms": [{"name": "trim"}, {"name": "uppercase"}]}, "both"),
        ({"transforms": [{"name": "trim", "direction": "in"}]}, "out"),
        ({"external_field": "first"}, "both"),
        ({"is_owner": False}, "both"),
        ({"direction": "in"}, "both"),
    ],
)
def test_a_change_of_one_ways_transforms_is_that_way_and_anything_else_both(change, way):
    assert changed_direction(BASE, {**BASE, **change}) == way
