"""Field discovery through the provider interface: HubSpot properties and Mailchimp merge fields, from the sandbox."""
import uuid

import pytest
import requests
import responses

from connections.models import Connection
from connections.providers.base import FIELD_KINDS, FieldCreationNotSupported, ProviderConfig
from connections.providers.mailchimp import merge_tag_for
from connections.registry import build_provider
from mappings.discovery import DiscoveryFailed, field_create
from mappings.models import FieldCatalog


def hubspot(sandbox):
    return build_provider("hubspot", ProviderConfig(base_url=sandbox.hubspot_url, access_token=sandbox.hubspot_token,
                                                    budget_key=f"test-{uuid.uuid4()}"))


def mailchimp(sandbox):
    return build_provider("mailchimp", ProviderConfig(base_url=sandbox.mailchimp_url, api_key=sandbox.mailchimp_key,
                                                      settings={"list_id": sandbox.list_id},
                                                      budget_key=f"test-{uuid.uuid4()}"))


def add_merge_field(sandbox, **body):
    response = requests.post(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields", json=body,
                             auth=("any", sandbox.mailchimp_key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.integration
def test_hubspot_properties_come_with_kinds_options_and_what_may_not_be_written(sandbox):
    fields = {field.name: field for field in hubspot(sandbox).discover_fields()}
    expected = {
        # name: (type, kind, read_only, calculated)
        "email": ("string", "email", False, False),
        "firstname": ("string", "text", False, False),
        "phone": ("string", "phone", False, False),
        "lifecyclestage": ("enumeration", "enum", False, False),
        "hs_email_optout": ("bool", "bool", True, False),
        "hs_additional_emails": ("enumeration", "enum", True, False),
        "createdate": ("datetime", "datetime", True, False),
        "hs_object_id": ("number", "number", True, False),
        "hs_email_domain": ("string", "text", True, True),
    }
    for name, (type_, kind, read_only, calculated) in expected.items():
        field = fields[name]
        assert (field.type, field.kind, field.read_only, field.calculated) == (type_, kind, read_only, calculated), name
    assert fields["firstname"].label == "First Name"
    assert fields["firstname"].writable and not fields["hs_email_optout"].writable
    assert not fields["hs_email_domain"].writable
    assert "customer" in fields["lifecyclestage"].options
    assert fields["hs_email_optout"].options == ("true", "false")
    assert all(field.kind in FIELD_KINDS for field in fields.values())


@responses.activate
def test_hidden_hubspot_properties_are_left_out_and_dates_and_checkboxes_get_their_kinds():
    responses.get("https://hubspot.test/crm/v3/properties/contacts", json={"results": [
        {"name": "date_of_birth", "label": "Date of birth", "type": "date", "fieldType": "date"},
        {"name": "interests", "label": "Interests", "type": "enumeration", "fieldType": "checkbox",
         "options": [{"value": "a", "label": "A"}, {"value": "gone", "label": "Gone", "hidden": True}]},
        {"name": "hs_internal", "label": "Internal", "type": "string", "hidden": True},
    ]})
    provider = build_provider("hubspot", ProviderConfig(base_url="https://hubspot.test", access_token="t",
                                                        budget_key=str(uuid.uuid4())))
    fields = {field.name: field for field in provider.discover_fields()}
    assert set(fields) == {"date_of_birth", "interests"}
    assert fields["date_of_birth"].kind == "date"
    assert (fields["interests"].kind, fields["interests"].options) == ("enum", ("a",))


@pytest.mark.integration
def test_mailchimp_lists_the_fixed_fields_then_the_merge_fields_with_kinds_sizes_and_choices(sandbox):
    add_merge_field(sandbox, name="Plan", type="dropdown", tag="PLAN", required=True,
                    options={"choices": ["Free", "Pro"]})
    add_merge_field(sandbox, name="Website", type="url", tag="SITE")
    add_merge_field(sandbox, name="Signed up", type="date", tag="SIGNUP")
    add_merge_field(sandbox, name="Score", type="number", tag="SCORE")
    add_merge_field(sandbox, name="Zip", type="zip", tag="ZIP")
    fields = mailchimp(sandbox).discover_fields()
    by_name = {field.name: field for field in fields}
    assert [field.name for field in fields[:3]] == ["email_address", "status", "tags"]
    assert [(by_name[n].kind, by_name[n].required) for n in ("email_address", "status", "tags")] == [
        ("email", True), ("consent", False), ("tags", False)]
    expected = {
        # tag: (type, kind, max_length)
        "FNAME": ("text", "text", 255),
        "ADDRESS": ("address", "address", None),
        "PHONE": ("phone", "phone", 255),
        "BIRTHDAY": ("birthday", "birthday", None),
        "PLAN": ("dropdown", "enum", None),
        "SITE": ("url", "url", 255),
        "SIGNUP": ("date", "date", None),
        "SCORE": ("number", "number", None),
        "ZIP": ("zip", "text", 255),
    }
    for tag, (type_, kind, max_length) in expected.items():
        assert (by_name[tag].type, by_name[tag].kind, by_name[tag].max_length) == (type_, kind, max_length), tag
    assert by_name["FNAME"].label == "First Name"
    assert (by_name["PLAN"].required, by_name["PLAN"].options) == (True, ("Free", "Pro"))
    assert not by_name["FNAME"].required


@pytest.mark.parametrize(("label", "taken", "tag"), [
    ("Job title", set(), "JOB_TITLE"),
    ("Lifecycle stage", set(), "LIFECYCLE"),
    ("Company", {"COMPANY"}, "COMPANY2"),
    ("Company", {"COMPANY", "COMPANY2"}, "COMPANY3"),
    ("Very long label here", {"VERY_LONG"}, "VERY_LONG2"),
    ("2nd address", set(), "ND_ADDRESS"),
    ("Почтовый индекс", set(), "FIELD"),
    ("<script>alert(1)</script>", set(), "SCRIPTALER"),
])
def test_merge_tags_are_derived_from_the_label_within_mailchimps_rules(label, taken, tag):
    derived = merge_tag_for(label, taken)
    assert derived == tag
    assert 1 <= len(derived) <= 10 and derived[0].isalpha() and derived not in taken


def test_a_kind_mailchimp_has_no_type_for_is_refused_before_any_call():
    provider = build_provider("mailchimp", ProviderConfig(base_url="http://mc.invalid/3.0", api_key="k-us1",
                                                          settings={"list_id": "abc"}))
    with pytest.raises(FieldCreationNotSupported, match="no merge field type for tags"):
        provider.create_field(label="Labels", kind="tags")


@pytest.mark.integration
@pytest.mark.django_db
def test_a_merge_field_created_through_field_create_is_then_discovered(sandbox, django_user_model):
    user = django_user_model.objects.create_user("marketer")
    connection = Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                                           api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})
    add_merge_field(sandbox, name="Job", type="text", tag="JOB_TITLE")

    created = field_create(connection=connection, label="Job title", kind="text", user=user)
    assert (created.name, created.label, created.type, created.max_length) == ("JOB_TITLE2", "Job title", "text", 255)
    assert "JOB_TITLE2" in {field.name for field in mailchimp(sandbox).discover_fields()}
    catalog = FieldCatalog.objects.get(connection=connection)
    assert "JOB_TITLE2" in {row["name"] for row in catalog.fields}

    birthday = field_create(connection=connection, label="Birthday 2", kind="birthday", user=user)
    assert (birthday.type, birthday.kind) == ("birthday", "birthday")


@pytest.mark.integration
@pytest.mark.django_db
def test_a_label_mailchimp_refuses_is_a_discovery_failure_with_its_reason(sandbox, django_user_model):
    user = django_user_model.objects.create_user("marketer")
    connection = Connection.objects.create(name="Mailchimp", provider="mailchimp", base_url=sandbox.mailchimp_url,
                                           api_key=sandbox.mailchimp_key, settings={"list_id": sandbox.list_id})
    with pytest.raises(DiscoveryFailed, match="name"):
        field_create(connection=connection, label="x" * 101, kind="text", user=user)
    with pytest.raises(DiscoveryFailed, match="no merge field type"):
        field_create(connection=connection, label="Labels", kind="tags", user=user)
    assert sandbox.mailchimp_key not in str(FieldCatalog.objects.filter(connection=connection).values_list("error"))


@pytest.mark.integration
@pytest.mark.django_db
def test_hubspot_cannot_create_fields_from_syncapp(sandbox, django_user_model):
    connection = Connection.objects.create(name="HubSpot", provider="hubspot", base_url=sandbox.hubspot_url,
                                           access_token=sandbox.hubspot_token)
    with pytest.raises(DiscoveryFailed, match="cannot be created"):
        field_create(connection=connection, label="Job", kind="text", user=django_user_model.objects.create_user("m"))


def test_the_email_opt_out_is_read_only_even_when_hubspot_metadata_does_not_say_so():
    from connections.providers.hubspot import _field_info

    info = _field_info({"name": "hs_email_optout", "label": "Unsubscribed from all email", "type": "bool",
                        "fieldType": "booleancheckbox", "modificationMetadata": {"readOnlyValue": False}})
    assert (info.read_only, info.writable) == (True, False)
