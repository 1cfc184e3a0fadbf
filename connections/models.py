"""A connection to one external system, with its credentials encrypted at rest."""
from django.db import models

from connections.fields import SecretField


class Connection(models.Model):
    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        NEEDS_REAUTH = "needs_reauth", "Needs reauthorization"
        ERROR = "error", "Error"

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=40)
    base_url = models.URLField(
        max_length=300, help_text="The provider's API root; override for the sandbox or a self-hosted system."
    )
    # Credentials: an API key, or an OAuth access/refresh token pair with expiry.
    api_key = SecretField(blank=True, null=True)
    access_token = SecretField(blank=True, null=True)
    refresh_token = SecretField(blank=True, null=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    scopes = models.CharField(max_length=500, blank=True)
    webhook_secret = SecretField(blank=True, null=True)
    # The secret of the OAuth app the connection was authorized through.
    client_secret = SecretField(blank=True, null=True)
    # Provider-specific, non-secret settings (Mailchimp's list id, HubSpot's portal id).
    settings = models.JSONField(default=dict, blank=True)
    default_phone_region = models.CharField(
        max_length=2, default="US",
        help_text="ISO country code used to read phone numbers written without a +country prefix.",
    )
    # Rate budget: requests per window and concurrent requests, shared by every worker.
    rate_limit_requests = models.PositiveIntegerField(
        null=True, blank=True, help_text="Leave empty for the provider's published limit."
    )
    rate_limit_window_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_concurrency = models.PositiveIntegerField(null=True, blank=True)

    class RateBudgetKept(models.TextChoices):
        # connections.ratelimit.SCOPES
        SHARED = "shared", "By every process, in the shared cache"
        PROCESS = "process", "In one process's memory: only one process ever uses this connection"
        NONE = "none", "Not kept: the provider's 429 replies pace the requests"

    rate_budget = models.CharField(
        max_length=10, choices=RateBudgetKept.choices, default=RateBudgetKept.SHARED,
        # In the database too: rows written by code that predates the field are shared.
        db_default=RateBudgetKept.SHARED,
        help_text="Where the rate budget is kept. In one process's memory costs nothing per request but holds only "
                  "while a single process (one worker, no other) uses the connection; several would each take the "
                  "whole budget. Not kept is for a system without limits of its own worth keeping, such as the "
                  "sandbox with its limits lifted.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
