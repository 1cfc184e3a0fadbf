"""Builders for the rows page and admin tests need: users in roles, a small workspace."""
from __future__ import annotations

from django.contrib.auth.models import Group, User

from connections.models import Connection
from mappings.models import FieldMapping
from syncapp.models import Sync, SyncConnection, SyncRun

PASSWORD = "correct horse battery staple"


def user_with_role(username: str, role: str | None = None, *, staff: bool = False, superuser: bool = False) -> User:
    """Create an active user, in `role`'s group when given, with a known password."""
    if superuser:
        user = User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def connection_make(name: str, provider: str, **fields) -> Connection:
    fields.setdefault("base_url", f"http://127.0.0.1:9/{provider}")
    return Connection.objects.create(name=name, provider=provider, **fields)


def workspace_make() -> Sync:
    """Create a HubSpot and a Mailchimp connection and a sync with two mappings."""
    hubspot = connection_make("HubSpot", "hubspot", access_token="hs-token-0123456789")
    mailchimp = connection_make("Mailchimp", "mailchimp", api_key="mc-key-0123456789-us1", settings={"list_id": "abc"})
    sync = Sync.objects.create(name="HubSpot to Mailchimp", schedule_minutes=15)
    SyncConnection.objects.create(sync=sync, connection=hubspot, read=True, write=False)
    SyncConnection.objects.create(sync=sync, connection=mailchimp, read=False, write=True)
    for connection, external in ((hubspot, "email"), (mailchimp, "email_address")):
        FieldMapping.objects.create(sync=sync, connection=connection, hub_field="email", external_field=external)
    FieldMapping.objects.create(sync=sync, connection=hubspot, hub_field="first_name", external_field="firstname",
                                direction="in")
    FieldMapping.objects.create(sync=sync, connection=mailchimp, hub_field="first_name", external_field="FNAME",
                                direction="out")
    return sync


def run_make(sync: Sync, **fields) -> SyncRun:
    fields.setdefault("trigger", SyncRun.Trigger.MANUAL)
    return SyncRun.objects.create(sync=sync, **fields)
