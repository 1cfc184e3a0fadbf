"""Schema drift, decided on plain data: which mapped fields vanished or changed type."""
import pytest

from connections.providers.base import FieldInfo
from mappings.drift import Drift, MappedField, drift_message, schema_drift

NOW = [FieldInfo("FNAME", "First Name", "text"), FieldInfo("SCORE", "Score", "number"),
       FieldInfo("email_address", "Email address", "email")]


@pytest.mark.parametrize(("mapped", "expected"), [
    # Nothing changed.
    ([MappedField("Mailchimp", "FNAME", "text")], []),
    # The type was never recorded: only a removal counts.
    ([MappedField("Mailchimp", "SCORE", "")], []),
    ([MappedField("Mailchimp", "JOBTITLE", "")], [Drift("Mailchimp", "JOBTITLE", "", None)]),
    # Removed, with a type recorded.
    ([MappedField("Mailchimp", "LNAME", "text")], [Drift("Mailchimp", "LNAME", "text", None)]),
    # Changed type.
    ([MappedField("Mailchimp", "SCORE", "text")], [Drift("Mailchimp", "SCORE", "text", "number")]),
    # Names compare exactly: a merge tag in other letters is another field.
    ([MappedField("Mailchimp", "fname", "text")], [Drift("Mailchimp", "fname", "text", None)]),
    # A field mapped twice (read and written by two mappings) drifts once.
    ([MappedField("Mailchimp", "LNAME", "text"), MappedField("Mailchimp", "LNAME", "text")],
     [Drift("Mailchimp", "LNAME", "text", None)]),
    # Several at once, in mapping order.
    ([MappedField("Mailchimp", "SCORE", "text"), MappedField("Mailchimp", "FNAME", "text"),
      MappedField("Mailchimp", "PHONE", "phone")],
     [Drift("Mailchimp", "SCORE", "text", "number"), Drift("Mailchimp", "PHONE", "phone", None)]),
    ([], []),
])
def test_schema_drift(mapped, expected):
    assert schema_drift(mapped, NOW) == expected


def test_a_system_reporting_no_fields_has_lost_every_mapped_one():
    mapped = [MappedField("HubSpot", "email", "string"), MappedField("HubSpot", "jobtitle", "")]
    assert [drift.field for drift in schema_drift(mapped, [])] == ["email", "jobtitle"]


@pytest.mark.parametrize(("drift", "message"), [
    (Drift("Mailchimp", "JOBTITLE", "text", None), "The field JOBTITLE in Mailchimp was removed."),
    (Drift("HubSpot", "score", "string", "number"), "The field score in HubSpot changed from string to number."),
])
def test_each_drift_says_what_changed_for_people(drift, message):
    assert drift.message == message


def test_the_pause_reason_names_every_field_and_system_and_what_to_do():
    text = drift_message([Drift("Mailchimp", "JOBTITLE", "text", None), Drift("HubSpot", "score", "string", "number")])
    assert text.startswith("Paused before writing anything:")
    assert "JOBTITLE in Mailchimp was removed" in text
    assert "score in HubSpot changed from string to number" in text
    assert "resume" in text
