"""`manage.py verify_audit`: check the audit trail's hash chain, row by row, streaming."""
from django.core.management.base import BaseCommand, CommandError

from audit.verification import CHUNK_SIZE, chain_verify


class Command(BaseCommand):
    help = (
        "Check every audit event against the hash chain, from the first to the chain's head, reading the table "
        "a page at a time. Names the first altered, missing or inserted row and exits with status 1 when the "
        "chain is broken. Events erased on request count as valid only when a later audit.erased event lists them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="rows read per query")

    def handle(self, *args, **options):
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")
        report = chain_verify(chunk_size=options["chunk_size"])
        counts = f"{report.checked} row(s) checked, {report.redacted} erased row(s) accepted."
        if not report.valid:
            self.stdout.write(counts)
            raise CommandError(f"The audit chain is broken: {report.broken}.")
        self.stdout.write(self.style.SUCCESS(f"The audit chain is intact: {counts}"))
