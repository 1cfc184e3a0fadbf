"""`manage.py seed_demo --sandbox-url URL`: build the demo workspace against a running sandbox."""
from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from connections.fields import DecryptionError
from connections.providers.base import ProviderError
from syncapp.demo import (
    ADMIN_USERNAME,
    LoginsFileError,
    SandboxControl,
    SandboxError,
    demo_conflicts_plant,
    demo_logins_plan,
    demo_users_ensure,
    demo_workspace_build,
    read_logins,
    sandbox_seed,
    write_logins,
)
from syncapp.models import Conflict
from syncapp.security.checks import encryption_settings_problem


class Command(BaseCommand):
    help = (
        "Seed the sandbox's HubSpot and ActiveCampaign with realistic contacts (many people in both), then "
        "create (or bring up to date) the demo workspace: a HubSpot, a Mailchimp and an ActiveCampaign "
        "connection pointing at the sandbox, the two-way sync 'HubSpot, Mailchimp and ActiveCampaign' with its "
        "field mappings and a 15-minute schedule, one user per role with a generated password, and a few "
        "first-name conflicts waiting for a reviewer. Safe to run again: nothing is created twice and passwords "
        "already handed out are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sandbox-url", required=True, help="the running sandbox, e.g. http://127.0.0.1:8765")
        parser.add_argument("--contacts", type=int, default=5000,
                            help="HubSpot contacts the sandbox should hold (default 5000), and three fifths as many "
                                 "ActiveCampaign contacts; only the missing ones are added")
        parser.add_argument("--hostile", action=argparse.BooleanOptionalAction, default=True,
                            help="also seed the shared hostile records, so the demo shows record errors (default on)")
        parser.add_argument("--conflicts", type=int, default=3,
                            help="conflicts to leave in the review queue the first time (default 3; 0 for none)")
        parser.add_argument("--logins-file", type=Path, default=Path(settings.BASE_DIR) / "var" / "demo-logins.txt",
                            help="where the demo users' passwords are kept (default var/demo-logins.txt)")

    def handle(self, *args, **options):
        sandbox_url = options["sandbox_url"].rstrip("/")
        parts = urlsplit(sandbox_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandError(
                f"--sandbox-url must be an http(s) URL such as http://127.0.0.1:8765, not {sandbox_url!r}"
            )
        if options["contacts"] < 0:
            raise CommandError("--contacts must not be negative")
        if problem := encryption_settings_problem():
            raise CommandError(problem)
        logins_file: Path = options["logins_file"]
        try:
            logins = demo_logins_plan(known_passwords=read_logins(logins_file))
            # Written down before any user gets them: a run that fails later on leaves
            # passwords that are either unchanged or in the file.
            write_logins(logins_file, logins)
        except LoginsFileError as error:
            raise CommandError(str(error)) from None
        control = SandboxControl(sandbox_url)
        try:
            info = control.info()
            seeded = sandbox_seed(control=control, contacts=options["contacts"], hostile=options["hostile"])
        except SandboxError as error:
            raise CommandError(str(error)) from None
        list_id = (info.get("mailchimp") or {}).get("list_id")
        if not list_id:
            raise CommandError(f"The sandbox at {sandbox_url} names no Mailchimp audience in GET /_sandbox/info.")

        demo_users_ensure(logins=logins)
        admin = User.objects.get(username=ADMIN_USERNAME)
        try:
            workspace = demo_workspace_build(sandbox_url=sandbox_url, list_id=list_id, user=admin)
        except SandboxError as error:
            raise CommandError(str(error)) from None
        except DecryptionError as error:
            raise CommandError(
                f"{error} The demo database was made with other keys: restore the .env it was made with, "
                "or delete the database (var/syncapp.sqlite3) to start the demo afresh."
            ) from None
        except ValidationError as error:
            raise CommandError(f"The demo workspace is not valid here: {'; '.join(error.messages)}") from None

        try:
            planted = demo_conflicts_plant(workspace=workspace, count=options["conflicts"])
        except ProviderError as error:
            raise CommandError(f"Could not plant the demo conflicts through the sandbox: {error}") from None
        hostile = f", plus {seeded['hostile']} hostile records" if seeded["hostile"] else ""
        self.stdout.write(
            f"Sandbox HubSpot: {seeded['existing']} contacts were there, {seeded['seeded']} seeded{hostile}."
        )
        hostile = (f", plus {seeded['activecampaign_hostile']} hostile records"
                   if seeded["activecampaign_hostile"] else "")
        self.stdout.write(
            f"Sandbox ActiveCampaign: {seeded['activecampaign_existing']} contacts were there, "
            f"{seeded['activecampaign_seeded']} seeded{hostile}."
        )
        self.stdout.write(
            f"Connections: {workspace.hubspot.name}, {workspace.mailchimp.name} (audience {list_id}), "
            f"{workspace.activecampaign.name} (list {workspace.activecampaign.settings['list_id']})."
        )
        self.stdout.write(
            f"Sync '{workspace.sync.name}': every {workspace.sync.schedule_minutes} minutes, "
            f"{len(workspace.mappings)} field mappings."
        )
        for mapping in workspace.mappings:
            self.stdout.write(f"  {mapping}")
        if planted:
            self.stdout.write(f"Ran the sync twice and left {planted} conflicts in the review queue.")
            found = Conflict.objects.filter(sync=workspace.sync, status=Conflict.Status.OPEN).count() - planted
            if found > 0:
                self.stdout.write(f"The runs also found {found} conflict{'s' if found != 1 else ''} of their own "
                                  "(names the systems held differently before they were linked), waiting in the "
                                  "review queue too.")
        if workspace.skipped_fields:
            self.stdout.write(f"Skipped (the sandbox lacks these fields): {', '.join(workspace.skipped_fields)}.")
        self.stdout.write(f"Logins (kept in {logins_file}):")
        for login in logins:
            self.stdout.write(f"  {login.username:<11} {login.password}  ({login.role})")
