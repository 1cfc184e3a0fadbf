"""Sync runs, their progress and counts, and the record-level errors they met."""
from django.db import models
from django.db.models.functions import Now


class SyncRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        WEBHOOK = "webhook", "Webhook"
        RETRY = "retry", "Retry"
        COMMAND = "command", "Command line"
        BACKFILL = "backfill", "Backfill of changed mappings"
        FULL = "full", "Full resync"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned (worker died)"
        SKIPPED = "skipped", "Skipped (another run in progress)"
        PAUSED = "paused", "Paused (a mapped field changed)"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    COUNT_FIELDS = (
        "read_count",
        "created_count",
        "updated_count",
        "unchanged_count",
        "pushed_count",
        "conflict_count",
        "failed_count",
        "warning_count",
        "suppressed_count",
        "echo_count",
    )

    # Indexed with the id below: a sync's runs are read newest first.
    sync = models.ForeignKey("syncapp.Sync", on_delete=models.CASCADE, related_name="runs", db_index=False)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    phase = models.CharField(max_length=100, blank=True, help_text="What the run is doing now, for the progress bar.")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    cursors_before = models.JSONField(default=dict, blank=True)
    cursors_after = models.JSONField(default=dict, blank=True)
    read_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    pushed_count = models.PositiveIntegerField(default=0)
    conflict_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    # Records that synced without one field (a record error of severity warning).
    warning_count = models.PositiveIntegerField(default=0)
    # Records of people erased on request (the suppression list): skipped, never imported.
    suppressed_count = models.PositiveIntegerField(default=0)
    # Records read back as they were last agreed (echoes of Syncapp's own writes):
    # recognized without matching or merging (services.echoes); counted in unchanged too.
    echo_count = models.PositiveIntegerField(default=0)
    # Read every record again rather than the changes since the cursors (full resync,
    # backfill); `backfill_fields` names the hub fields a backfill is for.
    full_read = models.BooleanField(default=False)
    backfill_fields = models.JSONField(default=list, blank=True)
    # Hub fields whose waiting backfill (Sync.backfill_pending_fields) this run took when
    # it started: given back to the sync if the run does not finish its reads. A full
    # resync takes them without narrowing its reads to them.
    backfill_taken = models.JSONField(default=list, blank=True)
    # Connection name -> number of HTTP requests made, retries included.
    api_calls = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # By the database's clock, as the lease is: a queued run no worker took goes stale
    # from here (services.tracker.lease_expired), whatever the clock of the web process.
    queued_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    # The run's lease, renewed by its worker by the database's clock (services.tracker).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        # Newest first within each filter of the runs' admin list.
        indexes = [
            models.Index(fields=["sync", "id"], name="run_sync_idx"),
            models.Index(fields=["status", "id"], name="run_status_idx"),
            models.Index(fields=["trigger", "id"], name="run_trigger_idx"),
        ]
        constraints = [
            # One active run per sync, enforced by the database itself.
            models.UniqueConstraint(
                fields=["sync"], condition=models.Q(status__in=["queued", "running"]), name="one_active_run_per_sync"
            )
        ]

    def __str__(self) -> str:
        return f"{self.sync} run {self.pk} ({self.status})"

    @property
    def api_call_total(self) -> int:
        return sum(self.api_calls.values())

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def percent(self) -> int:
        # A run that got to the end is complete whatever its last phase counted (records
        # refused in the final push phase leave `done` short of `total`); a failed or
        # abandoned run shows where it stopped.
        if self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL):
            return 100
        if not self.progress_total:
            return 100 if self.status not in self.ACTIVE else 0
        return min(100, int(100 * self.progress_done / self.progress_total))


class RecordError(models.Model):
    class Severity(models.TextChoices):
        ERROR = "error", "Error"
        # The record synced without one field: not a failed record.
        WARNING = "warning", "Warning"

    # Both indexed with the id below.
    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="record_errors", db_index=False)
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="record_errors",
                                   db_index=False)
    contact = models.ForeignKey("syncapp.Contact", null=True, blank=True, on_delete=models.SET_NULL)
    external_id = models.CharField(max_length=200, blank=True)
    error_class = models.CharField(max_length=100)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.ERROR)
    # Already redacted: never a credential, and cut to a readable length.
    message = models.TextField()
    retriable = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=1)
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The engine looks up a page's unresolved errors to count repeats, not re-add.
            models.Index(fields=["connection", "external_id"], name="record_error_unresolved",
                         condition=models.Q(resolved=False)),
            # Newest first within each filter of the record errors' admin list, and a run's errors.
            models.Index(fields=["run", "id"], name="record_error_run_idx"),
            models.Index(fields=["connection", "id"], name="record_error_connection_idx"),
            models.Index(fields=["severity", "id"], name="record_error_severity_idx"),
            models.Index(fields=["error_class", "id"], name="record_error_class_idx"),
            # Yes or no: one partial index per answer (a boolean column is no range).
            models.Index(fields=["id"], name="record_error_resolved_idx", condition=models.Q(resolved=True)),
            models.Index(fields=["id"], name="record_error_open_idx", condition=models.Q(resolved=False)),
            models.Index(fields=["id"], name="record_error_retriable_idx", condition=models.Q(retriable=True)),
            models.Index(fields=["id"], name="record_error_final_idx", condition=models.Q(retriable=False)),
            models.Index(fields=["external_id", "id"], name="record_error_external_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.error_class}: {self.message[:80]}"
