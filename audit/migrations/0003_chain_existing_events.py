"""Chain the audit events already written, create the chain's head, and guard the table in the database.

The database guard refuses every UPDATE of an audit event but the one an erasure
request makes (audit.services.audit_events_erase): the description becomes "erased",
`changes` become only the erasure marker, and every other column, the hashes and
the changes digest included, stays as it was. So the guard needs no session flag or
role, and works alike on both databases. On PostgreSQL it refuses every DELETE too.
On SQLite it does not: SQLite has no TRUNCATE, and emptying the table (Django's
`flush`, which the tests run between transactional tests) is a DELETE. A deletion
there shows in `verify_audit` instead, as do changes made by someone able to drop the
guard: the guard stops mistakes and stray code, the hash chain shows tampering.

On SQLite a migration that rebuilds the audit table (most AlterField operations do)
drops the trigger with the old table: such a migration must create it again
(tests/audit/test_append_only.py fails when it is missing).
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from audit import chain

HEAD_ID = 1
CHUNK = 2000

SQLITE_GUARD = """
CREATE TRIGGER audit_event_append_only BEFORE UPDATE ON audit_auditevent
WHEN NOT ({unchanged}
          AND NEW.object_repr = 'erased'
          AND json_type(NEW.changes, '$._erased') = 'text'
          AND (SELECT count(*) FROM json_each(NEW.changes)) = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END
"""

POSTGRESQL_GUARD = """
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND to_jsonb(NEW) - 'changes' - 'object_repr' = to_jsonb(OLD) - 'changes' - 'object_repr'
       AND NEW.object_repr = 'erased'
       AND jsonb_typeof(NEW.changes -> '_erased') = 'string'
       AND NEW.changes - '_erased' = '{}'::jsonb THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % of event % refused', TG_OP, OLD.id;
END
$$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""

POSTGRESQL_GUARD_DROP = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


def chain_existing(apps, schema_editor):
    """Hash the events already stored, in id order, and record the last one in the head."""
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChainHead = apps.get_model("audit", "AuditChainHead")
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    update = (f"UPDATE {quote(AuditEvent._meta.db_table)} SET changes_digest = %s, prev_hash = %s, row_hash = %s "
              f"WHERE id = %s")
    prev_hash, last_id, count = chain.GENESIS, 0, 0
    while True:
        events = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:CHUNK])
        if not events:
            break
        prev_hash = chain.link(events, prev_hash)
        with connection.cursor() as cursor:
            cursor.executemany(update, [[e.changes_digest, e.prev_hash, e.row_hash, e.pk] for e in events])
        last_id, count = events[-1].pk, count + len(events)
    AuditChainHead.objects.create(id=HEAD_ID, last_hash=prev_hash, last_event_id=last_id, events=count)


def unchain(apps, schema_editor):
    apps.get_model("audit", "AuditChainHead").objects.filter(id=HEAD_ID).delete()


def guard_create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_GUARD, params=None)
    elif vendor == "sqlite":
        AuditEvent = apps.get_model("audit", "AuditEvent")
        quote = schema_editor.connection.ops.quote_name
        unchanged = " AND ".join(
            f"NEW.{quote(field.column)} IS OLD.{quote(field.column)}"
            for field in AuditEvent._meta.local_concrete_fields if field.name not in ("changes", "object_repr")
        )
        schema_editor.execute(SQLITE_GUARD.format(unchanged=unchanged))


def guard_drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_GUARD_DROP)
    elif vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_event_append_only")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0002_chain_deletion_suppression"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The actor is covered by the hash: deleting a user must not set it to null.
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(chain_existing, unchain),
        migrations.RunPython(guard_create, guard_drop),
    ]
