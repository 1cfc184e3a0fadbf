"""The hub: one Contact per person, tied to each external record by a RecordLink."""
from django.db import models
from django.db.models.functions import Lower

from syncapp.search import PrefixIndexed


class ConsentState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    SUBSCRIBED = "subscribed", "Subscribed"
    PENDING = "pending", "Pending"
    TRANSACTIONAL = "transactional", "Transactional only"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    CLEANED = "cleaned", "Cleaned (hard bounce)"


# Hub fields a FieldMapping can name, with their labels. Custom attributes are written
# `attributes.<name>`.
HUB_FIELDS = {
    "email": "Email",
    "phone": "Phone (E.164)",
    "first_name": "First name",
    "last_name": "Last name",
    "company": "Company",
    "lifecycle_stage": "Lifecycle stage",
    "email_consent": "Email consent",
    "sms_consent": "SMS consent",
}


def hub_field_label(hub_field: str) -> str:
    """Return a hub field's label for people; custom attributes say so."""
    if hub_field.startswith("attributes."):
        return f"{hub_field.removeprefix('attributes.')} (custom attribute)"
    return HUB_FIELDS.get(hub_field, hub_field)


class Contact(models.Model):
    email = models.CharField(max_length=320, null=True, blank=True, db_index=True, help_text="Trimmed and lowercased.")
    phone = models.CharField(max_length=20, null=True, blank=True, db_index=True, help_text="E.164.")
    first_name = models.TextField(blank=True)
    last_name = models.TextField(blank=True)
    company = models.TextField(blank=True)
    lifecycle_stage = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    email_consent = models.CharField(max_length=20, choices=ConsentState.choices, default=ConsentState.UNKNOWN)
    sms_consent = models.CharField(max_length=20, choices=ConsentState.choices, default=ConsentState.UNKNOWN)
    # When the explicit opt-in that the email subscription rests on was given; None when
    # the state came from field sync. Only such an opt-in may loosen an opt-out held by
    # another system (engine.consent).
    email_opt_in_at = models.DateTimeField(null=True, blank=True)
    erased = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # Phone matching looks only for contacts without an email (engine.identity);
            # a shared office number can belong to thousands of contacts with one.
            models.Index(fields=["phone"], name="contact_phone_without_email", condition=models.Q(email__isnull=True)),
            # The contact list: newest changes first, a keyset page at a time (views.contacts).
            models.Index(fields=["updated_at", "id"], name="contact_updated_idx"),
            # Its search by the start of a name (syncapp.search); email and phone have their own.
            models.Index(PrefixIndexed(Lower("first_name")), name="contact_first_name_prefix"),
            models.Index(PrefixIndexed(Lower("last_name")), name="contact_last_name_prefix"),
        ]

    def __str__(self) -> str:
        return self.email or self.phone or f"Contact {self.pk}"

    def hub_value(self, hub_field: str):
        if hub_field.startswith("attributes."):
            return self.attributes.get(hub_field.removeprefix("attributes."))
        return getattr(self, hub_field)


class RecordLink(models.Model):
    """One contact's record in one connected system, and what was last agreed with it."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="links")
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="links")
    # Empty until the record exists there (a contact waiting for its first push).
    external_id = models.CharField(max_length=200, null=True, blank=True)
    # An id that survives what changes `external_id` (Mailchimp's member id is the hash
    # of the address; its contact_id stays when the address changes): how an email
    # changed there still finds its contact.
    stable_id = models.CharField(max_length=200, blank=True, db_index=True)
    # External field -> value last agreed with that system: the base of the three-way
    # merge, and what tells an echo of Syncapp's own write from a real change.
    merge_base = models.JSONField(default=dict, blank=True)
    remote_modified_at = models.DateTimeField(null=True, blank=True)
    # The email consent state last agreed with that system ("" when never stated): what
    # the consent rule needs to never turn an opt-out there into a subscription.
    email_consent_base = models.CharField(max_length=20, blank=True)
    # Digest of the payload that system last rejected: the link stays pending, but the
    # same payload is not sent again until the contact changes.
    rejected_payload_hash = models.CharField(max_length=64, blank=True)
    archived = models.BooleanField(default=False)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "contact"], name="one_link_per_contact_and_connection"),
            models.UniqueConstraint(
                fields=["connection", "external_id"],
                condition=models.Q(external_id__isnull=False),
                name="one_link_per_external_record",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection} {self.external_id or '(not yet pushed)'}"


class PendingPush(models.Model):
    """A link one sync has to push: the system lacks values that sync's mappings send.

    Marked per sync, not per link: a connection can be in several syncs, each with its
    own mappings, and each sync pushes only what it marked, with its own mappings, and
    clears only its own marks (services.pending).
    """

    # Without an index of its own: the unique constraint's index starts with it.
    sync = models.ForeignKey("syncapp.Sync", on_delete=models.CASCADE, related_name="pending_pushes",
                             db_index=False)
    # The link's connection, copied: a push reads the marks of one sync and one system in
    # link order, and with the system in the key that read is one range of the index
    # below, however many marks the sync's other systems hold. Not indexed alone: only
    # deleting a connection looks marks up by it.
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="+",
                                   db_index=False)
    # Indexed: clearing marks and deleting links look them up by link.
    link = models.ForeignKey(RecordLink, on_delete=models.CASCADE, related_name="pending_pushes")

    class Meta:
        constraints = [
            # One mark per sync and link (the connection is the link's). Its index is the
            # push's keyset scan: sync and system, then link ids after the last one read.
            models.UniqueConstraint(fields=["sync", "connection", "link"], name="one_pending_push_per_sync_and_link"),
        ]

    def __str__(self) -> str:
        return f"{self.sync} -> {self.link}"
