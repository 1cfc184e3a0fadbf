"""`manage.py seed_demo` builds the demo workspace against a real sandbox process."""
import io
import re
import socket
import stat

import pytest
import requests
import responses
from cryptography.fernet import Fernet
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection as db
from django_q.models import Schedule

from audit.models import AuditEvent
from connections.models import Connection
from connections.registry import provider_for
from mappings.models import FieldMapping
from syncapp.demo import (
    ACTIVECAMPAIGN_CONNECTION,
    FORMER_SYNC_NAMES,
    HUBSPOT_CONNECTION,
    MAILCHIMP_CONNECTION,
    PLANTED_NAMES,
    SYNC_NAME,
    activecampaign_target,
    demo_workspace_build,
    read_logins,
)
from syncapp.models import Conflict, Sync, SyncRun
from syncapp.services.schedules import schedule_name

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

EXPECTED_MAPPINGS = {
    # (provider, hub field, external field, direction, transforms, conflict policy)
    ("hubspot", "email", "email", "both", (), "owner_wins"),
    ("hubspot", "first_name", "firstname", "both", (), "manual"),
    ("hubspot", "last_name", "lastname", "both", (), "manual"),
    ("hubspot", "phone", "phone", "in", ("phone_e164",), "owner_wins"),
    ("hubspot", "company", "company", "in", (), "owner_wins"),
    ("hubspot", "email_consent", "hs_email_optout", "both", ("optout_flag",), "owner_wins"),
    ("mailchimp", "email", "email_address", "both", (), "owner_wins"),
    ("mailchimp", "first_name", "FNAME", "both", (), "manual"),
    ("mailchimp", "last_name", "LNAME", "both", (), "manual"),
    ("mailchimp", "phone", "PHONE", "out", (), "owner_wins"),
    ("mailchimp", "company", "COMPANY", "out", (), "owner_wins"),
    ("mailchimp", "email_consent", "status", "both", (), "owner_wins"),
    ("activecampaign", "email", "email", "both", (), "owner_wins"),
    ("activecampaign", "first_name", "firstName", "both", (), "manual"),
    ("activecampaign", "last_name", "lastName", "both", (), "manual"),
    ("activecampaign", "phone", "phone", "out", (), "owner_wins"),
    ("activecampaign", "company", "COMPANY", "out", (), "owner_wins"),
    ("activecampaign", "email_consent", "status", "both", (), "owner_wins"),
}
SYSTEMS = {HUBSPOT_CONNECTION, MAILCHIMP_CONNECTION, ACTIVECAMPAIGN_CONNECTION}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def logins_file(tmp_path):
    return tmp_path / "demo-logins.txt"


def seed_demo(sandbox_url: str, logins_file, *args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--sandbox-url", sandbox_url, "--logins-file", str(logins_file), *args, stdout=out)
    return out.getvalue()


def sandbox_contact_count(sandbox) -> int:
    reply = requests.get(f"{sandbox.url}/_sandbox/hubspot/contacts", timeout=30)
    reply.raise_for_status()
    return len(reply.json()["contacts"])


def activecampaign_emails(sandbox) -> set[str]:
    return {contact["email"].lower() for contact in sandbox.control("activecampaign", "contacts")["contacts"]}


def hubspot_emails(sandbox) -> set[str]:
    return {(contact["properties"].get("email") or "").lower() for contact in sandbox.hubspot_contacts()}


def mapping_rows() -> set[tuple]:
    return {
        (m.connection.provider, m.hub_field, m.external_field, m.direction, tuple(m.transforms), m.conflict_policy)
        for m in FieldMapping.objects.select_related("connection")
    }


def test_connections_point_at_the_sandbox_with_its_credentials(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "30")

    hubspot = Connection.objects.get(name=HUBSPOT_CONNECTION)
    assert (hubspot.provider, hubspot.base_url) == ("hubspot", sandbox.hubspot_url)
    assert hubspot.access_token == sandbox.hubspot_token
    mailchimp = Connection.objects.get(name=MAILCHIMP_CONNECTION)
    assert (mailchimp.provider, mailchimp.base_url) == ("mailchimp", sandbox.mailchimp_url)
    assert mailchimp.api_key == sandbox.mailchimp_key
    assert mailchimp.settings["list_id"] == sandbox.list_id
    activecampaign = Connection.objects.get(name=ACTIVECAMPAIGN_CONNECTION)
    assert (activecampaign.provider, activecampaign.base_url) == (
        "activecampaign", sandbox.base_url("activecampaign"))
    assert activecampaign.api_key == sandbox.credential("activecampaign")
    assert activecampaign.settings["list_id"] == "1"

    # The stored credentials work: every provider answers through the registry.
    first_page = next(provider_for(hubspot, fields=["email"]).read_changed(None))
    assert first_page.records
    assert {"email_address", "FNAME", "LNAME", "PHONE"} <= {f.name for f in provider_for(mailchimp).discover_fields()}
    assert next(provider_for(activecampaign).read_changed(None)).records
    assert {"firstName", "lastName", "phone", "status", "COMPANY"} <= {
        f.name for f in provider_for(activecampaign).discover_fields()}


def test_the_sandbox_gets_the_contacts_plus_the_hostile_records(sandbox, logins_file, hostile_contacts):
    # No run: the sync would bring ActiveCampaign's own people (and its hostile records) over.
    output = seed_demo(sandbox.url, logins_file, "--contacts", "30", "--conflicts", "0")

    # HubSpot holds an address once: the hostile twin by case is refused.
    addresses = len({record["email"].strip().lower() for record in hostile_contacts})
    assert sandbox_contact_count(sandbox) == 30 + addresses
    assert f"30 seeded, plus {addresses} hostile records" in output


def test_no_hostile_seeds_only_realistic_contacts(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "25", "--no-hostile", "--conflicts", "0")

    assert sandbox_contact_count(sandbox) == 25
    assert len(activecampaign_emails(sandbox)) == activecampaign_target(25)


def test_activecampaign_gets_people_who_are_in_hubspot_too_and_some_of_its_own(sandbox, logins_file):
    output = seed_demo(sandbox.url, logins_file, "--contacts", "40", "--no-hostile", "--conflicts", "0")

    in_activecampaign, in_hubspot = activecampaign_emails(sandbox), hubspot_emails(sandbox)
    assert len(in_activecampaign) == activecampaign_target(40) == 24
    # Seeded in one call, ActiveCampaign's people start halfway into HubSpot's: the last 20
    # HubSpot people (less the few whose address HubSpot's seed mangles on purpose), then 4 more.
    assert 15 <= len(in_activecampaign & in_hubspot) <= 20
    assert len(in_activecampaign - in_hubspot) >= 4
    assert "Sandbox ActiveCampaign: 0 contacts were there, 24 seeded." in output


def test_the_sync_reads_and_writes_all_three_systems_every_15_minutes(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")

    sync = Sync.objects.get(name=SYNC_NAME)
    assert sync.schedule_minutes == 15 and not sync.paused
    endpoints = sync.endpoints.select_related("connection")
    assert {(e.connection.provider, e.read, e.write) for e in endpoints} == {
        ("hubspot", True, True),
        ("mailchimp", True, True),
        ("activecampaign", True, True),
    }
    # The email platforms create people of unknown consent with the status the demo chose.
    assert {(e.connection.provider, e.new_member_status) for e in endpoints} == {
        ("hubspot", ""), ("mailchimp", "subscribed"), ("activecampaign", "subscribed")}
    assert Schedule.objects.get(name=schedule_name(sync.pk)).minutes == 15
    assert mapping_rows() == EXPECTED_MAPPINGS
    assert set(FieldMapping.objects.filter(is_owner=True).values_list("connection__provider", flat=True)) == {"hubspot"}


def test_conflicts_are_planted_the_way_real_ones_happen(sandbox, logins_file):
    output = seed_demo(sandbox.url, logins_file, "--contacts", "8", "--no-hostile")

    # The planting run's: the first run may find names the systems held differently from the start.
    planting = SyncRun.objects.latest("pk")
    conflicts = list(Conflict.objects.filter(status=Conflict.Status.OPEN, run=planting).order_by("pk"))
    assert len(conflicts) == 3 and "left 3 conflicts in the review queue" in output
    assert SyncRun.objects.count() == 2
    edited_in = set()
    for conflict in conflicts:
        assert conflict.hub_field == "first_name"
        # Every system's value: two colleagues' spellings, and the third system's, the one agreed before.
        values = {side["system"]: side["value"] for side in conflict.sides}
        assert set(values) == SYSTEMS
        edited = {system: value for system, value in values.items() if value != conflict.base_value}
        assert tuple(sorted(edited.values())) in {tuple(sorted(pair)) for pair in PLANTED_NAMES}
        edited_in.add(frozenset(edited))
    # Each pair of systems once.
    assert edited_in == {frozenset(SYSTEMS - {system}) for system in SYSTEMS}
    # Running it again plants nothing more.
    before = Conflict.objects.count()
    seed_demo(sandbox.url, logins_file, "--contacts", "8", "--no-hostile")
    assert Conflict.objects.count() == before
    assert SyncRun.objects.count() == 2


def test_a_name_two_systems_held_differently_from_the_start_waits_beside_the_planted_conflicts(sandbox, logins_file):
    # Before any sync: HubSpot and ActiveCampaign spell one person's first name differently.
    hubspot = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts", timeout=30,
                            headers={"Authorization": f"Bearer {sandbox.hubspot_token}"},
                            json={"properties": {"email": "ann@example.com", "firstname": "Ann", "lastname": "Lee"}})
    hubspot.raise_for_status()
    sandbox.control("activecampaign", "contacts", {"email": "ann@example.com", "firstName": "Anna", "lastName": "Lee",
                                                   "lists": {"1": 1}})

    output = seed_demo(sandbox.url, logins_file, "--contacts", "12", "--no-hostile")

    found = Conflict.objects.get(contact__email="ann@example.com")
    assert (found.hub_field, found.status, found.run) == ("first_name", Conflict.Status.OPEN,
                                                          SyncRun.objects.earliest("pk"))
    # Mailchimp's member was created while the name was held: without one, until a reviewer decides.
    assert {side["system"]: side["value"] for side in found.sides} == {
        HUBSPOT_CONNECTION: "Ann", ACTIVECAMPAIGN_CONNECTION: "Anna", MAILCHIMP_CONNECTION: ""}
    # The planted ones are on other people. (The seed may give the first run a few more of
    # its own: HubSpot's has some people again under another address and another's name.)
    planted = Conflict.objects.filter(run=SyncRun.objects.latest("pk"))
    assert planted.count() == 3 and "left 3 conflicts in the review queue" in output
    assert found.contact_id not in {conflict.contact_id for conflict in planted}
    found_by_the_runs = Conflict.objects.exclude(run=SyncRun.objects.latest("pk")).count()
    assert f"The runs also found {found_by_the_runs} conflict" in output


def test_every_change_is_audited_without_secrets(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")

    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("connection.created") == 3
    assert actions.count("sync.created") == 1
    assert actions.count("endpoint.created") == 3
    assert actions.count("mapping.created") == len(EXPECTED_MAPPINGS)
    trail = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert sandbox.hubspot_token not in trail
    assert sandbox.mailchimp_key not in trail
    assert sandbox.credential("activecampaign") not in trail
    assert set(AuditEvent.objects.values_list("actor__username", flat=True)) == {"admin"}


def test_each_role_gets_a_user_whose_printed_password_logs_in(sandbox, logins_file):
    output = seed_demo(sandbox.url, logins_file, "--contacts", "5")

    logins = read_logins(logins_file)
    assert set(logins) == {"admin", "marketer", "reviewer", "compliance"}
    assert stat.S_IMODE(logins_file.stat().st_mode) == 0o600
    for username, password in logins.items():
        assert password in output
        assert len(password) >= 16
        assert authenticate(username=username, password=password) is not None
    assert len(set(logins.values())) == 4
    groups = {user.username: {g.name for g in user.groups.all()} for user in User.objects.prefetch_related("groups")}
    assert groups == {"admin": set(), "marketer": {"Marketer"}, "reviewer": {"Reviewer"}, "compliance": {"Compliance"}}
    assert User.objects.get(username="admin").is_superuser
    assert not User.objects.filter(is_superuser=True).exclude(username="admin").exists()
    # Marketers and reviewers work in the app's pages; compliance's audit trail is the admin's.
    assert set(User.objects.filter(is_staff=True).values_list("username", flat=True)) == {"admin", "compliance"}


def test_the_demo_users_can_log_in_through_the_login_page(sandbox, logins_file, client):
    seed_demo(sandbox.url, logins_file, "--contacts", "5")

    for username, password in read_logins(logins_file).items():
        response = client.post("/login/", {"username": username, "password": password})
        assert response.status_code == 302, username
        client.logout()


def test_running_it_again_creates_nothing_and_keeps_the_passwords(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "20")
    first_logins = logins_file.read_text()
    counts = (Connection.objects.count(), Sync.objects.count(), FieldMapping.objects.count(),
              AuditEvent.objects.count())

    output = seed_demo(sandbox.url, logins_file, "--contacts", "20")

    assert logins_file.read_text() == first_logins
    assert (Connection.objects.count(), Sync.objects.count(), FieldMapping.objects.count(),
            AuditEvent.objects.count()) == counts
    # The runs brought each system's people to the other (more than were seeded): nothing is missing.
    assert re.search(r"Sandbox HubSpot: \d+ contacts were there, 0 seeded\.", output)
    assert re.search(r"Sandbox ActiveCampaign: \d+ contacts were there, 0 seeded\.", output)
    for username, password in read_logins(logins_file).items():
        assert authenticate(username=username, password=password) is not None


def test_a_larger_count_tops_the_sandbox_up(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "10", "--no-hostile", "--conflicts", "0")
    seed_demo(sandbox.url, logins_file, "--contacts", "25", "--no-hostile", "--conflicts", "0")

    assert sandbox_contact_count(sandbox) == 25
    assert len(activecampaign_emails(sandbox)) == activecampaign_target(25)


def test_a_workspace_made_before_activecampaign_joined_gets_it_in_its_sync(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")
    sync = Sync.objects.get()
    Sync.objects.filter(pk=sync.pk).update(name=FORMER_SYNC_NAMES[0])

    output = seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")

    assert list(Sync.objects.values_list("pk", "name")) == [(sync.pk, SYNC_NAME)]
    assert f"Sync '{SYNC_NAME}'" in output
    renamed = AuditEvent.objects.get(action="sync.updated")
    assert renamed.changes == {"name": [FORMER_SYNC_NAMES[0], SYNC_NAME]}


def test_a_moved_sandbox_updates_the_connections_in_place(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "5")
    moved = sandbox.url.replace("127.0.0.1", "localhost")

    seed_demo(moved, logins_file, "--contacts", "5")

    assert set(Connection.objects.values_list("base_url", flat=True)) == {
        f"{moved}/hubspot", f"{moved}/mailchimp/3.0", f"{moved}/activecampaign/api/3"}
    updated = AuditEvent.objects.filter(action="connection.updated")
    assert updated.count() == 3
    assert all(set(event.changes) == {"base_url"} for event in updated)


def test_an_unreachable_sandbox_is_a_clear_error(logins_file):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(CommandError, match=f"Cannot reach the sandbox at http://127.0.0.1:{port}"):
        seed_demo(f"http://127.0.0.1:{port}", logins_file)
    assert not Connection.objects.exists()


def test_credentials_under_other_keys_are_a_clear_error(sandbox, logins_file):
    seed_demo(sandbox.url, logins_file, "--contacts", "5")
    foreign = Fernet(Fernet.generate_key()).encrypt(b"token under another key").decode()
    with db.cursor() as cursor:
        cursor.execute("UPDATE connections_connection SET access_token = %s", [foreign])

    with pytest.raises(CommandError, match="restore the .env it was made with") as caught:
        seed_demo(sandbox.url, logins_file, "--contacts", "5")
    assert foreign not in str(caught.value)


@pytest.mark.parametrize("url", ["127.0.0.1:8765", "ftp://127.0.0.1:8765", "http://"])
def test_a_malformed_sandbox_url_is_refused(url, logins_file):
    with pytest.raises(CommandError, match="--sandbox-url must be an http"):
        seed_demo(url, logins_file)


def test_a_negative_count_is_refused(logins_file):
    with pytest.raises(CommandError, match="--contacts must not be negative"):
        seed_demo("http://127.0.0.1:8765", logins_file, "--contacts", "-1")


SANDBOX_WITHOUT_SERVER = "http://127.0.0.1:9"


def answer_field_lists(*, mailchimp: tuple[str, ...], activecampaign: tuple[str, ...]) -> None:
    """Have the sandbox's Mailchimp audience and ActiveCampaign account offer these custom fields."""
    responses.get(f"{SANDBOX_WITHOUT_SERVER}/mailchimp/3.0/lists/abc/merge-fields",
                  json={"merge_fields": [{"tag": tag, "name": tag, "type": "text"} for tag in mailchimp]})
    fields = [{"id": str(number), "title": tag.title(), "type": "text", "perstag": tag}
              for number, tag in enumerate(activecampaign, start=1)]
    responses.get(f"{SANDBOX_WITHOUT_SERVER}/activecampaign/api/3/fields",
                  json={"fields": fields, "fieldOptions": [], "meta": {"total": str(len(fields))}})


@responses.activate
def test_a_company_field_neither_platform_has_leaves_company_unmapped():
    answer_field_lists(mailchimp=("FNAME", "LNAME", "PHONE"), activecampaign=("BIRTHDAY",))
    admin = User.objects.create_superuser("admin", "admin@example.com", "unused-password")

    workspace = demo_workspace_build(sandbox_url=SANDBOX_WITHOUT_SERVER, list_id="abc", user=admin)

    assert workspace.skipped_fields == ["Mailchimp COMPANY", "ActiveCampaign COMPANY"]
    assert not FieldMapping.objects.filter(hub_field="company").exists()
    assert FieldMapping.objects.count() == len(EXPECTED_MAPPINGS) - 3


@responses.activate
def test_an_audience_without_a_company_field_still_sends_the_company_to_activecampaign():
    answer_field_lists(mailchimp=("FNAME", "LNAME", "PHONE"), activecampaign=("COMPANY",))
    admin = User.objects.create_superuser("admin", "admin@example.com", "unused-password")

    workspace = demo_workspace_build(sandbox_url=SANDBOX_WITHOUT_SERVER, list_id="abc", user=admin)

    assert workspace.skipped_fields == ["Mailchimp COMPANY"]
    assert set(FieldMapping.objects.filter(hub_field="company").values_list("connection__provider", "direction")) == {
        ("hubspot", "in"), ("activecampaign", "out")}


def test_a_logins_file_that_cannot_be_written_stops_before_any_password_changes(sandbox, logins_file, tmp_path):
    seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")
    handed_out = read_logins(logins_file)
    contacts_before = sandbox_contact_count(sandbox)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(CommandError, match="Cannot use .*a-file/logins.txt as the logins file") as caught:
        seed_demo(sandbox.url, blocker / "logins.txt", "--contacts", "10")

    assert "\n" not in str(caught.value)
    for username, password in handed_out.items():
        assert authenticate(username=username, password=password) is not None, username
    assert sandbox_contact_count(sandbox) == contacts_before


@pytest.mark.parametrize("make_file, complaint", [
    (lambda path: path.mkdir(), "Is a directory"),
    (lambda path: path.write_bytes(b"admin=\xff\xfe\n"), "not a logins file written by seed_demo"),
])
def test_a_logins_file_that_cannot_be_read_is_a_clear_error(tmp_path, make_file, complaint):
    logins_file = tmp_path / "logins"
    make_file(logins_file)

    with pytest.raises(CommandError, match=complaint):
        seed_demo("http://127.0.0.1:9", logins_file)
    assert not User.objects.exists()


def test_the_root_directory_as_logins_file_is_a_clear_error():
    with pytest.raises(CommandError, match="Cannot use / as the logins file: Is a directory"):
        seed_demo("http://127.0.0.1:9", "/")
    assert not User.objects.exists()


def test_the_passwords_are_written_down_before_they_are_set(sandbox, logins_file):
    """A run that fails after the users were touched leaves logins that still work."""
    with pytest.raises(CommandError, match="Cannot reach the sandbox"):
        seed_demo("http://127.0.0.1:9", logins_file)
    written = read_logins(logins_file)
    assert set(written) == {"admin", "marketer", "reviewer", "compliance"}
    assert stat.S_IMODE(logins_file.stat().st_mode) == 0o600

    seed_demo(sandbox.url, logins_file, "--contacts", "5", "--conflicts", "0")

    assert read_logins(logins_file) == written
    for username, password in written.items():
        assert authenticate(username=username, password=password) is not None, username
