"""How a hub field maps onto one connection's field, with transforms and ownership."""
from django.db import models


class FieldMapping(models.Model):
    class Direction(models.TextChoices):
        IN = "in", "Into the hub"
        OUT = "out", "Out of the hub"
        BOTH = "both", "Both ways"

    class ConflictPolicy(models.TextChoices):
        OWNER_WINS = "owner_wins", "Owner wins"
        MOST_RECENT = "most_recent", "Most recent change wins"
        MANUAL = "manual", "Manual review"

    sync = models.ForeignKey("syncapp.Sync", on_delete=models.CASCADE, related_name="mappings")
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="mappings")
    hub_field = models.CharField(max_length=100)
    external_field = models.CharField(max_length=200)
    # The external field's type when the mapping was saved, from the connection's field
    # catalog: a run that finds another type (or no field) pauses the sync.
    external_type = models.CharField(max_length=50, blank=True)
    direction = models.CharField(max_length=4, choices=Direction.choices, default=Direction.BOTH)
    # Transform names applied in order on the way in, reversed on the way out
    # (see mappings.transforms.TRANSFORMS).
    transforms = models.JSONField(default=list, blank=True)
    is_owner = models.BooleanField(default=False, help_text="This system is the source of truth for the field.")
    conflict_policy = models.CharField(max_length=12, choices=ConflictPolicy.choices, default=ConflictPolicy.OWNER_WINS)
    never_overwrite_with_empty = models.BooleanField(default=True)

    class Meta:
        ordering = ["sync", "connection", "id"]
        constraints = [
            models.UniqueConstraint(fields=["sync", "connection", "hub_field"], name="one_mapping_per_hub_field"),
            # No unique (sync, connection, external_field): a full name field is the target
            # of two mappings (first name and last name, each with a full_name transform).
            # Which mappings may share a field depends on their transforms, which a
            # database constraint cannot read from the JSON on every backend (SQLite has no
            # JSON containment); the rule is enforced where mappings are validated and
            # again when a run's plan is built (mappings.transforms.shared_field_error).
        ]

    def __str__(self) -> str:
        arrow = {"in": "->", "out": "<-", "both": "<->"}[self.direction]
        return f"{self.connection}.{self.external_field} {arrow} {self.hub_field}"

    @property
    def reads(self) -> bool:
        return self.direction in (self.Direction.IN, self.Direction.BOTH)

    @property
    def writes(self) -> bool:
        return self.direction in (self.Direction.OUT, self.Direction.BOTH)


class FieldCatalog(models.Model):
    """The fields one connection reported at its last discovery, cached for the editor.

    `fields` holds `FieldInfo.as_dict()` rows (name, label, type, options, read_only,
    calculated, required, max_length).
    """

    connection = models.OneToOneField("connections.Connection", on_delete=models.CASCADE, related_name="field_catalog")
    fields = models.JSONField(default=list, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Why the last refresh failed (redacted), shown beside the cached fields.
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"Fields of {self.connection}"
