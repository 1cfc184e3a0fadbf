from django.contrib.auth import views as auth_views
from django.urls import include, path

from syncapp.security.forms import ThrottledAuthenticationForm
from syncapp.views import conflicts, contacts, dashboard, duplicates, runs, syncs

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.dashboard, name="dashboard"),
    path("syncs/", syncs.sync_list, name="sync_list"),
    path("syncs/<int:sync_id>/", syncs.sync_detail, name="sync_detail"),
    path("syncs/<int:sync_id>/run/", syncs.sync_run_now, name="sync_run_now"),
    path("syncs/<int:sync_id>/runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("syncs/<int:sync_id>/runs/<int:run_id>/progress.json", runs.run_progress_json, name="run_progress"),
    path("conflicts/", conflicts.conflict_queue, name="conflict_queue"),
    path("conflicts/resolve/", conflicts.conflicts_resolve_bulk, name="conflicts_resolve_bulk"),
    path("conflicts/<int:conflict_id>/", conflicts.conflict_detail, name="conflict_detail"),
    path("conflicts/<int:conflict_id>/resolve/", conflicts.conflict_resolve_view, name="conflict_resolve"),
    path("contacts/", contacts.contact_list, name="contact_list"),
    path("contacts/<int:contact_id>/", contacts.contact_detail, name="contact_detail"),
    path("contacts/<int:contact_id>/consent/", contacts.contact_consent_record, name="contact_consent_record"),
    path("duplicates/", duplicates.duplicate_list, name="duplicate_list"),
    path("duplicates/<int:pair_id>/", duplicates.duplicate_detail, name="duplicate_detail"),
    path("duplicates/<int:pair_id>/merge/", duplicates.duplicate_merge, name="duplicate_merge"),
    path("duplicates/<int:pair_id>/dismiss/", duplicates.duplicate_dismiss_view, name="duplicate_dismiss"),
    path("connections/", include("connections.urls")),
]
