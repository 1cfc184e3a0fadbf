"""The connection pages: list, detail with its fields, the OAuth connect flow and Reconnect."""
from django.urls import path

from connections import views

app_name = "connections"

urlpatterns = [
    path("", views.connection_list, name="list"),
    path("connect/", views.connection_connect, name="connect"),
    path("connect/authorize/", views.connection_authorize, name="authorize"),
    path("oauth/callback/", views.oauth_callback, name="oauth_callback"),
    path("<int:connection_id>/", views.connection_detail, name="detail"),
    path("<int:connection_id>/reconnect/", views.connection_reconnect, name="reconnect"),
    path("<int:connection_id>/fields/refresh/", views.connection_fields_refresh_view, name="fields_refresh"),
]
