"""`manage.py rotate_encryption_keys`: re-encrypt every stored secret with the current key."""
from django.core.management.base import BaseCommand, CommandError

from connections.fields import DecryptionError
from connections.keys import secrets_rotate
from syncapp.security.checks import encryption_settings_problem


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column of every row with the current key (SECRET_KEY with the first "
        "SALT_KEY), reading with any configured key (SECRET_KEY_FALLBACKS, the other salts). Runs in one "
        "transaction; values already under the current key are left alone, so running it twice is harmless. "
        "See docs/security.md for the whole key-change procedure."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be re-encrypted, and write nothing"
        )

    def handle(self, *args, **options):
        # The system checks say so too, but call_command() skips them.
        if problem := encryption_settings_problem():
            raise CommandError(problem)
        try:
            report = secrets_rotate(dry_run=options["dry_run"])
        except DecryptionError as error:
            raise CommandError(f"{error} Nothing was changed.") from None
        verb = "to re-encrypt" if report.dry_run else "re-encrypted"
        for column in report.columns:
            self.stdout.write(
                f"{column.label}: {column.rotated} {verb}, {column.current} already current, {column.empty} empty"
            )
        summary = f"{report.rotated} secret(s) {verb}, {report.current} already under the current key."
        if report.dry_run:
            self.stdout.write(f"Dry run, nothing written: {summary}")
        else:
            self.stdout.write(self.style.SUCCESS(summary))
