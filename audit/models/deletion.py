"""Deletion requests (GDPR Art. 17, CCPA) and their work in each system."""
from django.conf import settings
from django.db import models


class DeletionRequest(models.Model):
    """A data subject's request to be erased everywhere, with its receipt once carried out.

    The identifiers are kept in plain text only while the request is open: the systems
    must be searched for them. Once every system has answered they are blanked, and the
    keyed hashes (`email_key`, `phone_key`, as in the suppression list) remain.
    """

    class Regulation(models.TextChoices):
        GDPR = "gdpr", "GDPR Art. 17"
        CCPA = "ccpa", "CCPA"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILING = "failing", "Failing"

    regulation = models.CharField(max_length=10, choices=Regulation.choices)
    reference = models.CharField(max_length=200, help_text="The requester's or the ticket's reference.")
    due_date = models.DateField()
    email = models.CharField(max_length=320, blank=True)
    phone = models.CharField(max_length=20, blank=True)
    email_key = models.CharField(max_length=64, blank=True, db_index=True)
    phone_key = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # The hub's contacts found and erased (ids only; their values are gone).
    contact_ids = models.JSONField(default=list, blank=True)
    hub_erased_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The signed receipt (audit.receipts), written when the request completes.
    receipt = models.JSONField(default=dict, blank=True)
    receipt_signature = models.CharField(max_length=128, blank=True)
    # When the compliance group was last told the request is overdue or failing.
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Deletion request #{self.pk} ({self.get_regulation_display()}, {self.reference})"


class DeletionTask(models.Model):
    """One system's part of a deletion request: find the person there, erase, confirm."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Waiting to retry"
        ERASED = "erased", "Erased"
        NOT_FOUND = "not_found", "Not found"
        FAILED = "failed", "Failed"

    DONE = (Status.ERASED, Status.NOT_FOUND)

    request = models.ForeignKey(DeletionRequest, on_delete=models.CASCADE, related_name="tasks")
    # The connection may be removed later; its name stays for the receipt.
    connection = models.ForeignKey("connections.Connection", null=True, on_delete=models.SET_NULL, related_name="+")
    connection_name = models.CharField(max_length=100)
    provider = models.CharField(max_length=30)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # External ids found there (by link and by searching), and the provider's answers.
    found = models.JSONField(default=list, blank=True)
    responses = models.JSONField(default=list, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["request", "connection_name"]
        constraints = [models.UniqueConstraint(fields=["request", "connection"], name="one_task_per_system")]

    def __str__(self) -> str:
        return f"{self.connection_name}: {self.get_status_display()}"
