"""The mapping editor and "try it on a record", under syncs/<sync_id>/mappings/."""
from django.urls import path

from mappings import views

urlpatterns = [
    path("", views.mapping_editor, name="mapping_editor"),
    path("new/", views.mapping_add, name="mapping_add"),
    path("<id:mapping_id>/", views.mapping_edit, name="mapping_edit"),
    path("<id:mapping_id>/delete/", views.mapping_delete_view, name="mapping_delete"),
    path("fields/<id:connection_id>/refresh/", views.fields_refresh, name="mapping_fields_refresh"),
    path("fields/<id:connection_id>/new/", views.field_create_view, name="mapping_field_create"),
    path("try/", views.mapping_preview, name="mapping_preview"),
]
