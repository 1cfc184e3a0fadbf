"""What waits for a reviewer: field conflicts a run held back, and likely duplicate contacts."""
from django.conf import settings
from django.db import models


class Conflict(models.Model):
    """One field of one contact that two systems changed differently, under manual review.

    While open, the field is held back for that contact: the hub keeps its value, no
    system is written, and each read of a system updates that system's side. `sides`
    holds one entry per system involved, as read:
    `{"connection_id", "system", "external_field", "raw", "value", "changed_at"}`
    where `raw` is the system's own value (what its link's merge base takes on
    resolution) and `value` the same in hub form (what the reviewer sees and chooses).
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved by a reviewer"
        SETTLED = "settled", "Settled outside (the systems agree again)"

    class Resolution(models.TextChoices):
        SIDE = "side", "Kept one system's value"
        HUB = "hub", "Kept the hub's value"
        TYPED = "typed", "Typed a value"
        SETTLED = "settled", "Settled outside"

    sync = models.ForeignKey("syncapp.Sync", on_delete=models.CASCADE, related_name="conflicts")
    contact = models.ForeignKey("syncapp.Contact", on_delete=models.CASCADE, related_name="conflicts")
    hub_field = models.CharField(max_length=100)
    # The systems involved, for filtering; `sides` holds their values.
    connections = models.ManyToManyField("connections.Connection", related_name="conflicts", blank=True)
    # The value last agreed (hub form); None when the field never had one.
    base_value = models.JSONField(null=True, blank=True)
    hub_value = models.JSONField(null=True, blank=True, help_text="The hub's value while the conflict is open.")
    sides = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    chosen_value = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why the reviewer chose this value.")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey("syncapp.SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The run that found it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["sync", "contact", "hub_field"], condition=models.Q(status="open"),
                                    name="one_open_conflict_per_field"),
        ]

    def __str__(self) -> str:
        return f"{self.hub_field} of contact {self.contact_id} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class DuplicatePair(models.Model):
    """Two contacts that are likely one person, waiting for a reviewer to merge or dismiss."""

    class Reason(models.TextChoices):
        SAME_PHONE = "same_phone", "Same phone, different emails"
        SAME_EMAIL = "same_email", "Same email in two records of one system"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        MERGED = "merged", "Merged"
        DISMISSED = "dismissed", "Not the same person"

    # contact_a.pk < contact_b.pk, so a pair is stored once. A decided pair outlives the
    # contact a merge (or an erasure) removes: the side becomes empty, the decision stays.
    contact_a = models.ForeignKey("syncapp.Contact", null=True, on_delete=models.SET_NULL, related_name="+")
    contact_b = models.ForeignKey("syncapp.Contact", null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=12, choices=Reason.choices)
    detail = models.CharField(max_length=300, blank=True, help_text="The shared key and where it was seen.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["contact_a", "contact_b"], name="one_pair_per_two_contacts"),
            models.CheckConstraint(condition=models.Q(contact_a__lt=models.F("contact_b")), name="pair_in_id_order"),
        ]

    def __str__(self) -> str:
        return f"Contacts {self.contact_a_id} and {self.contact_b_id}: {self.get_reason_display()}"
