"""`manage.py sandbox`: run the emulated provider APIs (`sandbox.registry`) as a separate process."""
from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.app import DATABASE_NAME, SandboxApp, SandboxSettings
from sandbox.registry import EMULATORS
from sandbox.server import make_server

OPTIONS = tuple(option for api in EMULATORS for option in api.options)


class Command(BaseCommand):
    help = (
        "Run the provider sandbox: "
        + ", ".join(f"{api.label}'s API under {api.prefix}" for api in EMULATORS)
        + " and the control endpoints under /_sandbox/, with their own SQLite storage in --data-dir. Prints "
        "'sandbox listening on http://HOST:PORT' once it accepts connections."
    )
    # The sandbox never touches the app's database or models: skip the checks to start fast.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8765",
                            help="HOST:PORT to listen on; port 0 picks a free one (default 127.0.0.1:8765)")
        parser.add_argument("--data-dir", type=Path, default=Path(settings.BASE_DIR) / "var" / "sandbox",
                            help="directory for the sandbox's own database (default var/sandbox)")
        for option in OPTIONS:
            parser.add_argument(option.flag, type=option.type, default=option.default,
                                help=f"{option.help} (default {option.default})")
        parser.add_argument("--threads", type=int, default=16,
                            help="request threads; more than any emulator's connection cap (default 16)")
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
            sandbox_settings = SandboxSettings(EMULATORS, hostile_file=options["hostile_file"],
                                               **{option.name: options[option.name] for option in OPTIONS})
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
