"""A run's plan: full names over two mappings, destination lengths, and shared fields."""
import pytest

from connections.models import Connection
from mappings.models import FieldCatalog, FieldMapping
from mappings.transforms import TransformError
from syncapp.models import Contact, SyncRun
from syncapp.services.plan import PlanError, hub_value_check, sync_plan_build
from syncapp.services.runs import run_execute, run_request
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db

FIRST = [{"name": "full_name", "part": "first"}]
LAST = [{"name": "full_name", "part": "last"}]


def execute(sync, world) -> SyncRun:
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert created
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def remap(sync, connection_name: str, rows) -> None:
    """Replace a connection's name mappings with `rows` of (hub field, external field, direction, transforms)."""
    connection = Connection.objects.get(name=connection_name)
    FieldMapping.objects.filter(sync=sync, connection=connection, hub_field__in=["first_name", "last_name"]).delete()
    for hub_field, external_field, direction, transforms in rows:
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field=hub_field,
                                    external_field=external_field, direction=direction, transforms=transforms,
                                    is_owner=connection_name == "CRM")


@pytest.fixture
def world():
    world = World(page_size=10)
    world.crm_fields["fullname"] = "string"
    world.audience_fields["NAME"] = "text"
    return world


class TestFullName:
    @pytest.fixture
    def sync(self):
        sync = fake_workspace()
        remap(sync, "CRM", [("first_name", "fullname", "in", FIRST), ("last_name", "fullname", "in", LAST)])
        remap(sync, "Audience", [("first_name", "NAME", "out", FIRST), ("last_name", "NAME", "out", LAST)])
        return sync

    def test_each_mapping_reads_its_part_and_one_joined_value_goes_out(self, sync, world):
        world.add("1", email="ann@example.com", fullname="  Ann Marie   Lee ")
        world.add("2", email="bo@example.com", fullname="Bo")
        world.add("3", email="cy@example.com", fullname="Cy van der Berg")
        run = execute(sync, world)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        names = {c.email: (c.first_name, c.last_name) for c in Contact.objects.all()}
        assert names == {"ann@example.com": ("Ann Marie", "Lee"), "bo@example.com": ("Bo", ""),
                         "cy@example.com": ("Cy", "van der Berg")}
        sent = {email: member["NAME"] for email, member in world.members.items()}
        assert sent == {"ann@example.com": "Ann Marie Lee", "bo@example.com": "Bo", "cy@example.com": "Cy van der Berg"}

    def test_a_change_to_either_part_is_pushed_and_a_respaced_name_is_not(self, sync, world):
        world.add("1", email="ann@example.com", fullname="Ann Lee")
        execute(sync, world)
        world.add("1", fullname="Ann Smith")
        execute(sync, world)
        assert world.members["ann@example.com"]["NAME"] == "Ann Smith"
        calls = len(world.upsert_calls)
        world.add("1", fullname="Ann  Smith")
        run = execute(sync, world)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert len(world.upsert_calls) == calls

    def test_the_plan_reads_the_shared_field_once(self, sync, world):
        requested = []

        def provider_for(connection, fields=()):
            requested.append(list(fields))
            return world.provider_for(connection, fields)

        plan = sync_plan_build(sync=sync, provider_for=provider_for)
        (crm,) = [endpoint for endpoint in plan.endpoints if endpoint.name == "CRM"]
        assert requested[0].count("fullname") == 1
        assert [field.hub_field for field in crm.reads if field.external_field == "fullname"] == [
            "first_name", "last_name"]
        (audience,) = [endpoint for endpoint in plan.endpoints if endpoint.name == "Audience"]
        assert {"first_name", "last_name"} <= audience.hub_fields_written()


class TestSharedFields:
    @pytest.mark.parametrize(
        ("first", "second", "message"),
        [
            (["trim"], ["trim"], "already the target of another mapping"),
            (FIRST, FIRST, "already the target of another mapping"),
            (FIRST, [{"name": "full_name", "part": "last", "first_field": "company"}], "different hub fields"),
        ],
    )
    def test_only_a_full_name_may_be_the_target_of_two_mappings(self, world, first, second, message):
        sync = fake_workspace()
        remap(sync, "CRM", [("first_name", "fullname", "in", first), ("last_name", "fullname", "in", second)])
        with pytest.raises(PlanError, match=message):
            sync_plan_build(sync=sync, provider_for=world.provider_for)

    def test_three_mappings_on_one_field_are_refused(self, world):
        sync = fake_workspace()
        remap(sync, "CRM", [("first_name", "fullname", "in", FIRST), ("last_name", "fullname", "in", LAST)])
        crm = Connection.objects.get(name="CRM")
        FieldMapping.objects.create(sync=sync, connection=crm, hub_field="company", external_field="fullname",
                                    direction="in", transforms=LAST)
        with pytest.raises(PlanError, match="target of 3 mappings"):
            sync_plan_build(sync=sync, provider_for=world.provider_for)


class TestTruncateToTheDestination:
    def test_the_system_field_length_comes_from_the_discovered_fields(self, world):
        sync = fake_workspace()
        audience = Connection.objects.get(name="Audience")
        FieldCatalog.objects.create(connection=audience, fields=[
            {"name": "FNAME", "label": "First name", "type": "text", "kind": "text", "max_length": 5}])
        FieldMapping.objects.filter(sync=sync, connection=audience, hub_field="first_name").update(
            transforms=["truncate"])
        world.add("1", email="ann@example.com", firstname="Annabel-Lee", lastname="Ng")
        # A combining mark with no precomposed form (NFC keeps it apart).
        world.add("2", email="jo@example.com", firstname="Zoran\u0351a", lastname="Ng")
        run = execute(sync, world)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert world.members["ann@example.com"]["FNAME"] == "Annab"
        # Never a letter without its mark: cut before the letter instead.
        assert world.members["jo@example.com"]["FNAME"] == "Zora"
        assert Contact.objects.get(email="ann@example.com").first_name == "Annabel-Lee"


class TestEmailTypos:
    def test_an_email_with_a_typo_domain_is_not_a_hub_value(self):
        with pytest.raises(TransformError, match="did you mean ann@gmail.com"):
            hub_value_check("email", " Ann@Gmial.com", phone_region="US")
        assert hub_value_check("email", " Ann@Gmail.com", phone_region="US") == "ann@gmail.com"

    def test_the_rule_fixes_it_on_the_way_in(self, world):
        sync = fake_workspace(fix_email_typos=True)
        world.add("1", email="Ann@Gmial.com", firstname="Ann")
        run = execute(sync, world)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert list(Contact.objects.values_list("email", flat=True)) == ["ann@gmail.com"]
        assert list(world.members) == ["ann@gmail.com"]
