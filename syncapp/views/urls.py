from django.contrib.auth import views as auth_views
from django.urls import include, path

from syncapp.security.forms import ThrottledAuthenticationForm
from syncapp.views import dashboard, runs, syncs

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
    path("connections/", include("connections.urls")),
]
