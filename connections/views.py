"""Connecting with OAuth: pick a provider, see the scopes, approve at the provider, come back connected.

The flow's facts (state, PKCE verifier, what is being connected) live in the user's
session between the start and the callback, so an answer meant for another session
is refused. The page that sends the user to the provider is a link, not a form: the
Content-Security-Policy lets forms post only to this site.
"""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connections.models import Connection
from connections.oauth import (
    OAuthError,
    StateMismatch,
    TokenGrant,
    authorization_finish,
    authorization_start,
    oauth_endpoints,
    oauth_providers,
    sandbox_origin,
    scopes_for,
)
from connections.providers.base import FieldInfo
from connections.reauth import connection_reauthorized, connection_store_grant
from connections.registry import provider_class
from connections.services import connection_create
from connections.validators import validate_public_base_url
from mappings.discovery import DiscoveryFailed
from mappings.models import FieldCatalog
from syncapp.services.schema_drift import connection_fields_refresh
from syncapp.views.access import marketer_required

FLOW_KEY = "connections_oauth_flow"


class ConnectForm(forms.Form):
    provider = forms.ChoiceField(choices=())
    name = forms.CharField(max_length=100, help_text="How Syncapp names this connection, e.g. “HubSpot (sales)”.")
    base_url = forms.URLField(
        label="API root", required=False, max_length=300, assume_scheme="https",
        help_text="Leave empty for the provider's own API. Another address is still authorized by the provider.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(name, provider_class(name).label) for name in oauth_providers()]
        sandbox = sandbox_origin()
        if sandbox:
            # Only an API root at the configured sandbox authorizes through the sandbox.
            self.fields["base_url"].help_text = (
                f"Leave empty for the provider's own API; an address on the sandbox ({sandbox}) connects to the "
                "sandbox. Any other address is still authorized by the provider."
            )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Connection.objects.filter(name=name).exists():
            raise ValidationError("A connection with this name exists already.")
        return name

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip()
        if url:
            validate_public_base_url(url)
        return url.rstrip("/")


@marketer_required
def connection_list(request: HttpRequest) -> HttpResponse:
    connections = Connection.objects.all()
    return render(request, "connections/connection_list.html", {"connections": connections})


@marketer_required
@require_GET
def connection_detail(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = get_object_or_404(Connection, pk=connection_id)
    syncs = connection.syncs.order_by("name")
    catalog = FieldCatalog.objects.filter(connection=connection).first()
    return render(request, "connections/connection_detail.html", {
        "connection": connection,
        "syncs": syncs,
        "uses_oauth": (connection.settings or {}).get("oauth") is not None,
        "catalog": catalog,
        "fields": [FieldInfo.from_dict(row) for row in catalog.fields] if catalog else [],
        "schema_check_minutes": max(1, round(settings.SCHEMA_CHECK_INTERVAL_SECONDS / 60)),
    })


@marketer_required
@require_POST
def connection_fields_refresh_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Ask the system for its fields again; pause the syncs whose mapped fields changed."""
    connection = get_object_or_404(Connection, pk=connection_id)
    try:
        catalog, paused = connection_fields_refresh(connection=connection, user=request.user)
    except DiscoveryFailed as error:
        messages.error(request, str(error))
    else:
        count = len(catalog.fields)
        messages.success(request, f"{count} field{'s' if count != 1 else ''} found in {connection.name}.")
        for sync in paused:
            messages.warning(request, f"{sync.name} is paused: {sync.paused_reason}")
    return redirect("connections:detail", connection_id=connection.pk)


@marketer_required
@require_http_methods(["GET", "POST"])
def connection_connect(request: HttpRequest) -> HttpResponse:
    """Ask which provider to connect and under which name; then show what will be asked for."""
    offered = oauth_providers()
    form = ConnectForm(request.POST or None,
                       initial={"provider": request.GET.get("provider", offered[0] if offered else "")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        return _begin(request, provider=data["provider"], base_url=data["base_url"], name=data["name"])
    providers = [{"name": name, "label": provider_class(name).label, "scopes": scopes_for(name)} for name in offered]
    return render(request, "connections/connect.html", {"form": form, "providers": providers})


@marketer_required
@require_POST
def connection_reconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Run the flow again for a connection whose grant was revoked (or to renew it)."""
    connection = get_object_or_404(Connection, pk=connection_id)
    if connection.provider not in oauth_providers():
        messages.error(request, f"{connection.name} does not connect with OAuth; change its credentials instead.")
        return redirect("connections:detail", connection_id=connection.pk)
    return _begin(request, provider=connection.provider, base_url=connection.base_url,
                  name=connection.name, connection_id=connection.pk)


@marketer_required
@require_GET
def connection_authorize(request: HttpRequest) -> HttpResponse:
    """Show the scopes that will be requested, and the link to the provider's approval screen."""
    flow = request.session.get(FLOW_KEY)
    if not flow:
        messages.error(request, "No connection is being set up; start again.")
        return redirect("connections:connect")
    return render(request, "connections/authorize.html", {
        "flow": flow,
        "label": provider_class(flow["provider"]).label,
        "scopes": flow["scopes"],
    })


@marketer_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Check the provider's answer against this session's flow, exchange the code, store the tokens."""
    flow = request.session.pop(FLOW_KEY, None)
    if not flow:
        return _refused(request, "No connection is being set up in this session, so this answer cannot be used. "
                                 "Start connecting again from Syncapp.")
    try:
        endpoints = oauth_endpoints(flow["provider"], flow["base_url"])
        grant = authorization_finish(endpoints, flow, request.GET.dict())
    except StateMismatch as error:
        return _refused(request, str(error))
    except OAuthError as error:
        messages.error(request, str(error))
        if flow.get("connection_id"):
            return redirect("connections:detail", connection_id=flow["connection_id"])
        return redirect("connections:connect")
    if flow.get("connection_id"):
        connection = get_object_or_404(Connection, pk=flow["connection_id"])
        resumed = connection_reauthorized(connection=connection, grant=grant, user=request.user)
        messages.success(request, f"{connection.name} is connected again; {len(resumed)} paused sync(s) resumed.")
        return redirect("connections:detail", connection_id=connection.pk)
    try:
        connection = _connection_create(request, flow, grant)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("connections:connect")
    messages.success(request, f"{connection.name} is connected.")
    return redirect("connections:detail", connection_id=connection.pk)


def _begin(request: HttpRequest, *, provider: str, base_url: str, name: str,
           connection_id: int | None = None) -> HttpResponse:
    try:
        endpoints = oauth_endpoints(provider, base_url)
    except OAuthError as error:
        messages.error(request, str(error))
        return redirect("connections:connect")
    url, facts = authorization_start(endpoints, request.build_absolute_uri(reverse("connections:oauth_callback")))
    request.session[FLOW_KEY] = {
        **facts,
        "provider": provider,
        "base_url": base_url,
        "name": name,
        "connection_id": connection_id,
        "scopes": list(endpoints.scopes),
        "authorize_url": url,
    }
    return redirect("connections:authorize")


def _connection_create(request: HttpRequest, flow: dict, grant: TokenGrant) -> Connection:
    connection = Connection(name=flow["name"], provider=flow["provider"],
                            base_url=flow["base_url"] or provider_class(flow["provider"]).default_base_url)
    connection_store_grant(connection, grant, oauth={})
    fields = {name: getattr(connection, name) for name in (
        "name", "provider", "base_url", "access_token", "refresh_token", "token_expires_at", "scopes", "settings")}
    return connection_create(user=request.user, fields=fields)


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "connections/oauth_refused.html", {"message": message}, status=400)
