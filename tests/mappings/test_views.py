"""The mapping editor's pages: fields side by side, add, edit and delete, refusals, roles, new fields."""
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.urls import reverse

from audit.models import AuditEvent
from connections.models import Connection
from connections.providers.base import FieldInfo
from mappings.discovery import field_catalog_store
from mappings.models import FieldMapping
from syncapp.models import Sync, SyncConnection, SyncRun
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db

HUBSPOT_FIELDS = [
    FieldInfo("email", "Email", "string", "email"),
    FieldInfo("firstname", "First Name", "string", "text"),
    FieldInfo("jobtitle", "Job Title", "string", "text"),
    FieldInfo("phone", "Phone Number", "string", "phone"),
    FieldInfo("hs_email_optout", "Unsubscribed from all email", "bool", "bool", read_only=True),
    FieldInfo("createdate", "Create Date", "datetime", "datetime", read_only=True),
]
MAILCHIMP_FIELDS = [
    FieldInfo("email_address", "Email address", "email", "email", required=True),
    FieldInfo("FNAME", "First Name", "text", "text", max_length=25),
    FieldInfo("PHONE", "Phone Number", "phone", "phone"),
    FieldInfo("JOBTITLE", "Job title", "text", "text", max_length=255),
    FieldInfo("SCORE", "Score", "number", "number"),
]


def catalog_store(connection, fields):
    field_catalog_store(connection=connection, fields=fields)


@pytest.fixture
def workspace():
    sync = workspace_make()
    hubspot, mailchimp = Connection.objects.get(name="HubSpot"), Connection.objects.get(name="Mailchimp")
    catalog_store(hubspot, HUBSPOT_FIELDS)
    catalog_store(mailchimp, MAILCHIMP_FIELDS)
    # workspace_make's mappings with the owner the editor expects of a field read with owner wins.
    FieldMapping.objects.filter(connection=hubspot).update(is_owner=True)
    # As after the sync's first run: a mapping changed before it needs no backfill.
    sync.endpoints.filter(read=True).update(cursor="read-once")
    return sync, hubspot, mailchimp


@pytest.fixture
def marketer(client):
    client.force_login(user_with_role("maria", MARKETER))
    return client


def form_data(connection, hub_field, external_field, direction="out", chain=(), **fields):
    data = {
        "connection": connection.pk, "hub_field": hub_field, "external_field": f"{connection.pk}:{external_field}",
        "direction": direction, "conflict_policy": "owner_wins", "never_overwrite_with_empty": "on",
        "chain-TOTAL_FORMS": str(len(chain) + 1), "chain-INITIAL_FORMS": "0", "chain-MIN_NUM_FORMS": "0",
        "chain-MAX_NUM_FORMS": "12", "action": "save",
    }
    for index, row in enumerate([*chain, {}]):
        data[f"chain-{index}-name"] = row.get("name", "")
        data[f"chain-{index}-applies"] = row.get("applies", "both")
        data[f"chain-{index}-ORDER"] = str(row.get("order", index + 1)) if row else ""
        for key, value in row.items():
            if key not in ("name", "applies", "order"):
                data[f"chain-{index}-{row['name']}__{key}"] = value
    data.update(fields)
    return data


def stored_mappings(sync):
    return list(FieldMapping.objects.filter(sync=sync).order_by("pk").values())


def test_the_editor_shows_hub_and_system_fields_side_by_side_with_mappings_and_suggestions(marketer, workspace):
    sync, hubspot, mailchimp = workspace
    page = marketer.get(reverse("mapping_editor", args=[sync.pk])).content.decode()
    for text in ("Job Title", "jobtitle", "hs_email_optout", "read-only", "max 25", "FNAME", "Phone (E.164)"):
        assert text in page
    # Phone is unmapped: HubSpot's phone and Mailchimp's PHONE are suggested, with a link that preselects them.
    phone_row = page[page.index('data-hub-field="phone"'):page.index('data-hub-field="first_name"')]
    assert f"connection={hubspot.pk}&amp;hub_field=phone&amp;external_field=phone" in phone_row
    assert f"connection={mailchimp.pk}&amp;hub_field=phone&amp;external_field=PHONE" in phone_row
    # The stored FNAME mapping has no truncate: the editor says what happens to long names.
    assert "FNAME holds at most 25 characters" in page


def test_an_email_platform_written_without_any_consent_mapping_is_flagged(marketer, workspace):
    sync, hubspot, mailchimp = workspace
    url = reverse("mapping_editor", args=[sync.pk])
    FieldMapping.objects.filter(sync=sync, hub_field="email_consent").delete()
    page = marketer.get(url).content.decode()
    assert 'data-testid="consent-unmapped"' in page
    assert "an opt-out made in another system never reaches <bdi>Mailchimp</bdi>" in page

    FieldMapping.objects.create(sync=sync, connection=hubspot, hub_field="email_consent",
                                external_field="hs_email_optout", direction="in", transforms=["optout_flag"])
    assert 'data-testid="consent-unmapped"' not in marketer.get(url).content.decode()


def test_a_hub_field_mailchimp_has_no_field_for_offers_to_create_one(marketer, workspace):
    sync, _, mailchimp = workspace
    page = marketer.get(reverse("mapping_editor", args=[sync.pk])).content.decode()
    row = page[page.index('data-hub-field="lifecycle_stage"'):page.index('data-hub-field="email_consent"')]
    create = reverse("mapping_field_create", args=[sync.pk, mailchimp.pk])
    assert f"{create}?hub_field=lifecycle_stage" in row
    form = marketer.get(create, {"hub_field": "lifecycle_stage"}).content.decode()
    assert 'value="Lifecycle stage"' in form
    assert 'name="for_hub_field" value="lifecycle_stage"' in form


def test_hostile_and_long_field_labels_and_options_are_escaped(marketer, workspace, hostile_contacts):
    sync, hubspot, _ = workspace
    names = [record["firstname"] for record in hostile_contacts]
    fields = [FieldInfo(f"hostile_{index}", name or "x", "enumeration", "enum", options=tuple(names))
              for index, name in enumerate(names)]
    fields.append(FieldInfo("x" * 10_000, "y" * 10_000, "string", "text", options=("z" * 10_000,)))
    catalog_store(hubspot, [*HUBSPOT_FIELDS, *fields])
    response = marketer.get(reverse("mapping_editor", args=[sync.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '" onmouseover="alert(1)' not in page
    assert "y" * 10_000 in page
    form_page = marketer.get(reverse("mapping_add", args=[sync.pk])).content.decode()
    assert "<script>alert(1)</script>" not in form_page


# Committed for real, as a request is: the backfill is asked for once the mapping is stored.
@pytest.mark.django_db(transaction=True)
def test_adding_a_mapping_saves_the_catalog_type_audits_and_queues_a_backfill(marketer, workspace):
    sync, hubspot, _ = workspace
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(hubspot, "__custom__", "jobtitle", "in", attribute_name="job_title",
                                       is_owner="on"), follow=True)
    mapping = FieldMapping.objects.get(sync=sync, external_field="jobtitle")
    assert (mapping.hub_field, mapping.direction, mapping.external_type, mapping.is_owner) == (
        "attributes.job_title", "in", "string", True)
    event = AuditEvent.objects.get(action="mapping.created", object_id=str(mapping.pk))
    assert event.actor.username == "maria"
    run = SyncRun.objects.get(sync=sync, trigger=SyncRun.Trigger.BACKFILL)
    assert run.backfill_fields == [f"attributes.job_title@{hubspot.pk}"]
    assert (f'Backfill queued: <a href="/syncs/{sync.pk}/runs/{run.pk}/">run #{run.pk}</a> will fill job_title '
            "(custom attribute) for every linked record") in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_mapping_added_before_the_first_run_queues_nothing_and_says_the_first_run_fills_it(marketer, workspace):
    sync, hubspot, _ = workspace
    sync.endpoints.update(cursor="")
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(hubspot, "__custom__", "jobtitle", "in", attribute_name="job_title",
                                       is_owner="on"), follow=True)
    assert FieldMapping.objects.filter(sync=sync, external_field="jobtitle").exists()
    assert not SyncRun.objects.filter(sync=sync).exists()
    assert "first run reads every record, and fills job_title (custom attribute)" in response.content.decode()


def test_a_chain_of_transforms_is_saved_in_order_with_directions_and_parameters(marketer, workspace):
    sync, _, mailchimp = workspace
    chain = [{"name": "truncate", "applies": "out", "order": 2, "length": "25"},
             {"name": "trim", "order": 1}]
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(mailchimp, "last_name", "JOBTITLE", "out", chain))
    assert response.status_code == 302, response.content.decode()
    mapping = FieldMapping.objects.get(sync=sync, external_field="JOBTITLE")
    assert mapping.transforms == ["trim", {"name": "truncate", "length": 25, "direction": "out"}]
    page = marketer.get(reverse("mapping_edit", args=[sync.pk, mapping.pk])).content.decode()
    assert 'name="chain-1-truncate__length" value="25"' in page


def test_update_the_chain_shows_it_again_without_saving(marketer, workspace):
    sync, _, mailchimp = workspace
    before = stored_mappings(sync)
    data = form_data(mailchimp, "last_name", "JOBTITLE", "out", [{"name": "date", "order": 1}], action="update")
    response = marketer.post(reverse("mapping_add", args=[sync.pk]), data)
    assert response.status_code == 200
    page = response.content.decode()
    # The date row's settings are shown, and a blank row waits for one more step.
    assert 'data-params-for="date">' in page and 'name="chain-1-name"' in page
    assert stored_mappings(sync) == before


def test_editing_a_mapping_audits_the_change(marketer, workspace, django_capture_on_commit_callbacks):
    sync, _, mailchimp = workspace
    mapping = FieldMapping.objects.get(sync=sync, external_field="FNAME")
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer.post(reverse("mapping_edit", args=[sync.pk, mapping.pk]),
                                 form_data(mailchimp, "first_name", "FNAME", "out", [{"name": "truncate"}]))
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.transforms == ["truncate"]
    event = AuditEvent.objects.get(action="mapping.updated", object_id=str(mapping.pk))
    assert event.changes["transforms"] == [[], ["truncate"]]
    assert SyncRun.objects.filter(sync=sync, trigger=SyncRun.Trigger.BACKFILL).count() == 1


def test_deleting_a_mapping_audits_it_and_queues_no_backfill(marketer, workspace, django_capture_on_commit_callbacks):
    sync, _, _ = workspace
    mapping = FieldMapping.objects.get(sync=sync, external_field="FNAME")
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer.post(reverse("mapping_delete", args=[sync.pk, mapping.pk]))
    assert response.status_code == 302
    assert not FieldMapping.objects.filter(pk=mapping.pk).exists()
    assert AuditEvent.objects.filter(action="mapping.deleted", object_id=str(mapping.pk)).exists()
    assert not SyncRun.objects.filter(sync=sync).exists()
    assert marketer.get(reverse("mapping_delete", args=[sync.pk, mapping.pk])).status_code == 405


@pytest.mark.parametrize(
    ("connection_name", "data", "reason"),
    [
        ("HubSpot", {"hub_field": "company", "external_field": "jobtitel", "direction": "in", "is_owner": "on"},
         "jobtitel is not a field of HubSpot. Did you mean jobtitle?"),
        ("HubSpot", {"hub_field": "email_consent", "external_field": "hs_email_optout", "direction": "both",
                     "is_owner": "on"}, "hs_email_optout is read-only in HubSpot and cannot be written"),
        ("Mailchimp", {"hub_field": "company", "external_field": "SCORE"}, "cannot hold a text value"),
        ("Mailchimp", {"hub_field": "first_name", "external_field": "JOBTITLE"}, "first_name is already mapped"),
        ("Mailchimp", {"hub_field": "company", "external_field": "FNAME"}, "FNAME is already mapped to first_name"),
        ("Mailchimp", {"hub_field": "phone", "external_field": "PHONE", "chain": [{"name": "title_case"}]},
         "title_case cannot apply to a phone field"),
        ("Mailchimp", {"hub_field": "__custom__", "attribute_name": "<script>", "external_field": "JOBTITLE"},
         "Name the custom attribute"),
        # The sync only writes to Mailchimp and only reads HubSpot.
        ("Mailchimp", {"hub_field": "company", "external_field": "JOBTITLE", "direction": "in", "is_owner": "on"},
         "The sync only writes to Mailchimp; map this field out to Mailchimp (Out of the hub), or let the sync read "
         "Mailchimp in the sync's settings."),
        ("HubSpot", {"hub_field": "company", "external_field": "jobtitle", "direction": "both", "is_owner": "on"},
         "The sync only reads HubSpot; map this field into the hub only (Into the hub), or let the sync write to "
         "HubSpot in the sync's settings."),
    ],
)
def test_refusals_are_shown_next_to_the_field_and_keep_stored_mappings(marketer, workspace, connection_name, data,
                                                                      reason):
    sync = workspace[0]
    connection = Connection.objects.get(name=connection_name)
    before = stored_mappings(sync)
    data = dict(data)
    chain = data.pop("chain", ())
    external = data.pop("external_field")
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(connection, data.pop("hub_field"), external, data.pop("direction", "out"),
                                       chain, **data))
    assert response.status_code == 200
    page = response.content.decode()
    assert "The mapping was not saved" in page
    assert reason.replace("'", "&#x27;") in page
    assert stored_mappings(sync) == before
    assert not AuditEvent.objects.filter(action__startswith="mapping.").exists()


@pytest.mark.parametrize(
    ("connection_name", "direction", "reason"),
    [
        ("Mailchimp", "in", "The sync only writes to Mailchimp"),
        ("Mailchimp", "both", "The sync only writes to Mailchimp"),
        ("HubSpot", "out", "The sync only reads HubSpot"),
        ("HubSpot", "both", "The sync only reads HubSpot"),
    ],
)
def test_a_direction_the_sync_does_not_carry_is_refused_next_to_the_direction(marketer, workspace, connection_name,
                                                                              direction, reason):
    sync = workspace[0]
    connection = Connection.objects.get(name=connection_name)
    external = {"HubSpot": "jobtitle", "Mailchimp": "JOBTITLE"}[connection_name]
    before = stored_mappings(sync)
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(connection, "company", external, direction, is_owner="on"))
    assert response.status_code == 200
    (message,) = response.context["form"].errors["direction"]
    assert message.startswith(reason)
    assert stored_mappings(sync) == before


def test_the_form_says_what_the_sync_does_with_each_system_and_starts_with_a_direction_it_carries(marketer,
                                                                                                  workspace):
    sync, hubspot, mailchimp = workspace
    url = reverse("mapping_add", args=[sync.pk])
    page = marketer.get(url).content.decode()
    assert "<bdi>HubSpot</bdi> is only read; <bdi>Mailchimp</bdi> is only written." in page
    assert reverse("sync_edit", args=[sync.pk]) in page
    # HubSpot is listed first, so chosen unless a link preselects another system.
    assert marketer.get(url).context["form"]["direction"].value() == "in"
    assert marketer.get(url, {"connection": hubspot.pk}).context["form"]["direction"].value() == "in"
    assert marketer.get(url, {"connection": mailchimp.pk}).context["form"]["direction"].value() == "out"
    sync.endpoints.filter(connection=mailchimp).update(read=True)
    assert marketer.get(url, {"connection": mailchimp.pk}).context["form"]["direction"].value() == "both"


def test_the_editor_flags_a_stored_mapping_whose_direction_the_sync_does_not_carry(marketer, workspace):
    sync, hubspot, _ = workspace
    # Stored before directions were checked: both ways, with HubSpot only read.
    mapping = FieldMapping.objects.get(sync=sync, connection=hubspot, hub_field="email")
    assert mapping.direction == "both"
    page = marketer.get(reverse("mapping_editor", args=[sync.pk])).content.decode()
    flagged = page[page.index(f'data-mapping="{mapping.pk}"'):]
    assert "The sync only reads HubSpot; map this field into the hub only (Into the hub)" in flagged[:3000]


def test_a_tampered_step_direction_is_refused_without_a_server_error(marketer, workspace):
    sync = workspace[0]
    mailchimp = Connection.objects.get(name="Mailchimp")
    before = stored_mappings(sync)
    response = marketer.post(reverse("mapping_add", args=[sync.pk]),
                             form_data(mailchimp, "company", "COMPANY", "out", [{"name": "trim", "applies": "up"}]))
    assert response.status_code == 200
    assert stored_mappings(sync) == before


def test_a_field_of_another_system_is_refused(marketer, workspace):
    sync, hubspot, mailchimp = workspace
    data = form_data(hubspot, "company", "JOBTITLE", "in", is_owner="on")
    data["external_field"] = f"{mailchimp.pk}:JOBTITLE"
    page = marketer.post(reverse("mapping_add", args=[sync.pk]), data).content.decode()
    assert "That field belongs to Mailchimp: pick one of HubSpot" in page


@pytest.mark.parametrize(("role", "status"), [(None, 302), (REVIEWER, 403), (COMPLIANCE, 403), (MARKETER, 200)])
def test_only_marketers_edit_mappings(client, workspace, role, status):
    sync = workspace[0]
    if role is not None:
        client.force_login(user_with_role("someone", role))
    for name in ("mapping_editor", "mapping_add", "mapping_preview"):
        assert client.get(reverse(name, args=[sync.pk])).status_code == status
    mapping = FieldMapping.objects.filter(sync=sync).first()
    response = client.post(reverse("mapping_delete", args=[sync.pk, mapping.pk]))
    assert response.status_code == (302 if role in (None, MARKETER) else 403)
    assert FieldMapping.objects.filter(pk=mapping.pk).exists() == (role != MARKETER)


def test_actions_on_a_connection_outside_the_sync_are_not_found(marketer, workspace):
    sync = workspace[0]
    stranger = Connection.objects.create(name="Other", provider="mailchimp", base_url="http://127.0.0.1:9/x")
    assert marketer.post(reverse("mapping_fields_refresh", args=[sync.pk, stranger.pk])).status_code == 404
    assert marketer.get(reverse("mapping_field_create", args=[sync.pk, stranger.pk])).status_code == 404


@pytest.mark.integration
def test_refresh_and_create_a_merge_field_then_map_it(marketer, sandbox):
    from tests.integration.workspace import sandbox_sync

    sync = sandbox_sync(sandbox)
    mailchimp = Connection.objects.get(name="Mailchimp")
    editor = reverse("mapping_editor", args=[sync.pk])
    response = marketer.post(reverse("mapping_fields_refresh", args=[sync.pk, mailchimp.pk]), {"next": editor})
    assert response.status_code == 302 and response["Location"] == editor
    assert "FNAME" in marketer.get(editor).content.decode()

    create = reverse("mapping_field_create", args=[sync.pk, mailchimp.pk])
    response = marketer.post(create, {"label": "Job title", "kind": "text", "for_hub_field": "attributes.job_title"})
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    tag = query["external_field"][0]
    assert query["hub_field"] == ["attributes.job_title"]
    listed = requests.get(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields", params={"count": 1000},
                          auth=("any", sandbox.mailchimp_key), timeout=10).json()["merge_fields"]
    assert {"tag": tag, "name": "Job title", "type": "text"}.items() <= next(
        item for item in listed if item["tag"] == tag).items()
    form = marketer.get(response["Location"]).content.decode()
    assert f'value="{mailchimp.pk}:{tag}" selected' in form
    assert AuditEvent.objects.filter(action="connection.field_created").exists()

    refused = marketer.post(create, {"label": "Tags", "kind": "tags"})
    assert refused.status_code == 200
    assert "Mailchimp has no merge field type for tags values" in refused.content.decode()


def merge_field_delete(sandbox, tag: str) -> None:
    """Delete a merge field the way a Mailchimp user would, through the API itself."""
    auth = ("any", sandbox.mailchimp_key)
    base = f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/merge-fields"
    listed = requests.get(base, params={"count": 100}, auth=auth, timeout=10).json()["merge_fields"]
    merge_id = next(field["merge_id"] for field in listed if field["tag"] == tag)
    assert requests.delete(f"{base}/{merge_id}", auth=auth, timeout=10).status_code == 204


@pytest.mark.integration
def test_a_refresh_from_the_editor_that_finds_a_mapped_field_gone_pauses_every_sync_using_it(marketer, sandbox):
    from tests.integration.workspace import sandbox_sync

    sync = sandbox_sync(sandbox)
    mailchimp = Connection.objects.get(name="Mailchimp")
    # Another sync writing PHONE, and one that maps no field the refresh changes.
    other = Sync.objects.create(name="Phones to Mailchimp", schedule_minutes=0)
    unrelated = Sync.objects.create(name="Names to Mailchimp", schedule_minutes=0)
    for each, external in ((other, "PHONE"), (unrelated, "FNAME")):
        SyncConnection.objects.create(sync=each, connection=mailchimp, read=False, write=True)
        FieldMapping.objects.create(sync=each, connection=mailchimp, hub_field="phone" if external == "PHONE"
                                    else "first_name", external_field=external, direction="out")
    editor = reverse("mapping_editor", args=[sync.pk])
    marketer.post(reverse("mapping_fields_refresh", args=[sync.pk, mailchimp.pk]), {"next": editor})
    assert not Sync.objects.filter(paused=True).exists()

    merge_field_delete(sandbox, "PHONE")
    sandbox.reset_stats()
    response = marketer.post(reverse("mapping_fields_refresh", args=[sync.pk, mailchimp.pk]), {"next": editor},
                             follow=True)
    assert response.redirect_chain == [(editor, 302)]
    for each in (sync, other, unrelated):
        each.refresh_from_db()
    assert sync.paused and "The field PHONE in Mailchimp was removed." in sync.paused_reason
    assert other.paused and "The field PHONE in Mailchimp was removed." in other.paused_reason
    assert not unrelated.paused
    page = response.content.decode()
    assert "Mailchimp reported" in page
    # Both paused syncs are named, this one first and said to be this one, each with the field and its system.
    this_one = f'<a href="/syncs/{sync.pk}/"><bdi>{sync.name}</bdi></a> (this sync) is paused. Paused before writing'
    that_one = f'<a href="/syncs/{other.pk}/"><bdi>Phones to Mailchimp</bdi></a> is paused. Paused before writing'
    assert this_one in page and that_one in page
    assert page.index(this_one) < page.index(that_one)
    assert page.count("The field PHONE in Mailchimp was removed.") >= 2
    assert "Names to Mailchimp" not in page
    assert AuditEvent.objects.filter(action="sync.paused", object_id=str(sync.pk)).exists()
    assert sandbox.stats()["writes"] == 0


@pytest.mark.integration
def test_a_refresh_from_the_editor_that_finds_a_mapped_field_retyped_pauses_the_sync(marketer, sandbox):
    from tests.integration.workspace import sandbox_sync

    sync = sandbox_sync(sandbox)
    mailchimp = Connection.objects.get(name="Mailchimp")
    # As if the mapping had been saved when LNAME held numbers: Mailchimp now reports it as text.
    FieldMapping.objects.filter(sync=sync, external_field="LNAME").update(external_type="number")
    response = marketer.post(reverse("mapping_fields_refresh", args=[sync.pk, mailchimp.pk]), follow=True)
    sync.refresh_from_db()
    assert sync.paused and "The field LNAME in Mailchimp changed from number to text." in sync.paused_reason
    assert "(this sync) is paused." in response.content.decode()
