"""`manage.py sandbox`: run the emulated HubSpot and Mailchimp APIs as a separate process."""
from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.app import (
    DATABASE_NAME,
    DEFAULT_HUBSPOT_RATE_LIMIT,
    DEFAULT_HUBSPOT_SEARCH_RATE_LIMIT,
    DEFAULT_HUBSPOT_TOKEN,
    DEFAULT_MAILCHIMP_KEY,
    SandboxApp,
    SandboxSettings,
)
from sandbox.mailchimp import MAX_CONNECTIONS
from sandbox.server import make_server


class Command(BaseCommand):
    help = (
        "Run the provider sandbox: HubSpot's API under /hubspot, Mailchimp's under /mailchimp/3.0 and the "
        "control endpoints under /_sandbox/, with their own SQLite storage in --data-dir. Prints "
        "'sandbox listening on http://HOST:PORT' once it accepts connections."
    )
    # The sandbox never touches the app's database or models: skip the checks to start fast.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8765",
                            help="HOST:PORT to listen on; port 0 picks a free one (default 127.0.0.1:8765)")
        parser.add_argument("--data-dir", type=Path, default=Path(settings.BASE_DIR) / "var" / "sandbox",
                            help="directory for the sandbox's own database (default var/sandbox)")
        parser.add_argument("--hubspot-token", default=DEFAULT_HUBSPOT_TOKEN,
                            help=f"the Bearer token HubSpot accepts (default {DEFAULT_HUBSPOT_TOKEN})")
        parser.add_argument("--mailchimp-key", default=DEFAULT_MAILCHIMP_KEY,
                            help=f"the API key Mailchimp accepts, ending in -<dc> (default {DEFAULT_MAILCHIMP_KEY})")
        parser.add_argument("--hubspot-rate-limit", type=int, default=DEFAULT_HUBSPOT_RATE_LIMIT,
                            help="HubSpot requests allowed per rolling 10 s per token; 0 turns the limit off "
                                 f"(default {DEFAULT_HUBSPOT_RATE_LIMIT})")
        parser.add_argument("--hubspot-search-rate-limit", type=int, default=DEFAULT_HUBSPOT_SEARCH_RATE_LIMIT,
                            help="HubSpot search requests allowed per second per token, on top of the general "
                                 f"limit; 0 turns it off (default {DEFAULT_HUBSPOT_SEARCH_RATE_LIMIT})")
        parser.add_argument("--mailchimp-max-connections", type=int, default=MAX_CONNECTIONS,
                            help=f"Mailchimp requests in flight per key; 0 turns the limit off "
                                 f"(default {MAX_CONNECTIONS})")
        parser.add_argument("--threads", type=int, default=16,
                            help="request threads; more than the Mailchimp connection cap (default 16)")
        parser.add_argument("--hostile-file", type=Path,
                            default=Path(settings.BASE_DIR).parent / "shared" / "data" / "hostile_contacts.json",
                            help="the hostile records `POST /_sandbox/seed {\"hostile\": true}` loads")

    def handle(self, *args, **options):
        host, _, port = options["addr"].rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise CommandError(f"--addr must be HOST:PORT, got {options['addr']!r}")
        if options["threads"] < 1:
            raise CommandError("--threads must be at least 1")
        try:
            sandbox_settings = SandboxSettings(
                hubspot_token=options["hubspot_token"],
                mailchimp_key=options["mailchimp_key"],
                hubspot_rate_limit=options["hubspot_rate_limit"],
                hubspot_search_rate_limit=options["hubspot_search_rate_limit"],
                mailchimp_max_connections=options["mailchimp_max_connections"],
                hostile_file=options["hostile_file"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        data_dir: Path = options["data_dir"]
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            app = SandboxApp(data_dir, sandbox_settings)
        except OSError as error:
            raise CommandError(f"cannot use --data-dir {data_dir}: {error.strerror or error}") from None
        except sqlite3.Error as error:
            raise CommandError(f"cannot use --data-dir {data_dir}: {data_dir / DATABASE_NAME}: {error}") from None
        try:
            server = make_server(app, host=host.strip("[]"), port=int(port), threads=options["threads"])
        except OSError as error:
            raise CommandError(f"cannot listen on {options['addr']}: {error}") from None
        # SIGTERM (from a test harness or `make`) stops the server like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.stdout.write(f"sandbox listening on http://{host}:{server.effective_port}")
        self.stdout.flush()
        try:
            server.run()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            server.close()
