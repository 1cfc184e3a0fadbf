"""What a mapping may be: each refusal, as a table, and the mappings that pass."""
import pytest

from connections.providers.base import FieldInfo
from mappings.validation import MappingDraft, Role, mapping_problems

HUBSPOT, MAILCHIMP = 1, 2
NAMES = {HUBSPOT: "HubSpot", MAILCHIMP: "Mailchimp"}
CATALOGS = {
    HUBSPOT: [
        FieldInfo("email", "Email", "string", "email"),
        FieldInfo("firstname", "First Name", "string", "text"),
        FieldInfo("jobtitle", "Job Title", "string", "text"),
        FieldInfo("phone", "Phone Number", "string", "phone"),
        FieldInfo("date_of_birth", "Date of birth", "date", "date"),
        FieldInfo("lifecyclestage", "Lifecycle Stage", "enumeration", "enum", options=("lead", "customer")),
        FieldInfo("hs_email_optout", "Unsubscribed from all email", "bool", "bool", read_only=True),
        FieldInfo("createdate", "Create Date", "datetime", "datetime", read_only=True),
        FieldInfo("hs_lead_score", "Lead score", "number", "number", calculated=True),
        FieldInfo("num_employees", "Employees", "number", "number"),
    ],
    MAILCHIMP: [
        FieldInfo("email_address", "Email address", "email", "email", required=True),
        FieldInfo("FNAME", "First Name", "text", "text", max_length=25),
        FieldInfo("PHONE", "Phone Number", "phone", "phone"),
        FieldInfo("BIRTHDAY", "Birthday", "birthday", "birthday"),
        FieldInfo("SCORE", "Score", "number", "number"),
        FieldInfo("JOB", "Job title", "text", "text", max_length=255),
    ],
}
# The sync's stored mappings the drafts are checked against.
STORED = [
    MappingDraft(HUBSPOT, "email", "email", "in", ["trim", "lowercase"], is_owner=True, pk=1),
    MappingDraft(HUBSPOT, "first_name", "firstname", "in", ["trim"], is_owner=True, pk=2),
    MappingDraft(MAILCHIMP, "email", "email_address", "out", [], pk=3),
    MappingDraft(MAILCHIMP, "first_name", "FNAME", "out", [], pk=4),
]


def problems(connection, hub_field, external_field, direction="both", transforms=(), *, is_owner=None,
             policy="owner_wins", pk=None, catalog=True, siblings=STORED, role=None):
    if is_owner is None:
        # A system read with owner wins needs an owner: this one, unless another owns it.
        is_owner = direction != "out" and not any(
            other.hub_field == hub_field and other.is_owner and other.connection_id != connection for other in siblings)
    draft = MappingDraft(connection, hub_field, external_field, direction, list(transforms), is_owner=is_owner,
                         conflict_policy=policy, pk=pk)
    return mapping_problems(draft, catalog=CATALOGS[connection] if catalog else None, system=NAMES[connection],
                            siblings=siblings, system_names=NAMES, role=role)


@pytest.mark.parametrize(
    ("case", "arguments", "keywords", "form_field", "reason"),
    [
        ("unknown field", (HUBSPOT, "attributes.job_title", "jobtitel", "in"), {}, "external_field",
         "jobtitel is not a field of HubSpot. Did you mean jobtitle?"),
        ("unknown merge field", (MAILCHIMP, "company", "COMPANYX", "out"), {}, "external_field",
         "COMPANYX is not a field of Mailchimp."),
        ("fields never discovered", (HUBSPOT, "company", "company", "in"), {"catalog": False}, "external_field",
         "have not been discovered yet"),
        ("read-only target written", (HUBSPOT, "email_consent", "hs_email_optout", "both", ["optout_flag"]), {},
         "external_field", "hs_email_optout is read-only in HubSpot and cannot be written"),
        ("read-only target written out", (HUBSPOT, "attributes.created", "createdate", "out", ["date"]), {},
         "external_field", "createdate is read-only in HubSpot"),
        ("calculated target",
         (HUBSPOT, "attributes.score", "hs_lead_score", "out", [{"name": "value_map", "map": {"1": "a"}}]),
         {}, "external_field", "calculated by the system"),
        ("text into a number", (MAILCHIMP, "company", "SCORE", "out"), {}, "external_field",
         "SCORE (number) in Mailchimp cannot hold a text value"),
        ("phone into a date", (HUBSPOT, "phone", "date_of_birth", "out"), {}, "external_field",
         "cannot hold a phone value"),
        ("a number read into the phone is fine, a date is not", (HUBSPOT, "phone", "date_of_birth", "in"), {},
         "external_field", "cannot take the date values"),
        ("transform not fitting the kind", (MAILCHIMP, "phone", "PHONE", "out", ["title_case"]), {}, "transforms",
         "title_case cannot apply to a phone field"),
        ("date format not fitting a birthday", (MAILCHIMP, "attributes.birthday", "BIRTHDAY", "out",
                                               [{"name": "date", "format": "epoch_ms"}]), {}, "transforms",
         "cannot apply to a birthday field"),
        ("date step saved without its format", (HUBSPOT, "attributes.born", "date_of_birth", "in", ["trim", "date"]),
         {}, "transforms", "Date format: choose the system's format; the step cannot work without it."),
        ("one-way date step without its format", (MAILCHIMP, "attributes.birthday", "BIRTHDAY", "out",
                                                  [{"name": "date", "direction": "out"}]), {}, "transforms",
         "Date format: choose the system's format"),
        ("malformed transform", (MAILCHIMP, "company", "JOB", "out", [{"name": "value_map"}]), {}, "transforms",
         "value_map"),
        ("unknown transform", (MAILCHIMP, "company", "JOB", "out", ["shout"]), {}, "transforms",
         "unknown transform"),
        ("hub field mapped twice", (MAILCHIMP, "first_name", "JOB", "out"), {}, "hub_field",
         "first_name is already mapped for Mailchimp"),
        ("external field mapped twice", (MAILCHIMP, "last_name", "FNAME", "out"), {}, "external_field",
         "FNAME is already mapped to first_name for Mailchimp"),
        ("unknown hub field", (MAILCHIMP, "job", "JOB", "out"), {}, "hub_field", "job is not a hub field"),
        ("hostile custom attribute", (MAILCHIMP, "attributes.<script>", "JOB", "out"), {}, "hub_field",
         "is not a hub field"),
        ("two owners", (MAILCHIMP, "first_name", "FNAME", "both"), {"is_owner": True, "pk": 4}, "is_owner",
         "HubSpot already owns first_name"),
        ("no owner for owner wins", (MAILCHIMP, "attributes.job", "JOB", "both"), {"is_owner": False}, "is_owner",
         "'Owner wins' needs a system that owns"),
        ("an owner that is never read", (MAILCHIMP, "company", "JOB", "out"), {"is_owner": True}, "is_owner",
         "Only a system the sync reads can own a field"),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else None,
)
def test_refusals(case, arguments, keywords, form_field, reason):
    findings = problems(*arguments, **keywords)
    assert not findings.ok
    assert any(reason in message for message in findings.errors.get(form_field, [])), findings.errors


@pytest.mark.parametrize(
    ("arguments", "keywords"),
    [
        ((HUBSPOT, "attributes.job_title", "jobtitle", "in"), {}),
        ((HUBSPOT, "email_consent", "hs_email_optout", "in", ["optout_flag"]), {}),
        ((HUBSPOT, "phone", "phone", "in", ["phone_e164"]), {}),
        ((HUBSPOT, "lifecycle_stage", "lifecyclestage", "both"), {}),
        ((MAILCHIMP, "phone", "PHONE", "out"), {}),
        ((MAILCHIMP, "attributes.job_title", "JOB", "out", ["trim"]), {}),
        # A date format makes the number and the birthday the fields need.
        ((HUBSPOT, "attributes.joined", "num_employees", "out", [{"name": "date", "format": "epoch_ms"}]), {}),
        ((MAILCHIMP, "attributes.birthday", "BIRTHDAY", "out", [{"name": "date", "format": "birthday"}]), {}),
        ((MAILCHIMP, "company", "SCORE", "out", [{"name": "value_map", "map": {"1": "Acme"}}]), {}),
        # Editing a stored mapping does not collide with itself.
        ((MAILCHIMP, "first_name", "FNAME", "out", ["trim", "truncate"]), {"pk": 4}),
        # Another system owning the field is what a reader that does not own it needs.
        ((MAILCHIMP, "first_name", "FNAME", "both", ["truncate"]), {"is_owner": False, "pk": 4}),
        ((MAILCHIMP, "attributes.job", "JOB", "both"), {"is_owner": False, "policy": "most_recent"}),
    ],
)
def test_mappings_that_can_work_pass(arguments, keywords):
    findings = problems(*arguments, **keywords)
    assert findings.ok, findings.errors


def test_a_destination_shorter_than_the_hub_value_is_a_warning_until_truncated():
    warned = problems(MAILCHIMP, "first_name", "FNAME", "out", pk=4)
    assert warned.ok
    assert warned.warnings == ["FNAME holds at most 25 characters; longer First name values will be record errors "
                               "in Mailchimp. Add a truncate transform to cut them to 25 instead."]
    assert problems(MAILCHIMP, "first_name", "FNAME", "out", ["truncate"], pk=4).warnings == []
    # Truncating only on the way in does not shorten what is written.
    assert problems(MAILCHIMP, "first_name", "FNAME", "out", [{"name": "truncate", "direction": "in"}],
                    pk=4).warnings


def test_first_and_last_name_may_share_a_full_name_field_and_nothing_else_may():
    stored = [*STORED, MappingDraft(MAILCHIMP, "first_name", "JOB", "out",
                                    [{"name": "full_name", "part": "first"}], pk=5)]
    stored = [draft for draft in stored if draft.pk != 4]
    last = problems(MAILCHIMP, "last_name", "JOB", "out", [{"name": "full_name", "part": "last"}], siblings=stored)
    assert "external_field" not in last.errors, last.errors
    again = problems(MAILCHIMP, "last_name", "JOB", "out", [{"name": "full_name", "part": "first"}], siblings=stored)
    assert "only a full name" in again.errors["external_field"][0]


def test_a_field_refused_for_several_reasons_lists_each():
    findings = problems(MAILCHIMP, "first_name", "FNAME", "both", is_owner=True)
    assert set(findings.errors) == {"hub_field", "external_field", "is_owner"}


READ_ONLY, WRITE_ONLY, READ_AND_WRITE = Role(read=True, written=False), Role(read=False, written=True), Role()


@pytest.mark.parametrize(
    ("case", "arguments", "role", "reason"),
    [
        ("into the hub from a system only written", (MAILCHIMP, "company", "JOB", "in"), WRITE_ONLY,
         "The sync only writes to Mailchimp; map this field out to Mailchimp (Out of the hub), or let the sync read "
         "Mailchimp in the sync's settings."),
        ("both ways with a system only written", (MAILCHIMP, "company", "JOB", "both"), WRITE_ONLY,
         "The sync only writes to Mailchimp; map this field out to Mailchimp only (Out of the hub), or let the sync "
         "read Mailchimp in the sync's settings."),
        ("out of the hub to a system only read", (HUBSPOT, "attributes.job_title", "jobtitle", "out"), READ_ONLY,
         "The sync only reads HubSpot; map this field into the hub (Into the hub), or let the sync write to HubSpot "
         "in the sync's settings."),
        ("both ways with a system only read", (HUBSPOT, "attributes.job_title", "jobtitle", "both"), READ_ONLY,
         "The sync only reads HubSpot; map this field into the hub only (Into the hub), or let the sync write to "
         "HubSpot in the sync's settings."),
        ("a system neither read nor written", (HUBSPOT, "attributes.job_title", "jobtitle", "in"),
         Role(read=False, written=False),
         "The sync neither reads nor writes HubSpot: choose its role in the sync's settings first."),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else None,
)
def test_a_direction_the_sync_does_not_carry_is_refused_with_what_to_change(case, arguments, role, reason):
    findings = problems(*arguments, role=role)
    assert findings.errors.get("direction") == [reason], findings.errors


@pytest.mark.parametrize(
    ("arguments", "role"),
    [
        ((HUBSPOT, "attributes.job_title", "jobtitle", "in"), READ_ONLY),
        ((MAILCHIMP, "company", "JOB", "out"), WRITE_ONLY),
        ((HUBSPOT, "attributes.job_title", "jobtitle", "in"), READ_AND_WRITE),
        ((MAILCHIMP, "company", "JOB", "out"), READ_AND_WRITE),
        ((HUBSPOT, "lifecycle_stage", "lifecyclestage", "both"), READ_AND_WRITE),
    ],
)
def test_a_direction_the_sync_carries_passes(arguments, role):
    findings = problems(*arguments, role=role)
    assert findings.ok, findings.errors


@pytest.mark.parametrize(("role", "direction"), [(READ_ONLY, "in"), (WRITE_ONLY, "out"), (READ_AND_WRITE, "both")])
def test_a_new_mapping_starts_with_the_widest_direction_its_role_carries(role, direction):
    assert role.widest_direction == direction
    assert role.carries(direction)
