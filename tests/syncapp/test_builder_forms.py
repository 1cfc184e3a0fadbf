"""The sync builder's forms: what they refuse, with the reason next to the field, and what they accept."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from connections.registry import provider_class
from mappings.models import FieldMapping
from syncapp.forms import SyncBuilder
from syncapp.models import Sync, SyncConnection
from syncapp.roles import MARKETER, REVIEWER
from syncapp.services.syncs import sync_builder_save
from tests.workspace import connection_make, user_with_role

pytestmark = pytest.mark.django_db

# Rows as the builder lists them: every connection, by name.
HUBSPOT, HUBSPOT_EU, MAILCHIMP = 0, 1, 2


@pytest.fixture
def marketer():
    return user_with_role("maria", MARKETER)


@pytest.fixture
def connections():
    return [
        connection_make("HubSpot", "hubspot", access_token="hs-token-0123456789"),
        connection_make("HubSpot EU", "hubspot", access_token="hs-token-9876543210"),
        connection_make("Mailchimp", "mailchimp", api_key="mc-key-0123456789-us1", settings={"list_id": "abc"}),
    ]


def form_data(connections, marketer, *, rows: dict[int, dict] | None = None, **fields) -> dict:
    """What a marketer posts for HubSpot (read) to Mailchimp (write, pending); overrides on top."""
    default_rows = {
        HUBSPOT: {"role": "read"},
        HUBSPOT_EU: {"role": ""},
        MAILCHIMP: {"role": "write", "new_member_status": "pending"},
    }
    chosen = {**default_rows, **(rows or {})}
    data = {
        "name": "HubSpot to Mailchimp",
        "owner": str(marketer.pk),
        "schedule": "interval",
        "schedule_minutes": "15",
        "schedule_cron": "",
        "batch_size": "",
        "delete_handling": "ignore",
        "endpoints-TOTAL_FORMS": str(len(chosen)),
        "endpoints-INITIAL_FORMS": str(len(chosen)),
    }
    for index, row in sorted(chosen.items()):
        connection = row.get("connection", connections[index].pk if index < len(connections) else "")
        data.update({
            f"endpoints-{index}-connection": str(connection),
            f"endpoints-{index}-role": row.get("role", ""),
            f"endpoints-{index}-new_member_status": row.get("new_member_status", ""),
            f"endpoints-{index}-new_member_legal_basis": row.get("new_member_legal_basis", ""),
        })
    data.update(fields)
    return data


def builder_for(data, marketer, sync=None) -> SyncBuilder:
    return SyncBuilder(data, sync=sync or Sync(owner=marketer), user=marketer)


def sync_field(name):
    return lambda builder: builder.form.errors.get(name, [])


def row_field(index, name):
    return lambda builder: builder.endpoints.forms[index].errors.get(name, [])


def connections_section(builder):
    return builder.endpoints.non_form_errors()


Where = Callable[[SyncBuilder], list]

REFUSALS: list[tuple[str, dict, Where, str]] = [
    # -- connections --
    ("fewer than two connections",
     {"rows": {HUBSPOT: {"role": "both"}, MAILCHIMP: {"role": ""}}},
     connections_section, "Choose at least two connections"),
    ("no connection at all",
     {"rows": {HUBSPOT: {"role": ""}, MAILCHIMP: {"role": ""}}},
     connections_section, "Choose at least two connections"),
    ("a connection listed twice",
     {"rows": {3: {"connection": "HUBSPOT", "role": "write"}}},
     row_field(3, "role"), "HubSpot is listed twice"),
    ("no connection read",
     {"rows": {HUBSPOT: {"role": "write"}}},
     connections_section, "No connection is read"),
    ("no connection written",
     {"rows": {MAILCHIMP: {"role": "read"}}},
     connections_section, "No connection is written"),
    ("a connection that does not exist",
     {"rows": {HUBSPOT_EU: {"connection": "99999999", "role": "read"}}},
     row_field(HUBSPOT_EU, "connection"), "Select a valid choice"),
    ("a role that does not exist",
     {"rows": {HUBSPOT: {"role": "sometimes"}}},
     row_field(HUBSPOT, "role"), "Select a valid choice"),
    # -- name --
    ("empty name", {"name": ""}, sync_field("name"), "Give the sync a name."),
    ("blank name", {"name": "   "}, sync_field("name"), "Give the sync a name."),
    ("name too long", {"name": "n" * 101}, sync_field("name"), "at most 100 characters (it has 101)"),
    ("name of 10,000 characters", {"name": "x" * 10_000}, sync_field("name"), "at most 100 characters"),
    ("name with a NUL", {"name": "Nu\x00ll"}, sync_field("name"), "Null characters are not allowed"),
    ("name taken", {"name": "TAKEN"}, sync_field("name"), "Another sync already has this name"),
    # -- schedule --
    ("interval of 0", {"schedule_minutes": "0"}, sync_field("schedule_minutes"), "at least 1 minute"),
    ("negative interval", {"schedule_minutes": "-5"}, sync_field("schedule_minutes"), "whole number of minutes"),
    ("interval not a number", {"schedule_minutes": "often"}, sync_field("schedule_minutes"), "whole number"),
    ("interval with a fraction", {"schedule_minutes": "1.5"}, sync_field("schedule_minutes"), "whole number"),
    ("interval absurdly long", {"schedule_minutes": "40000"}, sync_field("schedule_minutes"), "at most 32767 minutes"),
    ("interval past any integer", {"schedule_minutes": str(10**30)}, sync_field("schedule_minutes"), "at most 32767"),
    ("interval missing", {"schedule_minutes": ""}, sync_field("schedule_minutes"), "Enter the minutes"),
    ("cron with a bad minute", {"schedule": "cron", "schedule_cron": "61 * * * *"},
     sync_field("schedule_cron"), "The minute field “61” is not valid: use 0 to 59"),
    ("cron with too few fields", {"schedule": "cron", "schedule_cron": "0 6 *"},
     sync_field("schedule_cron"), "has 5 fields"),
    ("cron that never matches", {"schedule": "cron", "schedule_cron": "0 0 30 2 *"},
     sync_field("schedule_cron"), "never matches a real date"),
    ("cron chosen but empty", {"schedule": "cron", "schedule_cron": ""},
     sync_field("schedule_cron"), "Enter a cron expression"),
    ("cron of 10,000 characters", {"schedule": "cron", "schedule_cron": "*" * 10_000},
     sync_field("schedule_cron"), "at most 100 characters"),
    ("no schedule kind", {"schedule": ""}, sync_field("schedule"), "required"),
    ("unknown schedule kind", {"schedule": "sometimes"}, sync_field("schedule"), "Select a valid choice"),
    # -- new-member status --
    ("writing Mailchimp without a new-member status",
     {"rows": {MAILCHIMP: {"role": "write"}}},
     row_field(MAILCHIMP, "new_member_status"), "Choose the status new members get in Mailchimp"),
    ("subscribed without a legal basis",
     {"rows": {MAILCHIMP: {"role": "write", "new_member_status": "subscribed"}}},
     row_field(MAILCHIMP, "new_member_legal_basis"), "needs a legal basis"),
    ("subscribed with a blank legal basis",
     {"rows": {MAILCHIMP: {"role": "write", "new_member_status": "subscribed", "new_member_legal_basis": "  \n "}}},
     row_field(MAILCHIMP, "new_member_legal_basis"), "needs a legal basis"),
    ("a status Mailchimp does not offer",
     {"rows": {MAILCHIMP: {"role": "write", "new_member_status": "cleaned"}}},
     row_field(MAILCHIMP, "new_member_status"), "Mailchimp offers pending, transactional, subscribed"),
    ("a status for a system without statuses",
     {"rows": {HUBSPOT: {"role": "both", "new_member_status": "pending"}}},
     row_field(HUBSPOT, "new_member_status"), "HubSpot has no subscription status to give new records"),
    ("a legal basis of 10,000 characters",
     {"rows": {MAILCHIMP: {"role": "write", "new_member_status": "subscribed",
                           "new_member_legal_basis": "b" * 10_000}}},
     row_field(MAILCHIMP, "new_member_legal_basis"), "at most 2000 characters"),
    # -- batch size --
    ("batch size over Mailchimp's maximum", {"batch_size": "501"},
     sync_field("batch_size"), "Mailchimp takes at most 500 records per call"),
    ("batch size over HubSpot's maximum when HubSpot is written",
     {"batch_size": "101", "rows": {HUBSPOT: {"role": "both"}}},
     sync_field("batch_size"), "HubSpot takes at most 100 records per call"),
    ("batch size of 0", {"batch_size": "0"}, sync_field("batch_size"), "greater than or equal to 1"),
    ("negative batch size", {"batch_size": "-1"}, sync_field("batch_size"), "greater than or equal to 1"),
    ("batch size not a number", {"batch_size": "NaN"}, sync_field("batch_size"), "Enter a whole number"),
    # -- owner, delete handling --
    ("owner who is not a marketer", {"owner": "REVIEWER"}, sync_field("owner"), "Choose an active marketer"),
    ("no owner", {"owner": ""}, sync_field("owner"), "Choose who owns the sync"),
    ("unknown delete handling", {"delete_handling": "shred"}, sync_field("delete_handling"), "Select a valid choice"),
]


@pytest.mark.parametrize(("case", "change", "where", "message"), REFUSALS, ids=[case[0] for case in REFUSALS])
def test_the_builder_refuses_with_the_reason_next_to_the_field(case, change, where, message, connections, marketer):
    Sync.objects.create(name="TAKEN")
    reviewer = user_with_role("rita", REVIEWER)
    change = dict(change)
    rows = change.pop("rows", None)
    if rows:
        rows = {index: {**row,
                        **({"connection": connections[HUBSPOT].pk} if row.get("connection") == "HUBSPOT" else {})}
                for index, row in rows.items()}
    if change.get("owner") == "REVIEWER":
        change["owner"] = str(reviewer.pk)
    builder = builder_for(form_data(connections, marketer, rows=rows, **change), marketer)
    assert not builder.is_valid()
    errors = [str(error) for error in where(builder)]
    assert any(message in error for error in errors), (errors, builder.form.errors, builder.endpoints.errors,
                                                      builder.endpoints.non_form_errors())


def test_mailchimp_offers_the_three_new_member_statuses():
    assert provider_class("mailchimp").new_record_consent_states == ("pending", "transactional", "subscribed")


class TestValidForms:
    def test_an_interval_sync_from_one_system_to_another(self, connections, marketer):
        builder = builder_for(form_data(connections, marketer), marketer)
        assert builder.is_valid(), (builder.form.errors, builder.endpoints.errors)
        sync = sync_builder_save(sync=builder.form.instance, endpoints=builder.endpoint_instances(), user=marketer)
        assert (sync.name, sync.schedule_minutes, sync.schedule_cron, sync.owner, sync.batch_size) == (
            "HubSpot to Mailchimp", 15, "", marketer, None)
        endpoints = {e.connection.name: (e.read, e.write, e.new_member_status) for e in sync.endpoints.all()}
        assert endpoints == {"HubSpot": (True, False, ""), "Mailchimp": (False, True, "pending")}

    def test_a_cron_schedule_replaces_the_interval(self, connections, marketer):
        builder = builder_for(form_data(connections, marketer, schedule="cron", schedule_cron=" 0 6 * * 1-5 "),
                              marketer)
        assert builder.is_valid(), builder.form.errors
        assert (builder.form.cleaned_data["schedule_minutes"], builder.form.cleaned_data["schedule_cron"]) == (
            0, "0 6 * * 1-5")
        assert builder.next_run() is not None and (builder.next_run().hour, builder.next_run().minute) == (6, 0)

    def test_with_both_given_the_chosen_schedule_wins_and_the_other_input_is_ignored(self, connections, marketer):
        # Precedence, not a refusal: the radio says which input counts.
        builder = builder_for(form_data(connections, marketer, schedule="interval", schedule_minutes="30",
                                        schedule_cron="61 * * * *"), marketer)
        assert builder.is_valid(), builder.form.errors
        assert (builder.form.cleaned_data["schedule_minutes"], builder.form.cleaned_data["schedule_cron"]) == (30, "")
        builder = builder_for(form_data(connections, marketer, schedule="cron", schedule_minutes="often",
                                        schedule_cron="@daily"), marketer)
        assert builder.is_valid(), builder.form.errors
        assert (builder.form.cleaned_data["schedule_minutes"], builder.form.cleaned_data["schedule_cron"]) == (
            0, "@daily")

    def test_schedule_off(self, connections, marketer):
        builder = builder_for(form_data(connections, marketer, schedule="off", schedule_minutes="junk"), marketer)
        assert builder.is_valid(), builder.form.errors
        assert (builder.form.cleaned_data["schedule_minutes"], builder.form.cleaned_data["schedule_cron"]) == (0, "")
        assert builder.next_run() is None

    def test_subscribed_with_a_legal_basis(self, connections, marketer):
        rows = {MAILCHIMP: {"role": "write", "new_member_status": "subscribed",
                            "new_member_legal_basis": "Consent collected on the signup form"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer)
        assert builder.is_valid(), builder.endpoints.errors
        [_, mailchimp] = builder.endpoint_instances()
        assert (mailchimp.new_member_status, mailchimp.new_member_legal_basis) == (
            "subscribed", "Consent collected on the signup form")

    def test_a_legal_basis_is_kept_only_for_subscribed(self, connections, marketer):
        rows = {MAILCHIMP: {"role": "write", "new_member_status": "pending", "new_member_legal_basis": "Leftover"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer)
        assert builder.is_valid()
        assert builder.endpoint_instances()[1].new_member_legal_basis == ""

    def test_three_connections_with_each_role(self, connections, marketer):
        rows = {HUBSPOT: {"role": "both"}, HUBSPOT_EU: {"role": "read"}}
        builder = builder_for(form_data(connections, marketer, rows=rows, batch_size="100"), marketer)
        assert builder.is_valid(), (builder.form.errors, builder.endpoints.errors)
        assert [(e.connection.name, e.read, e.write) for e in builder.endpoint_instances()] == [
            ("HubSpot", True, True), ("HubSpot EU", True, False), ("Mailchimp", False, True)]

    def test_a_read_only_mailchimp_needs_no_new_member_status(self, connections, marketer):
        rows = {HUBSPOT: {"role": "write"}, MAILCHIMP: {"role": "read"}}
        assert builder_for(form_data(connections, marketer, rows=rows), marketer).is_valid()

    def test_a_status_left_checked_on_a_system_turned_read_only_is_dropped_not_refused(self, connections, marketer):
        # The status radio cannot be unchecked once the role changes to read; the model's
        # own check refused it at save, and the view turned that into a server error.
        rows = {HUBSPOT: {"role": "write"},
                MAILCHIMP: {"role": "read", "new_member_status": "subscribed", "new_member_legal_basis": "Form"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer)
        assert builder.is_valid(), builder.endpoints.errors
        (mailchimp,) = [e for e in builder.endpoint_instances() if e.connection.name == "Mailchimp"]
        assert (mailchimp.new_member_status, mailchimp.new_member_legal_basis) == ("", "")
        mailchimp.full_clean(exclude=["sync"])

    def test_batch_size_at_the_smallest_written_maximum(self, connections, marketer):
        assert builder_for(form_data(connections, marketer, batch_size="500"), marketer).is_valid()

    def test_hostile_names_are_accepted_as_text(self, connections, marketer, hostile_contacts):
        names = {record["firstname"].strip() for record in hostile_contacts}
        usable = sorted(name for name in names if name and "\x00" not in name and len(name) <= 100)
        assert len(usable) > 10
        for name in usable:
            builder = builder_for(form_data(connections, marketer, name=name), marketer)
            assert builder.is_valid(), (name, builder.form.errors)
            assert builder.form.cleaned_data["name"] == name

    def test_a_new_sync_is_owned_by_its_creator_unless_changed(self, connections, marketer):
        builder = SyncBuilder(None, sync=Sync(owner=marketer), user=marketer)
        assert builder.form["owner"].value() == marketer.pk
        assert builder.form["schedule"].value() == "interval"
        assert builder.form["schedule_minutes"].value() == 15
        # No new-member status is preselected: the marketer must choose.
        assert [form["new_member_status"].value() for form in builder.endpoints.forms] == ["", "", ""]
        assert [form["role"].value() for form in builder.endpoints.forms] == ["", "", ""]


class TestEditing:
    @pytest.fixture
    def sync(self, connections, marketer):
        builder = builder_for(form_data(connections, marketer), marketer)
        assert builder.is_valid()
        return sync_builder_save(sync=builder.form.instance, endpoints=builder.endpoint_instances(), user=marketer)

    def test_the_form_shows_the_stored_settings(self, sync, marketer):
        builder = SyncBuilder(None, sync=sync, user=marketer)
        assert [form["role"].value() for form in builder.endpoints.forms] == ["read", "", "write"]
        assert builder.endpoints.forms[MAILCHIMP]["new_member_status"].value() == "pending"

    def test_removing_a_connection_that_has_mappings_is_refused(self, sync, connections, marketer):
        FieldMapping.objects.create(sync=sync, connection=connections[MAILCHIMP], hub_field="email",
                                    external_field="email_address")
        rows = {HUBSPOT: {"role": "read"}, HUBSPOT_EU: {"role": "write"}, MAILCHIMP: {"role": ""}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert not builder.is_valid()
        assert "Mailchimp has 1 field mapping in this sync: delete them in the mapping editor first" in str(
            builder.endpoints.forms[MAILCHIMP].errors["role"])
        assert SyncConnection.objects.filter(sync=sync, connection=connections[MAILCHIMP]).exists()

    def test_removing_a_connection_without_mappings_deletes_its_endpoint(self, sync, connections, marketer):
        rows = {HUBSPOT: {"role": "read"}, HUBSPOT_EU: {"role": "write"}, MAILCHIMP: {"role": ""}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert builder.is_valid(), builder.endpoints.errors
        sync_builder_save(sync=builder.form.instance, endpoints=builder.endpoint_instances(), user=marketer)
        assert sorted(sync.endpoints.values_list("connection__name", flat=True)) == ["HubSpot", "HubSpot EU"]

    def mapped(self, sync, connection, *rows):
        for hub_field, external_field, direction in rows:
            FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                        external_field=external_field, direction=direction)

    def test_turning_reading_off_under_mappings_that_read_is_refused_naming_them(self, sync, connections, marketer):
        self.mapped(sync, connections[HUBSPOT], ("email", "email", "in"), ("first_name", "firstname", "in"),
                    ("last_name", "lastname", "both"), ("phone", "phone", "in"), ("company", "company", "in"),
                    ("attributes.job_title", "jobtitle", "out"))
        rows = {HUBSPOT: {"role": "write"}, HUBSPOT_EU: {"role": "read"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert not builder.is_valid()
        assert builder.endpoints.forms[HUBSPOT].errors["role"] == [
            "The sync would no longer read HubSpot, but 5 mappings read from it: Email (email), First name "
            "(firstname), Last name (lastname) and 2 more. Change them to Out of the hub, or delete them, in the "
            "mapping editor first; or keep reading HubSpot."]
        assert [(endpoint.read, endpoint.write) for endpoint in sync.endpoints.filter(connection=connections[HUBSPOT])
                ] == [(True, False)]

    def test_turning_writing_off_under_a_mapping_that_writes_is_refused_naming_it(self, sync, connections, marketer):
        self.mapped(sync, connections[MAILCHIMP], ("email", "email_address", "out"))
        rows = {HUBSPOT_EU: {"role": "write"}, MAILCHIMP: {"role": "read", "new_member_status": "pending"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert not builder.is_valid()
        assert builder.endpoints.forms[MAILCHIMP].errors["role"] == [
            "The sync would no longer write to Mailchimp, but 1 mapping writes to it: Email (email_address). Change "
            "it to Into the hub, or delete it, in the mapping editor first; or keep writing to Mailchimp."]

    @pytest.mark.parametrize(("hubspot_role", "mailchimp_role"), [("both", "write"), ("read", "both")])
    def test_a_role_that_still_carries_every_mapping_is_saved(self, sync, connections, marketer, hubspot_role,
                                                             mailchimp_role):
        self.mapped(sync, connections[HUBSPOT], ("email", "email", "in"), ("company", "company", "both"))
        self.mapped(sync, connections[MAILCHIMP], ("email", "email_address", "out"))
        rows = {HUBSPOT: {"role": hubspot_role},
                MAILCHIMP: {"role": mailchimp_role, "new_member_status": "pending"}}
        builder = builder_for(form_data(connections, marketer, rows=rows), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert builder.is_valid(), builder.endpoints.errors

    def test_a_role_left_as_it_was_is_not_refused_for_mappings_saved_before_directions_were_checked(
            self, sync, connections, marketer):
        # Both ways with HubSpot only read: the editor flags it, but the sync's other settings still save.
        self.mapped(sync, connections[HUBSPOT], ("email", "email", "both"))
        builder = builder_for(form_data(connections, marketer, name="Renamed"), marketer,
                              sync=Sync.objects.get(pk=sync.pk))
        assert builder.is_valid(), builder.endpoints.errors

    def test_its_own_name_is_not_taken(self, sync, connections, marketer):
        builder = builder_for(form_data(connections, marketer), marketer, sync=Sync.objects.get(pk=sync.pk))
        assert builder.is_valid(), builder.form.errors
