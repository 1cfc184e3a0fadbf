"""The compliance pages: the audit trail and its exports, subject access, deletion requests."""
from django.urls import include, path

app_name = "audit"

urlpatterns = [
    path("", include("audit.trail_urls")),
    path("deletions/", include("audit.deletion_urls")),
]
