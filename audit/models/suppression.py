"""The suppression list: people erased on request, kept out of every sync for good."""
from django.db import models


class Suppression(models.Model):
    """A keyed hash (HMAC-SHA256) of an erased email or phone; no plain text is kept.

    `key_id` names the key of SUPPRESSION_KEYS it was made with: lookups hash with every
    key still listed, so suppression survives a key rotation (audit.suppression).
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    kind = models.CharField(max_length=5, choices=Kind.choices)
    key_hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=40)
    request = models.ForeignKey("audit.DeletionRequest", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="suppressions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key_hash"], name="one_suppression_per_hash")]

    def __str__(self) -> str:
        return f"Suppressed {self.kind} {self.key_hash[:12]}…"
