"""Record errors and warnings: a record that did not sync fails, one that synced without a field warns."""
import pytest

from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.models import PendingPush, RecordError, SyncRun
from syncapp.services.record_errors import (
    ErrorItem,
    FieldProblem,
    field_warnings,
    record_errors_resolve,
    record_errors_save,
    records_with,
)
from syncapp.services.runs import run_execute, run_request
from tests.syncapp.fake_providers import World, fake_workspace

pytestmark = pytest.mark.django_db

WARNING = RecordError.Severity.WARNING
ERROR = RecordError.Severity.ERROR
EXTENSION = "+1 415 555 0100 ext. 12"


@pytest.fixture
def world():
    return World(page_size=3)


@pytest.fixture
def sync():
    return fake_workspace()


def execute(sync, world) -> SyncRun:
    run, created = run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, enqueue=False)
    assert created
    return run_execute(run_id=run.pk, provider_for=world.provider_for)


def crm_id_warnings(external_id: str, *, resolved: bool = False) -> dict[str, RecordError]:
    return {error.error_class: error for error in
            RecordError.objects.filter(external_id=external_id, resolved=resolved, severity=WARNING)}


class TestFieldWarnings:
    def test_one_warning_per_field_naming_the_field_and_the_reason(self):
        problems = [FieldProblem("phone", "'x' is not a phone number"),
                    FieldProblem("birthday", "'1990-02-30' is not a real date")]
        read = field_warnings(problems, sent=False, external_id="7")
        assert [(item.error_class, item.severity, item.external_id) for item in read] == [
            ("not_imported:phone", WARNING, "7"), ("not_imported:birthday", WARNING, "7")]
        assert read[0].message == "phone was not imported: 'x' is not a phone number. The rest of the record synced."
        sent = field_warnings(problems[:1], sent=True, contact_id=3)
        assert (sent[0].error_class, sent[0].contact_id) == ("not_sent:phone", 3)
        assert sent[0].message.startswith("phone was not sent: ")

    def test_a_class_never_exceeds_the_column(self):
        [item] = field_warnings([FieldProblem("f" * 300, "too long")], sent=False, external_id="1")
        assert len(item.error_class) == RecordError._meta.get_field("error_class").max_length
        assert item.message.startswith("f" * 300)

    def test_records_are_counted_once_whatever_their_number_of_warnings(self):
        items = [*field_warnings([FieldProblem("a", "x"), FieldProblem("b", "y")], sent=False, external_id="1"),
                 ErrorItem("invalid_email", "bad", external_id="2"),
                 ErrorItem("invalid_email", "bad", external_id="3")]
        assert records_with(items, severity=WARNING, by_contact=False) == {"1"}
        assert records_with(items, severity=ERROR, by_contact=False) == {"2", "3"}


class TestSavingAndResolving:
    @pytest.fixture
    def crm(self, sync):
        return Connection.objects.get(name="CRM")

    @pytest.fixture
    def run(self, sync):
        return SyncRun.objects.create(sync=sync, trigger=SyncRun.Trigger.MANUAL)

    def test_each_field_is_its_own_row_and_a_repeat_counts_an_attempt(self, crm, run):
        problems = [FieldProblem("phone", "has an extension"), FieldProblem("zip", "too long")]
        for _ in range(2):
            record_errors_save(run=run, connection=crm, items=field_warnings(problems, sent=False, external_id="1"),
                               by_contact=False)
        rows = RecordError.objects.order_by("error_class")
        assert [(row.error_class, row.severity, row.attempts) for row in rows] == [
            ("not_imported:phone", WARNING, 2), ("not_imported:zip", WARNING, 2)]

    def test_a_synced_record_keeps_the_warnings_met_again_and_resolves_the_rest(self, crm, run):
        both = field_warnings([FieldProblem("phone", "p"), FieldProblem("zip", "z")], sent=False, external_id="1")
        failed = ErrorItem("invalid_email", "bad address", external_id="1")
        record_errors_save(run=run, connection=crm, items=[*both, failed], by_contact=False)
        still = field_warnings([FieldProblem("zip", "z")], sent=False, external_id="1")
        record_errors_save(run=run, connection=crm, items=still, by_contact=False)

        record_errors_resolve(connection=crm, external_ids=["1"], classes=("invalid_email", "not_imported:"),
                              standing=still)
        open_rows = set(RecordError.objects.filter(resolved=False).values_list("error_class", flat=True))
        assert open_rows == {"not_imported:zip"}

    def test_a_class_ending_in_a_colon_stands_for_every_field(self, crm, run):
        refused = ErrorItem("rejected", "Refused.", external_id="9")
        imported = field_warnings([FieldProblem("phone", "p"), FieldProblem("zip", "z")], sent=False, external_id="9")
        record_errors_save(run=run, connection=crm, items=[refused, *imported], by_contact=False)
        record_errors_resolve(connection=crm, external_ids=["9"], except_classes=("not_imported:",))
        assert set(RecordError.objects.filter(resolved=False).values_list("error_class", flat=True)) == {
            "not_imported:phone", "not_imported:zip"}
        record_errors_resolve(connection=crm, external_ids=["9"], classes=("not_imported:",))
        assert not RecordError.objects.filter(resolved=False).exists()


class TestRunsWithWarnings:
    @pytest.mark.parametrize("phone", [EXTENSION, "(415) 555-0100 x12"])
    def test_a_phone_with_an_extension_syncs_the_record_without_it(self, sync, world, phone):
        world.add("1", email="ext@example.com", firstname="Ext", lastname="One", phone=phone)
        run = execute(sync, world)
        assert (run.status, run.failed_count, run.warning_count, run.pushed_count) == (
            SyncRun.Status.SUCCEEDED, 0, 1, 1)
        assert world.members["ext@example.com"]["FNAME"] == "Ext"
        assert world.members["ext@example.com"]["LNAME"] == "One"
        assert "PHONE" not in world.members["ext@example.com"] or not world.members["ext@example.com"]["PHONE"]
        warning = crm_id_warnings("1")["not_imported:phone"]
        assert warning.message == (f"phone was not imported: {phone!r} has an extension, which E.164 cannot hold. "
                                   "The rest of the record synced.")
        assert not PendingPush.objects.exists()

    def test_a_record_with_two_bad_fields_is_one_warned_record_with_two_warnings(self, sync, world):
        crm = sync.endpoints.get(connection__name="CRM").connection
        FieldMapping.objects.create(sync=sync, connection=crm, hub_field="company", external_field="company",
                                    direction="in", transforms=[{"name": "value_map", "map": {"Acme Inc": "Acme"}}])
        world.add("1", email="two@example.com", firstname="Two", phone=EXTENSION, company="Initech")
        run = execute(sync, world)
        assert (run.status, run.warning_count) == (SyncRun.Status.SUCCEEDED, 1)
        assert set(crm_id_warnings("1")) == {"not_imported:phone", "not_imported:company"}

    def test_failures_and_warnings_are_counted_apart(self, sync, world):
        world.add("1", email="ext@example.com", firstname="Ext", phone=EXTENSION)
        world.add("2", email="a..b@example.com", firstname="Bad")
        world.add("3", email="ok@example.com", firstname="Ok")
        world.reject["ok@example.com"] = "Refused by the audience."
        run = execute(sync, world)
        assert (run.status, run.failed_count, run.warning_count) == (SyncRun.Status.PARTIAL, 2, 1)
        severities = dict(RecordError.objects.values_list("error_class", "severity"))
        assert severities["not_imported:phone"] == WARNING
        assert severities["invalid_email"] == ERROR
        assert [severity for error_class, severity in severities.items()
                if error_class not in ("not_imported:phone", "invalid_email")] == [ERROR]

    def test_a_warning_is_not_retried_and_a_fixed_field_resolves_it(self, sync, world):
        world.add("1", email="ext@example.com", firstname="Ext", phone=EXTENSION)
        execute(sync, world)
        calls = len(world.upsert_calls)
        sync.endpoints.filter(connection__name="CRM").update(cursor="")
        again = execute(sync, world)
        # Read again unchanged: still true, so still open, not a new row; nothing sent.
        assert (again.status, again.warning_count, again.pushed_count) == (SyncRun.Status.SUCCEEDED, 1, 0)
        assert len(world.upsert_calls) == calls
        assert crm_id_warnings("1")["not_imported:phone"].attempts == 2

        world.add("1", phone="+1 415 555 0199")
        fixed = execute(sync, world)
        assert (fixed.status, fixed.warning_count, fixed.pushed_count) == (SyncRun.Status.SUCCEEDED, 0, 1)
        assert world.members["ext@example.com"]["PHONE"] == "+14155550199"
        assert crm_id_warnings("1") == {}
        assert set(crm_id_warnings("1", resolved=True)) == {"not_imported:phone"}

    def test_fixing_one_field_resolves_its_warning_and_keeps_the_others(self, sync, world):
        crm = sync.endpoints.get(connection__name="CRM").connection
        FieldMapping.objects.create(sync=sync, connection=crm, hub_field="company", external_field="company",
                                    direction="in", transforms=[{"name": "value_map", "map": {"Acme Inc": "Acme"}}])
        world.add("1", email="two@example.com", phone=EXTENSION, company="Initech")
        execute(sync, world)
        world.add("1", phone="+1 415 555 0199")
        execute(sync, world)
        assert set(crm_id_warnings("1")) == {"not_imported:company"}
        assert set(crm_id_warnings("1", resolved=True)) == {"not_imported:phone"}

    def test_a_field_that_cannot_be_written_is_a_warning_on_the_push(self, sync, world):
        audience = sync.endpoints.get(connection__name="Audience").connection
        FieldMapping.objects.filter(connection=audience, hub_field="last_name").update(
            transforms=[{"name": "value_map", "map": {"LEE": "Lee"}}])
        world.add("1", email="ng@example.com", firstname="Ann", lastname="Ng")
        world.add("2", email="lee@example.com", firstname="Bo", lastname="Lee")
        run = execute(sync, world)
        assert (run.status, run.failed_count, run.warning_count, run.pushed_count) == (
            SyncRun.Status.SUCCEEDED, 0, 1, 2)
        assert world.members["ng@example.com"]["FNAME"] == "Ann" and "LNAME" not in world.members["ng@example.com"]
        assert world.members["lee@example.com"]["LNAME"] == "LEE"
        warning = RecordError.objects.get()
        assert (warning.error_class, warning.severity, warning.connection) == ("not_sent:LNAME", WARNING, audience)
        assert warning.message.startswith("LNAME was not sent: 'Ng' has no external value in the map")
        assert not PendingPush.objects.exists()

        world.add("1", lastname="Lee")
        fixed = execute(sync, world)
        assert (fixed.warning_count, fixed.pushed_count) == (0, 1)
        assert RecordError.objects.get().resolved
