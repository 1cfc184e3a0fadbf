"""The demo's two-way HubSpot <-> Mailchimp sync on the sandbox, and outside edits made through each API.

Outside edits go through the emulated APIs as another client would (a colleague in the
CRM, a person on Mailchimp's unsubscribe page); what each system holds is read back
from the sandbox's control endpoints, which are not counted in its request stats.
"""
from __future__ import annotations

from typing import Any

import requests

from connections.models import Connection
from connections.providers.mailchimp import subscriber_hash
from syncapp.demo import DemoWorkspace, demo_workspace_build
from syncapp.models import SyncRun
from syncapp.services.runs import run_execute
from syncapp.services.syncs import endpoint_delete, mapping_delete
from tests.integration.workspace import run_now
from tests.workspace import user_with_role

TIMEOUT = 10
# The hub fields the demo syncs both ways, as each system names them.
NAMES = {"first_name": ("firstname", "FNAME"), "last_name": ("lastname", "LNAME")}


def two_way_workspace(sandbox) -> DemoWorkspace:
    """Build the demo's sync against `sandbox` between HubSpot and Mailchimp alone, without the
    rate limits that only slow tests.

    The demo's third system, ActiveCampaign, leaves the sync with its mappings (the
    three-way tests keep it: tests/integration/three_way.py): these tests are about one
    link between two systems.
    """
    sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0)
    root = user_with_role("root", superuser=True)
    workspace = demo_workspace_build(sandbox_url=sandbox.url, list_id=sandbox.list_id, user=root)
    without_activecampaign(workspace, user=root)
    # The client paces HubSpot's searches to five a second; the sandbox's limit is off.
    Connection.objects.filter(pk=workspace.hubspot.pk).update(settings={"search_rate_limit": 0})
    return workspace


def without_activecampaign(workspace: DemoWorkspace, *, user) -> None:
    """Take ActiveCampaign out of the demo's sync, with its mappings: HubSpot and Mailchimp are left."""
    for mapping in workspace.sync.mappings.filter(connection=workspace.activecampaign):
        mapping_delete(mapping=mapping, user=user)
    endpoint_delete(endpoint=workspace.sync.endpoints.get(connection=workspace.activecampaign), user=user)


def run(workspace: DemoWorkspace) -> SyncRun:
    """Run the sync once in this process and check that it finished.

    A run a page requested (a merge, a resolution) and left for a worker is the one run.
    """
    queued = SyncRun.objects.filter(sync=workspace.sync, status=SyncRun.Status.QUEUED).first()
    finished = run_execute(run_id=queued.pk) if queued is not None else run_now(workspace.sync)
    assert finished.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), finished.error
    return finished


# Requests that ask nothing to change although their method is POST.
READING_POSTS = ("POST /crm/v3/objects/contacts/search", "POST /crm/v3/objects/contacts/batch/read")


def write_calls(sandbox) -> dict[str, int]:
    """Return the write requests counted since the stats were last reset, by provider and route."""
    calls = {}
    for provider, routes in sandbox.stats()["requests"].items():
        for route, count in routes.items():
            if not route.startswith(("GET ", *READING_POSTS)):
                calls[f"{provider} {route}"] = count
    return calls


# HubSpot, through its API.


def _hubspot(sandbox, method: str, path: str, body: dict | None = None) -> Any:
    response = requests.request(method, f"{sandbox.hubspot_url}/crm/v3/objects/contacts{path}", json=body,
                                headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=TIMEOUT)
    response.raise_for_status()
    return response.json() if response.content else None


def hubspot_create(sandbox, **properties: str) -> str:
    """Create one HubSpot contact; return its id."""
    return _hubspot(sandbox, "POST", "", {"properties": properties})["id"]


def hubspot_edit(sandbox, contact_id: str, **properties: str) -> None:
    """Change properties of a HubSpot contact ("" clears one)."""
    _hubspot(sandbox, "PATCH", f"/{contact_id}", {"properties": properties})


def hubspot_archive(sandbox, contact_id: str) -> None:
    _hubspot(sandbox, "DELETE", f"/{contact_id}")


def hubspot_unsubscribe(sandbox, email: str) -> None:
    """Unsubscribe an address from all email, through HubSpot's subscriptions API."""
    response = requests.post(f"{sandbox.hubspot_url}/communication-preferences/v4/statuses/{email}/unsubscribe-all",
                             params={"channel": "EMAIL"}, headers={"Authorization": f"Bearer {sandbox.hubspot_token}"},
                             timeout=TIMEOUT)
    response.raise_for_status()


def hubspot_live(sandbox) -> dict[str, dict[str, Any]]:
    """Return the live (not archived) HubSpot contacts by id: their properties, None for no value."""
    return {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts() if not contact["archived"]}


def hubspot_by_id(sandbox, contact_id: str) -> dict[str, Any]:
    return next(contact for contact in sandbox.hubspot_contacts() if contact["id"] == contact_id)


# Mailchimp, through its API.


def _mailchimp(sandbox, method: str, email: str, body: dict | None = None) -> Any:
    url = f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/members/{subscriber_hash(email)}"
    response = requests.request(method, url, json=body, auth=("anystring", sandbox.mailchimp_key), timeout=TIMEOUT)
    response.raise_for_status()
    return response.json() if response.content else None


def mailchimp_add(sandbox, email: str, **merge_fields: str) -> None:
    """Add a subscribed member straight to the audience (a signup form)."""
    response = requests.post(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/members",
                             json={"email_address": email, "status": "subscribed", "merge_fields": merge_fields},
                             auth=("anystring", sandbox.mailchimp_key), timeout=TIMEOUT)
    response.raise_for_status()


def mailchimp_edit(sandbox, email: str, **merge_fields: str) -> None:
    """Change merge fields of the member with `email` ("" clears one)."""
    _mailchimp(sandbox, "PATCH", email, {"merge_fields": merge_fields})


def mailchimp_status(sandbox, email: str, status: str) -> None:
    """Set a member's status, as Mailchimp's own pages do (unsubscribe link, bounce)."""
    _mailchimp(sandbox, "PATCH", email, {"status": status})


def mailchimp_change_email(sandbox, email: str, new_email: str) -> None:
    _mailchimp(sandbox, "PATCH", email, {"email_address": new_email})


def mailchimp_archive(sandbox, email: str) -> None:
    _mailchimp(sandbox, "DELETE", email)


def mailchimp_live(sandbox) -> dict[str, dict[str, Any]]:
    """Return the members that are not archived, by lowercased email."""
    return {member["email_address"].lower(): member for member in sandbox.mailchimp_members()
            if member["status"] != "archived"}


def mailchimp_by_email(sandbox, email: str) -> dict[str, Any]:
    return next(member for member in sandbox.mailchimp_members() if member["email_address"].lower() == email.lower())
