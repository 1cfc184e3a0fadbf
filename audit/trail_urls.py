"""URLs of the trail pages (names in the "audit" namespace)."""
from django.urls import path

from audit.views import subject_access, trail

urlpatterns = [
    path("", trail.trail, name="trail"),
    path("events/<id:event_id>/", trail.event_detail, name="event"),
    path("export/", trail.export, name="export"),
    path("people/", subject_access.subject_access, name="subject_access"),
]
