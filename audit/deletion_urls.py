"""URLs of the deletion pages (names in the "audit" namespace)."""
from django.urls import path

from audit.views import deletion

urlpatterns = [
    path("", deletion.deletion_list, name="deletion_list"),
    path("new/", deletion.deletion_new, name="deletion_new"),
    path("<int:request_id>/", deletion.deletion_detail, name="deletion_detail"),
    path("<int:request_id>/progress.json", deletion.deletion_progress_json, name="deletion_progress"),
    path("<int:request_id>/receipt.json", deletion.deletion_receipt, name="deletion_receipt"),
]
