"""The consent ledger: every change of a contact's consent, where it came from and why."""
from django.conf import settings
from django.db import models

from syncapp.models.hub import ConsentState


class ConsentEvent(models.Model):
    """One consent statement: a system's new state for a contact, or a user's decision.

    Append-only in practice (nothing updates or deletes a row but a contact's erasure or
    merge). `hub_state` is the contact's state for the channel after the event: the most
    restrictive rule means a system's "subscribed" often leaves the hub unsubscribed.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    class Evidence(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        API_READ = "api_read", "API read"
        USER = "user", "User"
        SYNC_WRITE = "sync_write", "Written by Syncapp"

    contact = models.ForeignKey("syncapp.Contact", on_delete=models.CASCADE, related_name="consent_events")
    channel = models.CharField(max_length=5, choices=Channel.choices)
    state = models.CharField(max_length=20, choices=ConsentState.choices)
    previous_state = models.CharField(max_length=20, choices=ConsentState.choices, blank=True)
    hub_state = models.CharField(max_length=20, choices=ConsentState.choices)
    # The system that stated it, by name (kept when the connection is deleted).
    system = models.CharField(max_length=100)
    connection = models.ForeignKey("connections.Connection", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    evidence = models.CharField(max_length=10, choices=Evidence.choices)
    # When it happened where it happened (the system's change time), else when read.
    occurred_at = models.DateTimeField(db_index=True)
    # An explicit opt-in: the only statement that may loosen an opt-out.
    explicit_opt_in = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    run = models.ForeignKey("syncapp.SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["contact", "channel", "occurred_at"], name="consent_event_by_contact")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.state} from {self.system} ({self.occurred_at:%Y-%m-%d %H:%M})"
