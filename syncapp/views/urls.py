from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from syncapp.security.forms import ThrottledAuthenticationForm
from syncapp.security.inputs import IdConverter
from syncapp.views import builder, conflicts, contacts, dashboard, duplicates, runs, syncs

# <id:...> rather than <int:...>: an id past the largest the database holds is a 404.
register_converter(IdConverter, "id")

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.dashboard, name="dashboard"),
    path("syncs/", syncs.sync_list, name="sync_list"),
    path("syncs/new/", builder.sync_create, name="sync_create"),
    path("syncs/<id:sync_id>/", syncs.sync_detail, name="sync_detail"),
    path("syncs/<id:sync_id>/edit/", builder.sync_edit, name="sync_edit"),
    path("syncs/<id:sync_id>/pause/", builder.sync_pause_view, name="sync_pause"),
    path("syncs/<id:sync_id>/resume/", builder.sync_resume_view, name="sync_resume"),
    path("syncs/<id:sync_id>/delete/", builder.sync_delete_view, name="sync_delete"),
    path("syncs/<id:sync_id>/run/", syncs.sync_run_now, name="sync_run_now"),
    path("syncs/<id:sync_id>/full-resync/", syncs.sync_full_resync, name="sync_full_resync"),
    path("syncs/<id:sync_id>/mappings/", include("mappings.urls")),
    path("syncs/<id:sync_id>/runs/<id:run_id>/", runs.run_detail, name="run_detail"),
    path("syncs/<id:sync_id>/runs/<id:run_id>/progress.json", runs.run_progress_json, name="run_progress"),
    path("conflicts/", conflicts.conflict_queue, name="conflict_queue"),
    path("conflicts/resolve/", conflicts.conflicts_resolve_bulk, name="conflicts_resolve_bulk"),
    path("conflicts/<id:conflict_id>/", conflicts.conflict_detail, name="conflict_detail"),
    path("conflicts/<id:conflict_id>/resolve/", conflicts.conflict_resolve_view, name="conflict_resolve"),
    path("contacts/", contacts.contact_list, name="contact_list"),
    path("contacts/<id:contact_id>/", contacts.contact_detail, name="contact_detail"),
    path("contacts/<id:contact_id>/consent/", contacts.contact_consent_record, name="contact_consent_record"),
    path("duplicates/", duplicates.duplicate_list, name="duplicate_list"),
    path("duplicates/<id:pair_id>/", duplicates.duplicate_detail, name="duplicate_detail"),
    path("duplicates/<id:pair_id>/merge/", duplicates.duplicate_merge, name="duplicate_merge"),
    path("duplicates/<id:pair_id>/dismiss/", duplicates.duplicate_dismiss_view, name="duplicate_dismiss"),
    path("connections/", include("connections.urls")),
    path("audit/", include("audit.urls")),
]
