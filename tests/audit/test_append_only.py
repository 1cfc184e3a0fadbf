"""Audit events are only ever added: the ORM refuses every change, and so does the database.

The admin's refusals are in test_admin.py. The one change allowed, an erasure request's
redaction, is in test_services_erase.py.
"""
import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError

from audit import chain
from audit.models import AppendOnlyError, AuditEvent
from audit.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def event() -> AuditEvent:
    return audit_record(action="connection.updated", object_type="connection", object_id="1",
                        object_repr="ann@example.com", changes={"name": ["Old", "New"]})


def unchanged(event: AuditEvent) -> bool:
    stored = AuditEvent.objects.get(pk=event.pk)
    return (stored.action, stored.changes, stored.object_repr, stored.row_hash) == (
        event.action, event.changes, event.object_repr, event.row_hash)


class TestOrm:
    def test_a_queryset_cannot_update_or_delete(self, event):
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.filter(pk=event.pk).update(action="forged")
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.all().delete()
        assert unchanged(event)

    def test_a_saved_event_cannot_be_saved_again_or_deleted(self, event):
        event.action = "forged"
        with pytest.raises(AppendOnlyError):
            event.save()
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.get(pk=event.pk).save(update_fields=["action"])
        with pytest.raises(AppendOnlyError):
            event.delete()
        event.action = "connection.updated"
        assert unchanged(event)

    def test_bulk_update_is_refused(self, event):
        event.action = "forged"
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.bulk_update([event], ["action"])

    def test_bulk_create_appends_to_the_chain(self, event):
        created = AuditEvent.objects.bulk_create([AuditEvent(action="a.b", object_type="t", object_id="2")])
        assert created[0].prev_hash == event.row_hash and created[0].pk > event.pk

    def test_a_user_who_acted_cannot_be_deleted(self):
        # The actor is hashed: setting it to null would break the chain. Deactivate instead.
        user = User.objects.create_user("carla")
        audit_record(action="sync.paused", object_type="sync", object_id="1", actor=user)
        with pytest.raises(ProtectedError):
            user.delete()


def raw(statement: str, params=()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


class TestDatabaseGuard:
    """Raw SQL, past the ORM: the database's trigger (audit 0003)."""

    @pytest.mark.parametrize("assignment", [
        "action = 'forged'", "created_at = created_at", "actor_id = 1", "contact_id = 5", "run_id = 5",
        "system = 'x'", "object_id = '9'", "changes_digest = ''", "prev_hash = ''", "row_hash = ''",
    ])
    def test_no_hashed_column_can_be_updated(self, event, assignment):
        if assignment == "created_at = created_at":
            # An UPDATE that keeps the value is harmless; one that changes it is not.
            assignment = "created_at = %s"
            params = [connection.ops.adapt_datetimefield_value(event.created_at.replace(year=2020))]
        else:
            params = []
        with pytest.raises(DatabaseError):
            raw(f"UPDATE audit_auditevent SET {assignment} WHERE id = %s", [*params, event.pk])
        assert unchanged(event)

    @pytest.mark.parametrize("changes, object_repr", [
        ('{"name": ["Old", "Forged"]}', "ann@example.com"),
        ('{"_erased": "audit.erased #2"}', "ann@example.com"),
        ('{"_erased": "audit.erased #2", "name": ["Old", "New"]}', "erased"),
        ('{"_erased": 2}', "erased"),
    ])
    def test_changes_can_only_become_the_erasure_marker(self, event, changes, object_repr):
        with pytest.raises(DatabaseError):
            raw("UPDATE audit_auditevent SET changes = %s, object_repr = %s WHERE id = %s",
                [changes, object_repr, event.pk])
        assert unchanged(event)

    def test_the_erasure_marker_is_let_through(self, event):
        raw("UPDATE audit_auditevent SET changes = %s, object_repr = %s WHERE id = %s",
            ['{"_erased": "audit.erased #2"}', chain.ERASED_REPR, event.pk])
        stored = AuditEvent.objects.get(pk=event.pk)
        assert chain.is_redacted(stored.changes, stored.object_repr)
        assert stored.row_hash == event.row_hash

    @pytest.mark.skipif(connection.vendor != "postgresql",
                        reason="SQLite has no TRUNCATE: a DELETE guard would stop Django's flush; the chain shows "
                               "deletions there (test_verify_audit.py)")
    def test_rows_cannot_be_deleted(self, event):
        with pytest.raises(DatabaseError):
            raw("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
        assert unchanged(event)
