"""Connect a provider through the sandbox's OAuth, as the pages do, without a browser."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from connections.models import Connection
from connections.oauth import TokenGrant, authorization_finish, authorization_start, oauth_endpoints
from connections.reauth import connection_store_grant

REDIRECT = "http://testserver/connections/oauth/callback/"


def approve_at(authorize_url: str, decision: str = "approve") -> dict[str, str]:
    """Answer the sandbox's approval screen for `authorize_url`; return the callback's query."""
    parts = urlsplit(authorize_url)
    form = {name: values[0] for name, values in parse_qs(parts.query).items()}
    response = requests.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data={**form, "decision": decision},
                             allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return {name: values[0] for name, values in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def grant_from_sandbox(provider: str, base_url: str) -> TokenGrant:
    endpoints = oauth_endpoints(provider, base_url)
    url, flow = authorization_start(endpoints, REDIRECT)
    return authorization_finish(endpoints, flow, approve_at(url))


def oauth_connection(sandbox, provider: str = "hubspot", name: str = "HubSpot (OAuth)", **fields) -> Connection:
    """Create a connection holding a fresh grant from the sandbox."""
    base_url = sandbox.hubspot_url if provider == "hubspot" else sandbox.mailchimp_url
    connection = Connection(name=name, provider=provider, base_url=base_url, **fields)
    connection_store_grant(connection, grant_from_sandbox(provider, base_url), oauth={})
    connection.save()
    return connection
