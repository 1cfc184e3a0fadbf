"""Re-encrypting every stored secret with the current key, after a key change."""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from audit.services import audit_record
from connections.fields import EMPTY_MARKER, SecretField, decrypting_fernet, encrypting_fernet

# Rows read per query: keyset pages keep memory flat on large tables.
PAGE_SIZE = 500


@dataclass
class ColumnReport:
    """What rotation found in one secret column."""

    label: str
    rotated: int = 0
    current: int = 0
    empty: int = 0


@dataclass
class RotationReport:
    dry_run: bool
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(column.rotated for column in self.columns)

    @property
    def current(self) -> int:
        return sum(column.current for column in self.columns)


def secret_fields() -> list[SecretField]:
    """Return every SecretField of every installed model, each column once."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        # Local fields only: a multi-table child would list its parent's columns again.
        found.extend(f for f in model._meta.local_concrete_fields if isinstance(f, SecretField))
    return found


def secrets_rotate(*, dry_run: bool = False) -> RotationReport:
    """Re-encrypt every stored secret with the current first key, in one transaction.

    A value already encrypted with the first key (SECRET_KEY with the first SALT_KEY)
    is left as it is, so a second rotation changes nothing. A value that no configured
    key decrypts stops the rotation with DecryptionError, and nothing is written.
    With `dry_run` the counts are reported and nothing is written.
    """
    report = RotationReport(dry_run=dry_run)
    with transaction.atomic():
        for secret_field in secret_fields():
            report.columns.append(_rotate_column(secret_field, dry_run=dry_run))
        if report.rotated and not dry_run:
            audit_record(
                action="encryption_keys.rotated",
                object_type="secrets",
                object_id="all",
                object_repr="Stored secrets",
                changes={column.label: [None, f"{column.rotated} re-encrypted"]
                         for column in report.columns if column.rotated},
            )
    return report


def _rotate_column(secret_field: SecretField, *, dry_run: bool) -> ColumnReport:
    model = secret_field.model
    column = ColumnReport(label=f"{model._meta.label}.{secret_field.name}")
    primary, any_key = encrypting_fernet(), decrypting_fernet()
    # The stored text as it is, without the field's decryption. Rows stay locked until
    # the rotation commits, so a token refreshed meanwhile is not overwritten with the
    # old one (SQLite has no row locks; its IMMEDIATE transactions serialize writers).
    rows = (
        model._base_manager.select_for_update()
        .annotate(stored=Cast(secret_field.name, models.TextField()))
        .order_by("pk")
    )
    last_pk = None
    while True:
        page = rows.filter(pk__gt=last_pk) if last_pk is not None else rows
        batch = list(page.values_list("pk", "stored")[:PAGE_SIZE])
        if not batch:
            return column
        for pk, stored in batch:
            if stored is None or stored == EMPTY_MARKER:
                column.empty += 1
                continue
            token = stored.encode("utf-8")
            try:
                primary.decrypt(token)
            except InvalidToken:
                pass
            else:
                column.current += 1
                continue
            try:
                rotated = any_key.rotate(token)
            except InvalidToken:
                raise secret_field.decryption_error(row=pk) from None
            column.rotated += 1
            if not dry_run:
                # A Value with a plain text output field skips the field's own
                # encryption: the token is already ciphertext.
                model._base_manager.filter(pk=pk).update(
                    **{secret_field.name: models.Value(rotated.decode("ascii"), output_field=models.TextField())}
                )
        last_pk = batch[-1][0]
