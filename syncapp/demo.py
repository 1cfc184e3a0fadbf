"""The demo workspace: sandbox data, three connections, a sync with its mappings, one user per role.

Every step is idempotent, so `make demo` can run again over an existing workspace: the
sandbox is topped up rather than seeded twice, rows are updated in place (for example
when the sandbox moved to another port), and the users keep the passwords already
handed out.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.contrib.auth.models import Group, User
from django.db import transaction

from connections.http import GuardedSession, RequestRefused
from connections.models import Connection
from connections.providers.base import OutgoingRecord, ProviderError
from connections.registry import provider_for
from connections.services import connection_create, connection_update
from mappings.models import FieldMapping
from syncapp.models import Sync, SyncConnection
from syncapp.roles import COMPLIANCE, MARKETER, REVIEWER
from syncapp.services.syncs import endpoint_save, mapping_save, sync_save

# The sandbox's default credentials (`manage.py sandbox --hubspot-token/--mailchimp-key/
# --activecampaign-token`).
SANDBOX_HUBSPOT_TOKEN = "sandbox-hubspot-token"
SANDBOX_MAILCHIMP_KEY = "sandbox-mailchimp-key-us1"
SANDBOX_ACTIVECAMPAIGN_TOKEN = "sandbox-activecampaign-token"
# The list every sandbox ActiveCampaign account starts with: its status is the email consent.
SANDBOX_ACTIVECAMPAIGN_LIST_ID = "1"

HUBSPOT_CONNECTION = "HubSpot (sandbox)"
MAILCHIMP_CONNECTION = "Mailchimp (sandbox)"
ACTIVECAMPAIGN_CONNECTION = "ActiveCampaign (sandbox)"
SYNC_NAME = "HubSpot, Mailchimp and ActiveCampaign"
# What the demo sync was called before ActiveCampaign joined it: a workspace made then is
# renamed, not doubled.
FORMER_SYNC_NAMES = ("HubSpot and Mailchimp",)
SCHEDULE_MINUTES = 15

# Username -> role group; the admin is a superuser in no group.
ADMIN_USERNAME = "admin"
DEMO_USERS = {ADMIN_USERNAME: None, "marketer": MARKETER, "reviewer": REVIEWER, "compliance": COMPLIANCE}
# Demo roles that open the admin (None: the superuser).
ADMIN_ROLES = (None, COMPLIANCE)
CONTROL_TIMEOUT = (5, 120)
# The status the demo's new Mailchimp members and ActiveCampaign contacts get when the
# hub does not know their consent, and the legal basis recorded for it.
DEMO_NEW_MEMBER_STATUS = "subscribed"
DEMO_LEGAL_BASIS = "Demo workspace: fictional sandbox contacts"


@dataclass(frozen=True)
class MappingPlan:
    """One hub field as HubSpot, Mailchimp and ActiveCampaign call it, which way it flows, and its policy.

    `hubspot` is the HubSpot mapping's direction relative to the hub ("in": read from
    that system, "out": written to it, "both"); `audiences` is the direction of both
    email platforms' mappings.
    """

    hub_field: str
    hubspot_field: str
    mailchimp_field: str
    activecampaign_field: str
    hubspot_transforms: tuple[str, ...] = ()
    hubspot: str = FieldMapping.Direction.BOTH
    audiences: str = FieldMapping.Direction.BOTH
    policy: str = FieldMapping.ConflictPolicy.OWNER_WINS


# Two-way where every system holds the field; HubSpot, the CRM, owns the rest. Names go
# to a reviewer when two systems change them differently; consent follows the ledger's
# rule (the most restrictive state wins, whatever the policy says).
DEMO_MAPPINGS = (
    MappingPlan("email", "email", "email_address", "email"),
    MappingPlan("first_name", "firstname", "FNAME", "firstName", policy=FieldMapping.ConflictPolicy.MANUAL),
    MappingPlan("last_name", "lastname", "LNAME", "lastName", policy=FieldMapping.ConflictPolicy.MANUAL),
    MappingPlan("phone", "phone", "PHONE", "phone", ("phone_e164",), hubspot="in", audiences="out"),
    MappingPlan("company", "company", "COMPANY", "COMPANY", hubspot="in", audiences="out"),
    MappingPlan("email_consent", "hs_email_optout", "status", "status", ("optout_flag",)),
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    password: str


@dataclass(frozen=True)
class DemoWorkspace:
    sync: Sync
    hubspot: Connection
    mailchimp: Connection
    activecampaign: Connection
    mappings: list[FieldMapping]
    # "<system> <field>" for each mapping left out because the sandbox's system lacks the field.
    skipped_fields: list[str]


class SandboxError(Exception):
    """The sandbox could not be reached or refused a control request."""


class SandboxControl:
    """The sandbox's `/_sandbox/` control endpoints, reached over HTTP like any client."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        # The seed is an outbound request like any other: through the one guarded layer.
        self.session = GuardedSession()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/_sandbox{path}"
        try:
            response = self.session.request(method, url, json=body, timeout=CONTROL_TIMEOUT)
        except (requests.RequestException, RequestRefused) as error:
            raise SandboxError(f"Cannot reach the sandbox at {self.base_url}: {error}") from None
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        if response.status_code != 200:
            detail = reply.get("error") if isinstance(reply, dict) else None
            raise SandboxError(
                f"The sandbox answered {method} {url} with {response.status_code}: {detail or response.reason}"
            )
        if not isinstance(reply, dict):
            raise SandboxError(f"The sandbox answered {method} {url} with something other than a JSON object.")
        return reply

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/info")

    def hubspot_contact_count(self) -> int:
        return len(self._call("GET", "/hubspot/contacts").get("contacts", []))

    def activecampaign_contact_count(self) -> int:
        return len(self._call("GET", "/activecampaign/contacts").get("contacts", []))

    def seed(self, *, hubspot_contacts: int, activecampaign_contacts: int, hostile: bool) -> dict[str, Any]:
        return self._call("POST", "/seed", {"hubspot_contacts": hubspot_contacts,
                                            "activecampaign_contacts": activecampaign_contacts, "hostile": hostile})


def activecampaign_target(contacts: int) -> int:
    """Return how many contacts the demo's ActiveCampaign holds beside `contacts` HubSpot contacts.

    Seeded in one call with HubSpot's, the sandbox starts ActiveCampaign's people halfway
    into HubSpot's: with three fifths of the count, five in six of them are HubSpot
    contacts too (the same people, with their own list status, tags and spellings) and
    the rest are only in ActiveCampaign.
    """
    return contacts * 3 // 5


def sandbox_seed(*, control: SandboxControl, contacts: int, hostile: bool) -> dict[str, int]:
    """Top HubSpot up to `contacts` contacts and ActiveCampaign up to its share; the hostile
    records come with the first seed (to every emulator that takes them).

    Return {"existing": n, "seeded": n, "hostile": n} for HubSpot, and
    "activecampaign_existing", "activecampaign_seeded" and "activecampaign_hostile".
    """
    existing = control.hubspot_contact_count()
    missing = max(0, contacts - existing)
    activecampaign_existing = control.activecampaign_contact_count()
    activecampaign_missing = max(0, activecampaign_target(contacts) - activecampaign_existing)
    add_hostile = hostile and existing == 0
    reply: dict[str, Any] = {}
    if missing or activecampaign_missing or add_hostile:
        reply = control.seed(hubspot_contacts=missing, activecampaign_contacts=activecampaign_missing,
                             hostile=add_hostile)
    return {
        "existing": existing, "seeded": reply.get("hubspot_contacts", 0), "hostile": reply.get("hostile_contacts", 0),
        "activecampaign_existing": activecampaign_existing,
        "activecampaign_seeded": reply.get("activecampaign_contacts", 0),
        "activecampaign_hostile": reply.get("activecampaign_hostile_contacts", 0),
    }


class LoginsFileError(Exception):
    """The logins file cannot be read or written."""


def read_logins(path: Path) -> dict[str, str]:
    """Return username -> password from a logins file written by `write_logins`.

    Raise LoginsFileError if `path` is there but cannot be read as one.
    """
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise LoginsFileError(_logins_file_problem(path, error)) from None
    except UnicodeDecodeError:
        raise LoginsFileError(f"Cannot use {path} as the logins file: it is not a logins file written by "
                              "seed_demo (not UTF-8 text).") from None
    logins = {}
    for line in text.splitlines():
        name, separator, password = line.partition("=")
        if separator and not line.startswith("#"):
            logins[name.strip()] = password.strip()
    return logins


def write_logins(path: Path, logins: list[DemoLogin]) -> None:
    """Write the logins as `username=password` lines, readable by the owner only.

    The file is replaced whole or not at all. Raise LoginsFileError if it cannot be written.
    """
    lines = ["# Syncapp demo logins, written by `manage.py seed_demo`. Keep this file private."]
    lines += [f"# {login.username}: {login.role}" for login in logins]
    lines += [f"{login.username}={login.password}" for login in logins]
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file readable by the owner only.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        raise LoginsFileError(_logins_file_problem(path, error)) from None


def _logins_file_problem(path: Path, error: OSError) -> str:
    # mkdir says "File exists" of a parent that is a file.
    reason = "Not a directory" if isinstance(error, FileExistsError) else error.strerror
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
    return f"Cannot use {path} as the logins file: {reason}{where}."


def demo_logins_plan(*, known_passwords: Mapping[str, str]) -> list[DemoLogin]:
    """Return one login per demo user: the known password, or a new one. Changes nothing."""
    return [
        DemoLogin(username=username, role=role or "Superuser",
                  password=known_passwords.get(username) or secrets.token_urlsafe(15))
        for username, role in DEMO_USERS.items()
    ]


def demo_users_ensure(*, logins: list[DemoLogin]) -> None:
    """Create or update one user per login, with its password and its role's group."""
    with transaction.atomic():
        for login in logins:
            role = DEMO_USERS[login.username]
            user, _ = User.objects.get_or_create(username=login.username,
                                                 defaults={"email": f"{login.username}@example.com"})
            user.is_active = True
            # Marketers and reviewers work in the app's own pages, so only the roles
            # whose pages are still the admin's (compliance: the audit trail) are staff;
            # what they may do there comes from the role group's permissions.
            user.is_staff = role in ADMIN_ROLES
            user.is_superuser = role is None
            user.set_password(login.password)
            user.save()
            user.groups.set([Group.objects.get(name=role)] if role else [])


def _connection_ensure(*, name: str, fields: dict[str, Any], user: User) -> Connection:
    connection = Connection.objects.filter(name=name).first()
    if connection is None:
        return connection_create(user=user, fields={"name": name, **fields})
    return connection_update(connection=connection, user=user, fields=fields)


def _stored_settings(name: str) -> dict[str, Any]:
    """Return the settings of connection `name` as stored, so a rebuild keeps other keys."""
    return dict(Connection.objects.filter(name=name).values_list("settings", flat=True).first() or {})


def _field_names(connection: Connection, system: str) -> set[str]:
    try:
        return {field.name for field in provider_for(connection).discover_fields()}
    except ProviderError as error:
        raise SandboxError(f"Cannot read {system}'s fields from the sandbox: {error}") from None


def demo_workspace_build(*, sandbox_url: str, list_id: str, user: User) -> DemoWorkspace:
    """Create or update the connections, the sync, its endpoints and its mappings.

    `list_id` is the Mailchimp audience. An email platform's mapping whose field the
    sandbox lacks (Mailchimp's audience, ActiveCampaign's account) is skipped and named
    in the result; HubSpot's mapping of that hub field too when neither platform has it.
    """
    sandbox_url = sandbox_url.rstrip("/")
    hubspot = _connection_ensure(
        name=HUBSPOT_CONNECTION,
        fields={"provider": "hubspot", "base_url": f"{sandbox_url}/hubspot", "access_token": SANDBOX_HUBSPOT_TOKEN},
        user=user,
    )
    mailchimp = _connection_ensure(
        name=MAILCHIMP_CONNECTION,
        fields={
            "provider": "mailchimp",
            "base_url": f"{sandbox_url}/mailchimp/3.0",
            "api_key": SANDBOX_MAILCHIMP_KEY,
            "settings": {**_stored_settings(MAILCHIMP_CONNECTION), "list_id": list_id},
        },
        user=user,
    )
    activecampaign = _connection_ensure(
        name=ACTIVECAMPAIGN_CONNECTION,
        fields={
            "provider": "activecampaign",
            "base_url": f"{sandbox_url}/activecampaign/api/3",
            "api_key": SANDBOX_ACTIVECAMPAIGN_TOKEN,
            "settings": {**_stored_settings(ACTIVECAMPAIGN_CONNECTION), "list_id": SANDBOX_ACTIVECAMPAIGN_LIST_ID},
        },
        user=user,
    )
    # The email platforms, each with the fields the sandbox gives it and a plan's field name there.
    audiences = (
        (mailchimp, "Mailchimp", _field_names(mailchimp, "Mailchimp"), lambda plan: plan.mailchimp_field),
        (activecampaign, "ActiveCampaign", _field_names(activecampaign, "ActiveCampaign"),
         lambda plan: plan.activecampaign_field),
    )

    with transaction.atomic():
        sync = (Sync.objects.filter(name=SYNC_NAME).first()
                or Sync.objects.filter(name__in=FORMER_SYNC_NAMES).first() or Sync())
        sync.name = SYNC_NAME
        sync.schedule_minutes = SCHEDULE_MINUTES
        sync.paused = False
        sync_save(sync=sync, user=user)
        # Two-way: every system is read and written.
        for connection in (hubspot, mailchimp, activecampaign):
            endpoint = SyncConnection.objects.filter(sync=sync, connection=connection).first()
            endpoint = endpoint or SyncConnection(sync=sync, connection=connection)
            endpoint.read, endpoint.write = True, True
            if connection is not hubspot:
                # Chosen explicitly, as a marketer must: people whose consent the hub
                # does not know are created only with a status someone chose.
                endpoint.new_member_status = DEMO_NEW_MEMBER_STATUS
                endpoint.new_member_legal_basis = DEMO_LEGAL_BASIS
            endpoint_save(endpoint=endpoint, user=user)

        mappings, skipped = [], []
        for plan in DEMO_MAPPINGS:
            targets = []
            for connection, system, fields, field_of in audiences:
                if field_of(plan) in fields:
                    targets.append((connection, field_of(plan)))
                else:
                    skipped.append(f"{system} {field_of(plan)}")
            if not targets:
                continue
            mappings.append(_mapping_ensure(
                sync=sync, connection=hubspot, hub_field=plan.hub_field, external_field=plan.hubspot_field,
                direction=plan.hubspot, transforms=list(plan.hubspot_transforms), is_owner=True,
                policy=plan.policy, user=user,
            ))
            for connection, external_field in targets:
                mappings.append(_mapping_ensure(
                    sync=sync, connection=connection, hub_field=plan.hub_field, external_field=external_field,
                    direction=plan.audiences, transforms=[], is_owner=False, policy=plan.policy, user=user,
                ))
    return DemoWorkspace(sync=sync, hubspot=hubspot, mailchimp=mailchimp, activecampaign=activecampaign,
                         mappings=mappings, skipped_fields=skipped)


def _mapping_ensure(
    *, sync: Sync, connection: Connection, hub_field: str, external_field: str, direction: str,
    transforms: list[str], is_owner: bool, policy: str, user: User,
) -> FieldMapping:
    mapping = FieldMapping.objects.filter(sync=sync, connection=connection, hub_field=hub_field).first()
    mapping = mapping or FieldMapping(sync=sync, connection=connection, hub_field=hub_field)
    mapping.external_field = external_field
    mapping.direction = direction
    mapping.transforms = transforms
    mapping.is_owner = is_owner
    mapping.conflict_policy = policy
    return mapping_save(mapping=mapping, user=user)


# Names a reviewer finds waiting in the queue: two colleagues' spellings of one name.
PLANTED_NAMES = (("Katherine", "Kate"), ("Jonathan", "Jon"), ("Alexandra", "Sasha"), ("Margaret", "Peggy"))
# The systems where the two spellings are typed, in turn: every pair of the three.
PLANTED_PAIRS = (("hubspot", "mailchimp"), ("mailchimp", "activecampaign"), ("hubspot", "activecampaign"))
# Each system's name for the first name.
FIRST_NAME_FIELDS = {"hubspot": "firstname", "mailchimp": "FNAME", "activecampaign": "firstName"}


def demo_conflicts_plant(*, workspace: DemoWorkspace, count: int) -> int:
    """Leave `count` first-name conflicts in the review queue, made the way real ones are.

    Runs the sync once (so every system holds every contact it accepts), then changes
    the first name of a few contacts differently in two of the systems through their
    APIs (HubSpot and Mailchimp, Mailchimp and ActiveCampaign, HubSpot and
    ActiveCampaign, in turn), as two colleagues would, and runs again: the run finds two
    systems changed under manual review, and the conflict shows all three systems'
    values. Does nothing when the sync already has conflicts. Returns how many it left.

    The first run may find conflicts of its own: a name two systems held differently
    before they were ever linked (the sandbox's HubSpot has people under a second
    address with another person's name, which ActiveCampaign holds with their own). Those
    contacts are not planted on, and are not counted.
    """
    from syncapp.models import Conflict, Contact, SyncRun
    from syncapp.services.runs import run_execute, run_request

    sync = workspace.sync
    if count <= 0 or Conflict.objects.filter(sync=sync).exists():
        return 0

    def run() -> SyncRun:
        queued, _ = run_request(sync=sync, trigger=SyncRun.Trigger.COMMAND, enqueue=False)
        return run_execute(run_id=queued.pk)

    run()
    found = set(Conflict.objects.filter(sync=sync).values_list("contact_id", flat=True))
    connections = {"hubspot": workspace.hubspot, "mailchimp": workspace.mailchimp,
                   "activecampaign": workspace.activecampaign}
    # Linked in every system, with nothing left to send: each system holds the hub's name.
    contacts = Contact.objects.exclude(first_name="").exclude(pk__in=found)
    for connection in connections.values():
        contacts = contacts.filter(links__connection=connection, links__external_id__isnull=False,
                                   links__pending_pushes__isnull=True)
    providers = {system: provider_for(connection) for system, connection in connections.items()}
    try:
        # The names and pairs are repeated to outnumber the contacts; the contacts bound the loop.
        for contact, names, pair in zip(contacts.order_by("pk")[:count], PLANTED_NAMES * count, PLANTED_PAIRS * count,
                                        strict=False):
            for system, name in zip(pair, names, strict=True):
                external_id = contact.links.get(connection=connections[system]).external_id
                providers[system].upsert_batch([OutgoingRecord(
                    key=1, email=contact.email, fields={FIRST_NAME_FIELDS[system]: name}, external_id=external_id)])
    finally:
        for provider in providers.values():
            close = getattr(provider.http, "close", None)
            if close is not None:
                close()
    planting = run()
    return Conflict.objects.filter(sync=sync, run=planting, status=Conflict.Status.OPEN).count()
