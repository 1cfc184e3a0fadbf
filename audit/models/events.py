"""The append-only audit trail."""
from django.conf import settings
from django.db import models

from audit.expressions import ChangedEmail


class AppendOnlyError(Exception):
    """Audit events are never changed or deleted once written."""


class AuditEventQuerySet(models.QuerySet):
    """Events are added at the end of the hash chain and never changed or deleted.

    audit.services.audit_events_erase is the one exception: it replaces a person's
    values by a redaction marker, with raw SQL the database's guard allows (audit 0003).
    """

    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("Audit events are append-only.")

    def bulk_create(self, objs, batch_size=None):
        # A plain INSERT would leave the rows out of the hash chain: they are appended
        # to it at once, whatever the batch size.
        from audit.services import audit_events_append

        events = list(objs)
        audit_events_append(events, set_ids=True)
        return events


class AuditEvent(models.Model):
    """One thing that happened: who or what did it, to which object, and what changed.

    `changes` maps a field name to `[old, new]`; it never holds a secret's value (only
    the fact that a secret changed).
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=60, db_index=True)
    # Protected: the actor is covered by the row's hash, so it cannot be set to null
    # later. A user who acted is deactivated, not deleted.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    # The system whose data caused the change ("hub" for user actions in Syncapp).
    system = models.CharField(max_length=100, blank=True)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    # Plain ids rather than foreign keys: the trail outlives what it describes.
    contact_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)
    # The hash chain (audit.chain): each row's hash covers its content and the previous
    # row's hash, so an edit, a deletion or an insertion made behind the ORM's back shows.
    # `changes` is covered through its own digest: erasing a person's values from an old
    # row (an erasure request) replaces them and keeps the digest, and the chain holds.
    changes_digest = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    row_hash = models.CharField(max_length=64, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # The trail page reads newest first by id (keyset pagination) within a filter.
        indexes = [
            models.Index(fields=["contact_id", "id"], name="audit_contact_id_idx"),
            models.Index(fields=["action", "id"], name="audit_action_id_idx"),
            models.Index(fields=["actor", "id"], name="audit_actor_id_idx"),
            models.Index(fields=["run_id", "id"], name="audit_run_id_idx"),
            models.Index(fields=["system", "id"], name="audit_system_id_idx"),
            models.Index(fields=["object_type", "object_id", "id"], name="audit_object_id_idx"),
            # The admin's filter by object type, newest first.
            models.Index(fields=["object_type", "id"], name="audit_object_type_idx"),
            # A person is searched by the addresses their contacts held before (audit.people).
            models.Index(ChangedEmail(0), name="audit_email_before_idx"),
            models.Index(ChangedEmail(1), name="audit_email_after_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None or not self._state.adding:
            raise AppendOnlyError("Audit events are append-only.")
        # A new event extends the hash chain (audit.services), never by a plain INSERT.
        from audit.services import audit_events_append

        audit_events_append([self], set_ids=True)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only.")


class AuditChainHead(models.Model):
    """The last row of the hash chain: one row, locked by every writer of audit events.

    Writers update it before reading it (audit.chain), which takes the database's write
    lock first on SQLite and the row lock on PostgreSQL: concurrent writers extend the
    chain one after the other, never from the same head.
    """

    last_hash = models.CharField(max_length=64, blank=True)
    last_event_id = models.BigIntegerField(default=0)
    events = models.BigIntegerField(default=0)
