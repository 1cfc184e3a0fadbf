"""`manage.py verify_audit` finds what was done to the trail behind the application's back.

The tampering is raw SQL, as someone with the database's credentials would do it; such
a person can drop the database's guard first, so each test does (the test's
transaction puts it back).
"""
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit import chain
from audit.models import AuditChainHead, AuditEvent
from audit.services import audit_events_erase, audit_record, audit_record_many, audit_row_build
from audit.verification import chain_verify

pytestmark = pytest.mark.django_db


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def guard_drop() -> None:
    on_table = " ON audit_auditevent" if connection.vendor == "postgresql" else ""
    sql(f"DROP TRIGGER audit_event_append_only{on_table}")


@pytest.fixture
def ids() -> list[int]:
    """Write six events about three people; return their ids in order."""
    audit_record(action="connection.updated", object_type="connection", object_id="1",
                 changes={"name": ["Old", "New"]})
    audit_record_many([
        audit_row_build(action="contact.updated", object_type="contact", object_id=str(n), contact_id=n,
                        object_repr=f"p{n}@example.com", changes={"first_name": [None, f"P{n}"]})
        for n in (1, 2, 3)
    ])
    audit_record(action="consent.recorded", object_type="contact", object_id="2", contact_id=2,
                 changes={"email_consent": ["subscribed", "unsubscribed"]})
    audit_record(action="sync.paused", object_type="sync", object_id="1")
    guard_drop()
    return list(AuditEvent.objects.order_by("id").values_list("id", flat=True))


def verify() -> tuple[str, str]:
    """Run the command; return its output and the error it ends with ("" when the chain holds)."""
    out = io.StringIO()
    try:
        call_command("verify_audit", stdout=out, chunk_size=2)
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), ""


def test_an_untouched_trail_verifies_and_says_how_many_rows(ids):
    out, error = verify()
    assert error == ""
    assert "intact" in out and "6 row(s) checked, 0 erased row(s) accepted" in out


def test_an_empty_trail_verifies():
    AuditChainHead.objects.all().delete()
    assert verify()[1] == ""


def test_an_edited_column_is_named(ids):
    sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", ["contact.created", ids[2]])
    out, error = verify()
    assert f"row {ids[2]} altered" in error
    assert "2 row(s) checked" in out


def test_edited_changes_are_named(ids):
    sql("UPDATE audit_auditevent SET changes = %s WHERE id = %s", ['{"first_name": [null, "Forged"]}', ids[3]])
    assert f"row {ids[3]} altered: its changes or object description were changed" in verify()[1]


def test_an_edited_actor_is_named(ids):
    sql("UPDATE audit_auditevent SET actor_id = NULL, contact_id = 9 WHERE id = %s", [ids[4]])
    assert f"row {ids[4]} altered" in verify()[1]


def test_a_deleted_row_is_named_by_the_row_after_it(ids):
    sql("DELETE FROM audit_auditevent WHERE id = %s", [ids[2]])
    assert f"row {ids[3]} missing: rows were deleted after row {ids[1]}" in verify()[1]


def test_deleting_the_last_rows_shows_against_the_head(ids):
    sql("DELETE FROM audit_auditevent WHERE id >= %s", [ids[4]])
    assert f"missing: rows were deleted after row {ids[3]}" in verify()[1]


def test_a_deleted_head_shows():
    audit_record(action="a.b", object_type="t", object_id="1")
    AuditChainHead.objects.all().delete()
    assert "the chain's head is gone" in verify()[1]


def forge_after(previous_id: int) -> None:
    """Insert a row that links to `previous_id` and is hashed correctly, as a forger who read audit.chain would."""
    previous = AuditEvent.objects.get(pk=previous_id)
    changes = {"email_consent": ["unsubscribed", "subscribed"]}
    forged = AuditEvent(created_at=previous.created_at, action="contact.updated", system="hub",
                        object_type="contact", object_id="2", contact_id=2, object_repr="", changes=changes)
    chain.link([forged], previous.row_hash)
    sql("INSERT INTO audit_auditevent (created_at, action, system, object_type, object_id, object_repr, contact_id, "
        "changes, changes_digest, prev_hash, row_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [connection.ops.adapt_datetimefield_value(previous.created_at), forged.action, forged.system,
         forged.object_type, forged.object_id, forged.object_repr, forged.contact_id, json.dumps(changes),
         forged.changes_digest, forged.prev_hash, forged.row_hash])


def test_a_row_inserted_at_the_end_is_named(ids):
    forge_after(ids[-1])
    forged_id = AuditEvent.objects.order_by("id").last().pk
    assert f"row {forged_id} inserted" in verify()[1]


def test_a_row_inserted_before_later_events_is_named(ids):
    forge_after(ids[-1])
    forged_id = AuditEvent.objects.order_by("id").last().pk
    # The application writes on, from the head the forger did not move.
    audit_record(action="sync.resumed", object_type="sync", object_id="1")
    assert f"row {forged_id} inserted" in verify()[1]


def test_a_row_inserted_with_a_made_up_link_is_named(ids):
    sql("INSERT INTO audit_auditevent (created_at, action, system, object_type, object_id, object_repr, changes, "
        "changes_digest, prev_hash, row_hash) VALUES (%s, 'a', 'hub', 't', '1', '', '{}', '', %s, %s)",
        [connection.ops.adapt_datetimefield_value(AuditEvent.objects.get(pk=ids[0]).created_at), "0" * 64, "1" * 64])
    audit_record(action="sync.resumed", object_type="sync", object_id="1")
    forged_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True)[1]
    assert f"row {forged_id} inserted" in verify()[1]


def test_an_erasure_keeps_the_chain_valid(ids):
    assert audit_events_erase(contact_ids=[2], values=[]) == 2
    out, error = verify()
    assert error == ""
    assert "7 row(s) checked, 2 erased row(s) accepted" in out


def test_a_redaction_no_erasure_lists_is_caught(ids):
    marker = '{"_erased": "audit.erased #99"}'
    sql("UPDATE audit_auditevent SET changes = %s, object_repr = 'erased' WHERE id = %s", [marker, ids[1]])
    assert f"row {ids[1]} altered: it is marked erased but no later audit.erased event lists it" in verify()[1]


def test_an_erasure_event_cannot_be_edited_to_cover_a_redaction(ids):
    audit_events_erase(contact_ids=[2], values=[])
    erasure = AuditEvent.objects.get(action=chain.ERASED_ACTION)
    listed = erasure.changes[chain.ERASED_LIST_KEY][1]
    sql("UPDATE audit_auditevent SET changes = %s, object_repr = 'erased' WHERE id = %s",
        ['{"_erased": "forged"}', ids[1]])
    sql("UPDATE audit_auditevent SET changes = %s WHERE id = %s",
        [f'{{"events": [null, {sorted([*listed, ids[1]])}], "contacts": [null, [2]]}}', erasure.pk])
    assert f"row {erasure.pk} altered" in verify()[1]


def test_the_service_reports_what_the_command_prints(ids):
    sql("DELETE FROM audit_auditevent WHERE id = %s", [ids[0]])
    report = chain_verify(chunk_size=1000)
    assert not report.valid
    assert (report.broken.kind, report.broken.row_id) == ("missing", ids[1])
