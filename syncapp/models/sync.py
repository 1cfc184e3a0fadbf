"""A sync: a named plan that keeps contacts identical across two or more connections."""
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from syncapp.engine.schedule import cron_error

SUBSCRIBED = "subscribed"


class Sync(models.Model):
    class DeleteHandling(models.TextChoices):
        IGNORE = "ignore", "Ignore deletes"
        ARCHIVE = "archive", "Archive in the other systems"
        MIRROR = "mirror", "Mirror deletes"

    name = models.CharField(max_length=100, unique=True)
    connections = models.ManyToManyField("connections.Connection", through="SyncConnection", related_name="syncs")
    # Minutes between scheduled runs; 0 turns the schedule off. A cron expression, when
    # set, takes its place.
    schedule_minutes = models.PositiveIntegerField(default=15)
    schedule_cron = models.CharField(
        max_length=100, blank=True, help_text="minute hour day-of-month month day-of-week, e.g. 0 6 * * 1-5"
    )
    batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Leave empty for each provider's maximum."
    )
    delete_handling = models.CharField(max_length=10, choices=DeleteHandling.choices, default=DeleteHandling.IGNORE)
    paused = models.BooleanField(default=False)
    # Why the engine paused the sync itself (a mapped field changed in a system); empty
    # when a person paused it. Shown on the sync page and the dashboard until resumed.
    paused_reason = models.TextField(blank=True)
    # Who hears about it when the sync pauses itself.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_syncs"
    )
    # Apply the suggested fix to addresses with a known domain typo (gmial.com) instead
    # of refusing them; each fix is audited with the old and new address.
    fix_email_typos = models.BooleanField(default=False)
    # Hub fields whose backfill waits for the run under way (one run per sync): the next
    # run to start reads them in full (services.backfill).
    backfill_pending_fields = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The scheduler (django-q2) evaluates the expression on every tick: one it cannot
        # read must be refused where it is entered, never stored.
        reason = cron_error(self.schedule_cron) if self.schedule_cron.strip() else None
        if reason:
            raise ValidationError({"schedule_cron": reason})


class SyncConnection(models.Model):
    """One connection's part in a sync: whether it is read and written, and its cursor."""

    sync = models.ForeignKey(Sync, on_delete=models.CASCADE, related_name="endpoints")
    connection = models.ForeignKey("connections.Connection", on_delete=models.PROTECT, related_name="endpoints")
    read = models.BooleanField(default=True, help_text="Pull changes from this system.")
    write = models.BooleanField(default=True, help_text="Push hub changes to this system.")
    # The email consent state a record created here gets when the hub does not know the
    # person's consent; "" until the marketer chooses one of the provider's
    # `new_record_consent_states`. "subscribed" needs a recorded legal basis.
    new_member_status = models.CharField(max_length=20, blank=True)
    new_member_legal_basis = models.TextField(blank=True)
    # Opaque provider cursor, checkpointed in the same transaction as each page.
    cursor = models.TextField(blank=True)
    cursor_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sync", "connection"], name="one_endpoint_per_sync_connection")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sync} / {self.connection}"

    def clean(self) -> None:
        if self.connection_id is None:
            return
        # Imported here, not when the models load: the registry brings every provider's HTTP client.
        from connections.registry import UnknownProvider, provider_class

        try:
            offered = provider_class(self.connection.provider).new_record_consent_states
        except UnknownProvider:
            offered = ()
        # Stored as compared: the engine matches the status against the provider's exactly.
        self.new_member_status = self.new_member_status.strip()
        self.new_member_legal_basis = self.new_member_legal_basis.strip()
        errors = new_member_choice_errors(
            system=self.connection.name, offered=offered, written=self.write,
            status=self.new_member_status, legal_basis=self.new_member_legal_basis,
        )
        if errors:
            raise ValidationError(errors)


def new_member_choice_errors(
    *, system: str, offered: Sequence[str], written: bool, status: str, legal_basis: str
) -> dict[str, str]:
    """Return why a new-member status and legal basis cannot be stored, keyed by field; {} when they can.

    `offered` is what the system's provider lets a marketer choose for records created
    there (`Provider.new_record_consent_states`). No status is a valid choice: members
    whose consent the hub does not know are then not created. A legal basis justifies
    subscribing them, so it goes with "subscribed" only: kept beside another status, or
    none, it would read as a basis someone recorded for something that is not done.
    """
    status, legal_basis = status.strip(), legal_basis.strip()
    if status and not written:
        return {"new_member_status": f"This sync does not write to {system}, so it creates no members there: clear "
                                     f"the new-member status, or let the sync write to {system}."}
    if status and status not in offered:
        if offered:
            return {"new_member_status": f"{system} offers {', '.join(offered)} for new members; choose one of those."}
        return {"new_member_status": f"{system} has no subscription status to give new records: leave the new-member "
                                     "status empty."}
    if status == SUBSCRIBED and not legal_basis:
        others = " or ".join(state for state in offered if state != SUBSCRIBED)
        return {"new_member_legal_basis": "Subscribing people whose consent the hub does not know needs a legal "
                                          "basis: record it (for example “Consent collected on the signup form”)"
                                          + (f", or choose {others}." if others else ".")}
    if legal_basis and not status:
        return {"new_member_legal_basis": "A legal basis is recorded for subscribing new members, and no status is "
                                          "chosen: choose subscribed, or clear the legal basis."}
    if legal_basis and status != SUBSCRIBED:
        return {"new_member_legal_basis": f"A legal basis is recorded only for subscribing new members, not for "
                                          f"{status}: clear it, or choose subscribed."}
    return {}
