"""Suggestions for unmapped hub fields: by normalized name, label and kind."""
import pytest

from connections.providers.base import FieldInfo
from mappings.suggest import best_field, normalize, suggest_fields

HUBSPOT = [
    FieldInfo("email", "Email", "string", "email"),
    FieldInfo("firstname", "First Name", "string", "text"),
    FieldInfo("lastname", "Last Name", "string", "text"),
    FieldInfo("phone", "Phone Number", "string", "phone"),
    FieldInfo("mobilephone", "Mobile Phone Number", "string", "phone"),
    FieldInfo("company", "Company Name", "string", "text"),
    FieldInfo("lifecyclestage", "Lifecycle Stage", "enumeration", "enum", options=("lead", "customer")),
    FieldInfo("hs_email_optout", "Unsubscribed from all email", "bool", "bool", read_only=True),
    FieldInfo("createdate", "Create Date", "datetime", "datetime", read_only=True),
]
MAILCHIMP = [
    FieldInfo("email_address", "Email address", "email", "email"),
    FieldInfo("status", "Status", "status", "consent"),
    FieldInfo("FNAME", "First Name", "text", "text", max_length=25),
    FieldInfo("LNAME", "Last Name", "text", "text", max_length=25),
    FieldInfo("PHONE", "Phone Number", "phone", "phone"),
    FieldInfo("BIRTHDAY", "Birthday", "birthday", "birthday"),
    FieldInfo("COMPANY", "Company", "text", "text", max_length=25),
]


@pytest.mark.parametrize(
    ("hub_name", "hub_kind", "fields", "expected"),
    [
        ("first_name", "text", HUBSPOT, "firstname"),
        ("first_name", "text", MAILCHIMP, "FNAME"),
        ("last_name", "text", HUBSPOT, "lastname"),
        ("last_name", "text", MAILCHIMP, "LNAME"),
        ("phone", "phone", HUBSPOT, "phone"),
        ("phone", "phone", MAILCHIMP, "PHONE"),
        ("company", "text", HUBSPOT, "company"),
        ("company", "text", MAILCHIMP, "COMPANY"),
        ("email", "email", HUBSPOT, "email"),
        ("email", "email", MAILCHIMP, "email_address"),
        ("lifecycle_stage", "text", HUBSPOT, "lifecyclestage"),
        ("email_consent", "consent", MAILCHIMP, "status"),
        ("email_consent", "consent", HUBSPOT, "hs_email_optout"),
        ("attributes.birthday", "text", MAILCHIMP, None),
        ("lifecycle_stage", "text", MAILCHIMP, None),
        ("sms_consent", "consent", MAILCHIMP, None),
    ],
)
def test_best_field_by_name_label_and_kind(hub_name, hub_kind, fields, expected):
    found = best_field(hub_name=hub_name, hub_kind=hub_kind, fields=fields)
    assert (found.field.name if found else None) == expected


def test_a_field_of_a_kind_that_cannot_hold_the_value_is_never_suggested():
    fields = [FieldInfo("phone", "Phone", "date", "date"), FieldInfo("tel", "Tel", "string", "phone")]
    assert [s.field.name for s in suggest_fields(hub_name="phone", hub_kind="phone", fields=fields)] == ["tel"]


def test_fields_already_mapped_are_left_out():
    found = suggest_fields(hub_name="phone", hub_kind="phone", fields=HUBSPOT, taken=["phone"])
    assert [s.field.name for s in found] == ["mobilephone"]


def test_a_writable_field_ranks_above_a_read_only_one():
    fields = [FieldInfo("company", "Company", "string", "text", read_only=True),
              FieldInfo("organization", "Organization", "string", "text")]
    found = suggest_fields(hub_name="company", hub_kind="text", fields=fields)
    assert [s.field.name for s in found] == ["organization", "company"]
    assert "read-only" in found[1].reason


def test_hostile_and_long_labels_match_nothing_and_break_nothing(hostile_contacts):
    fields = [FieldInfo(f"f{i}", record["firstname"] or "x", "string", "text")
              for i, record in enumerate(hostile_contacts)]
    fields.append(FieldInfo("long", "x" * 10_000, "string", "text"))
    assert best_field(hub_name="first_name", hub_kind="text", fields=fields) is None


@pytest.mark.parametrize(("text", "folded"), [("First Name", "firstname"), ("first_name", "firstname"),
                                                ("FNAME ", "fname"), ("Phone-Number", "phonenumber")])
def test_normalize(text, folded):
    assert normalize(text) == folded
