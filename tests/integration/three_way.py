"""The demo's sync over HubSpot, Mailchimp and ActiveCampaign on the sandbox, and outside edits in each.

HubSpot and Mailchimp are edited through their APIs (tests.integration.two_way);
ActiveCampaign through the sandbox's control action that edits a contact as a user in
its pages does (or the person, through an unsubscribe link), and its email through its
API. What each system holds is read back from the control endpoints, which are not
counted in the sandbox's request stats.
"""
from __future__ import annotations

from typing import Any

import requests

from connections.models import Connection
from syncapp.demo import SANDBOX_ACTIVECAMPAIGN_LIST_ID, DemoWorkspace, demo_workspace_build
from tests.integration.two_way import (
    hubspot_by_id,
    hubspot_edit,
    hubspot_unsubscribe,
    mailchimp_by_email,
    mailchimp_edit,
    mailchimp_status,
)
from tests.workspace import user_with_role

TIMEOUT = 10
SYSTEMS = ("hubspot", "mailchimp", "activecampaign")
# The hub fields each system holds both ways, as each names them.
BOTH_WAYS = {
    "email": {"hubspot": "email", "mailchimp": "email_address", "activecampaign": "email"},
    "first_name": {"hubspot": "firstname", "mailchimp": "FNAME", "activecampaign": "firstName"},
    "last_name": {"hubspot": "lastname", "mailchimp": "LNAME", "activecampaign": "lastName"},
}
# The hub fields HubSpot alone is read for, and what the email platforms call them.
FROM_HUBSPOT = {
    "phone": {"hubspot": "phone", "mailchimp": "PHONE", "activecampaign": "phone"},
    "company": {"hubspot": "company", "mailchimp": "COMPANY", "activecampaign": "COMPANY"},
}
# ActiveCampaign's list statuses as consent states.
LIST_STATES = {1: "subscribed", 2: "unsubscribed"}
SUBSCRIBED, UNSUBSCRIBED = 1, 2
OPTED_OUT = {"unsubscribed", "cleaned"}
# Client pacing high enough never to wait: the sandbox's own limits are off.
UNPACED_REQUESTS_PER_SECOND = 10_000


def three_way_workspace(sandbox) -> DemoWorkspace:
    """Build the demo's sync against `sandbox`, without the rate limits that only slow tests."""
    sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0, activecampaign_rate_limit=0)
    root = user_with_role("root", superuser=True)
    workspace = demo_workspace_build(sandbox_url=sandbox.url, list_id=sandbox.list_id, user=root)
    # The clients pace HubSpot's searches to five a second and ActiveCampaign to five
    # requests a second; the sandbox's limits are off.
    Connection.objects.filter(pk=workspace.hubspot.pk).update(settings={"search_rate_limit": 0})
    Connection.objects.filter(pk=workspace.activecampaign.pk).update(
        rate_limit_requests=UNPACED_REQUESTS_PER_SECOND, rate_limit_window_seconds=1)
    return workspace


def system_names(workspace: DemoWorkspace) -> dict[str, str]:
    """Return each system's connection name, as conflicts and the ledger name them."""
    return {system: getattr(workspace, system).name for system in SYSTEMS}


# ActiveCampaign.


def activecampaign_contacts(sandbox) -> list[dict[str, Any]]:
    """Every ActiveCampaign contact: its own fields, `lists` [{list, status}], `tags` and `fieldValues` by perstag."""
    return sandbox.control("activecampaign", "contacts")["contacts"]


def activecampaign_by_email(sandbox, email: str) -> dict[str, Any]:
    return next(contact for contact in activecampaign_contacts(sandbox) if contact["email"].lower() == email.lower())


def activecampaign_by_id(sandbox, contact_id: str) -> dict[str, Any]:
    return next(contact for contact in activecampaign_contacts(sandbox) if contact["id"] == contact_id)


def activecampaign_edit(sandbox, email: str, **fields: str) -> dict[str, Any]:
    """Change the contact holding `email` as a user in ActiveCampaign's pages does: firstName, lastName, phone
    ("" clears one), or a custom field by its perstag (COMPANY)."""
    own = {name: value for name, value in fields.items() if name in ("firstName", "lastName", "phone")}
    custom = {name: value for name, value in fields.items() if name not in own}
    return sandbox.control("activecampaign", "contacts", {"email": email, **own, "fieldValues": custom})


def activecampaign_unsubscribe(sandbox, email: str) -> dict[str, Any]:
    """Unsubscribe the contact from the sync's list, as the person does through a campaign's link."""
    return sandbox.control("activecampaign", "contacts",
                           {"email": email, "lists": {SANDBOX_ACTIVECAMPAIGN_LIST_ID: UNSUBSCRIBED}})


def activecampaign_change_email(sandbox, contact_id: str, new_email: str) -> None:
    """Change a contact's address through ActiveCampaign's API (`PUT /contacts/{id}`)."""
    response = requests.put(f"{sandbox.base_url('activecampaign')}/contacts/{contact_id}",
                            json={"contact": {"email": new_email}},
                            headers={"Api-Token": sandbox.credential("activecampaign")}, timeout=TIMEOUT)
    response.raise_for_status()


def activecampaign_status(contact: dict[str, Any]) -> str | None:
    """Return the contact's consent on the sync's list ("subscribed", "unsubscribed"), None when off it."""
    statuses = [item["status"] for item in contact["lists"] if item["list"] == SANDBOX_ACTIVECAMPAIGN_LIST_ID]
    return LIST_STATES.get(statuses[0], str(statuses[0])) if statuses else None


def activecampaign_value(contact: dict[str, Any], field: str) -> str:
    """Return a field of the contact, its own or custom, "" when it has none."""
    return contact.get(field, contact["fieldValues"].get(field)) or ""


# Any system, by the person's HubSpot id and email.


def edit_in(sandbox, system: str, *, hubspot_id: str, email: str, hub_field: str, value: str) -> None:
    """Change one hub field of a person in `system`, as someone working there does ("" clears it)."""
    field = {**BOTH_WAYS, **FROM_HUBSPOT}[hub_field][system]
    if system == "hubspot":
        hubspot_edit(sandbox, hubspot_id, **{field: value})
    elif system == "mailchimp":
        mailchimp_edit(sandbox, email, **{field: value})
    else:
        activecampaign_edit(sandbox, email, **{field: value})


def unsubscribe_in(sandbox, system: str, email: str) -> None:
    """Have the person unsubscribe in `system`: HubSpot's subscription API, an unsubscribe link elsewhere."""
    if system == "hubspot":
        hubspot_unsubscribe(sandbox, email)
    elif system == "mailchimp":
        mailchimp_status(sandbox, email, "unsubscribed")
    else:
        activecampaign_unsubscribe(sandbox, email)


def values_in(sandbox, *, hubspot_id: str, email: str, hub_field: str) -> dict[str, str]:
    """Return what each system holds for one hub field of a person ("" for nothing)."""
    names = {**BOTH_WAYS, **FROM_HUBSPOT}[hub_field]
    properties = hubspot_by_id(sandbox, hubspot_id)["properties"]
    member = mailchimp_by_email(sandbox, email)
    return {
        "hubspot": properties.get(names["hubspot"]) or "",
        "mailchimp": member["merge_fields"].get(names["mailchimp"], member.get(names["mailchimp"])) or "",
        "activecampaign": activecampaign_value(activecampaign_by_email(sandbox, email), names["activecampaign"]),
    }


def consent_in(sandbox, *, hubspot_id: str, email: str) -> dict[str, str | None]:
    """Return each system's email consent for a person: HubSpot's opt-out flag, the audience or list status."""
    opted_out = hubspot_by_id(sandbox, hubspot_id)["properties"].get("hs_email_optout") == "true"
    return {
        "hubspot": "unsubscribed" if opted_out else "not opted out",
        "mailchimp": mailchimp_by_email(sandbox, email)["status"],
        "activecampaign": activecampaign_status(activecampaign_by_email(sandbox, email)),
    }
