"""A sync: a named plan that keeps contacts identical across two or more connections."""
from django.db import models


class Sync(models.Model):
    class DeleteHandling(models.TextChoices):
        IGNORE = "ignore", "Ignore deletes"
        ARCHIVE = "archive", "Archive in the other systems"
        MIRROR = "mirror", "Mirror deletes"

    name = models.CharField(max_length=100, unique=True)
    connections = models.ManyToManyField("connections.Connection", through="SyncConnection", related_name="syncs")
    # Minutes between scheduled runs; 0 turns the schedule off.
    schedule_minutes = models.PositiveIntegerField(default=15)
    realtime = models.BooleanField(default=False)
    batch_size = models.PositiveIntegerField(null=True, blank=True, help_text="Leave empty for each provider's maximum.")
    delete_handling = models.CharField(max_length=10, choices=DeleteHandling.choices, default=DeleteHandling.IGNORE)
    paused = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SyncConnection(models.Model):
    """One connection's part in a sync: whether it is read and written, and its cursor."""

    sync = models.ForeignKey(Sync, on_delete=models.CASCADE, related_name="endpoints")
    connection = models.ForeignKey("connections.Connection", on_delete=models.PROTECT, related_name="endpoints")
    read = models.BooleanField(default=True, help_text="Pull changes from this system.")
    write = models.BooleanField(default=True, help_text="Push hub changes to this system.")
    # Opaque provider cursor, checkpointed in the same transaction as each page.
    cursor = models.TextField(blank=True)
    cursor_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sync", "connection"], name="one_endpoint_per_sync_connection")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sync} / {self.connection}"
