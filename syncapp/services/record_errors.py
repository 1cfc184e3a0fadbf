"""Record-level errors of a run: saved once per record and cause, counted when repeated."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connections.models import Connection
from connections.redaction import redact
from syncapp.engine.text import clean_text
from syncapp.models import RecordError, SyncRun
from syncapp.services.bulk import bulk_update_rows

MESSAGE_LIMIT = 1000

# Errors met reading a system, keyed by the record's id there. Errors met writing to
# one are keyed by the contact (a record not yet created there has no id) and carry
# the provider's own classes, so they are every other class.
PULL_ERRORS = ("invalid_email", "invalid_value", "duplicate", "ambiguous", "unidentified")


@dataclass(frozen=True)
class ErrorItem:
    error_class: str
    message: str
    external_id: str = ""
    contact_id: int | None = None
    retriable: bool = False


def record_errors_save(*, run: SyncRun, connection: Connection, items: Sequence[ErrorItem], by_contact: bool) -> None:
    """Save `items`; an unresolved error with the same record and class counts a repeat.

    Repeats move to `run`, so the latest run lists every error still standing.
    """
    if not items:
        return
    # Unordered: the model's default ordering would make SQLite sort every error of
    # the connection instead of using the index on the unresolved ones.
    unresolved = RecordError.objects.filter(connection=connection, resolved=False).order_by()
    if by_contact:
        unresolved = unresolved.filter(contact_id__in={item.contact_id for item in items})
    else:
        unresolved = unresolved.filter(external_id__in={item.external_id for item in items})
    known = {(_key(error, by_contact), error.error_class): error for error in unresolved}
    repeated, new = [], {}
    for item in items:
        # Providers echo refused values back in their messages, NUL bytes included.
        message = clean_text(redact(item.message))[:MESSAGE_LIMIT]
        existing = known.get((_key(item, by_contact), item.error_class))
        if existing is not None:
            existing.attempts += 1
            existing.run = run
            existing.message = message
            existing.retriable = item.retriable
            repeated.append(existing)
            continue
        new[(_key(item, by_contact), item.error_class)] = RecordError(
            run=run,
            connection=connection,
            contact_id=item.contact_id,
            external_id=item.external_id,
            error_class=item.error_class,
            message=message,
            retriable=item.retriable,
        )
    bulk_update_rows(RecordError, repeated, ["attempts", "run", "message", "retriable"])
    RecordError.objects.bulk_create(new.values(), batch_size=500)


def _key(item: ErrorItem | RecordError, by_contact: bool):
    return item.contact_id if by_contact else item.external_id


def record_errors_resolve(
    *,
    connection: Connection,
    external_ids: Iterable[str] = (),
    contact_ids: Iterable[int] = (),
    classes: Sequence[str] | None = None,
    except_classes: Sequence[str] = (),
) -> None:
    """Mark the unresolved errors of records that now synced cleanly as resolved.

    `classes` limits this to those error classes; `except_classes` spares those.
    """
    external_ids, contact_ids = list(external_ids), list(contact_ids)
    if not external_ids and not contact_ids:
        return
    errors = RecordError.objects.filter(connection=connection, resolved=False)
    errors = errors.filter(external_id__in=external_ids) if external_ids else errors.filter(contact_id__in=contact_ids)
    if classes is not None:
        errors = errors.filter(error_class__in=classes)
    if except_classes:
        errors = errors.exclude(error_class__in=except_classes)
    errors.update(resolved=True)
