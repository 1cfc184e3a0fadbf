"""Record-level errors of a run: saved once per record and cause, counted when repeated.

A record the provider refused, or one that could not be identified, did not sync: an
error. A record that synced without one of its fields (a phone with an extension, a
date that cannot be read) is a warning, one per field left out: the run still counts
the record as synced, and the warning is resolved once that field goes through.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Q

from connections.models import Connection
from connections.redaction import redact
from syncapp.engine.text import clean_text
from syncapp.models import RecordError, SyncRun
from syncapp.services.bulk import bulk_update_rows

MESSAGE_LIMIT = 1000

# Warnings name the field after these prefixes; a class ending in ":" stands for
# every class that begins with it (see _classes_q).
NOT_IMPORTED = "not_imported:"
NOT_SENT = "not_sent:"
# Errors met reading a system, keyed by the record's id there. Errors met writing to
# one are keyed by the contact (a record not yet created there has no id) and carry
# the provider's own classes, so they are every other class. "invalid_value" is the
# class field problems had before they became warnings: still resolved on a re-read.
PULL_ERRORS = ("invalid_email", "invalid_value", "duplicate", "ambiguous", "unidentified", NOT_IMPORTED)
CLASS_LIMIT = RecordError._meta.get_field("error_class").max_length


@dataclass(frozen=True)
class ErrorItem:
    error_class: str
    message: str
    external_id: str = ""
    contact_id: int | None = None
    retriable: bool = False
    severity: str = RecordError.Severity.ERROR


@dataclass(frozen=True)
class FieldProblem:
    """A field left out of a record that otherwise synced, and why."""

    field: str
    reason: str


def field_warnings(problems: Sequence[FieldProblem], *, sent: bool, external_id: str = "",
                   contact_id: int | None = None) -> list[ErrorItem]:
    """Return one warning per field left out of a record that synced (read in, or `sent` out).

    The class names the field, so that each field's warning is kept, repeated and
    resolved on its own: fixing the phone resolves the phone's warning, not the birthday's.
    """
    prefix, done = (NOT_SENT, "sent") if sent else (NOT_IMPORTED, "imported")
    return [
        ErrorItem(f"{prefix}{problem.field}"[:CLASS_LIMIT],
                  f"{problem.field} was not {done}: {problem.reason}. The rest of the record synced.",
                  external_id=external_id, contact_id=contact_id, severity=RecordError.Severity.WARNING)
        for problem in problems
    ]


def records_with(items: Iterable[ErrorItem], *, severity: str, by_contact: bool) -> set:
    """Return the records (external ids, or contact ids) that `items` of `severity` are about."""
    return {_key(item, by_contact) for item in items if item.severity == severity}


def record_errors_save(*, run: SyncRun, connection: Connection, items: Sequence[ErrorItem], by_contact: bool) -> None:
    """Save `items`; an unresolved error with the same record and class counts a repeat.

    Repeats move to `run`, so the latest run lists every error still standing.
    """
    record_errors_settle(run=run, connection=connection, items=items, by_contact=by_contact)


def record_errors_settle(
    *,
    run: SyncRun,
    connection: Connection,
    items: Sequence[ErrorItem],
    by_contact: bool,
    synced: Iterable[str | int] = (),
    classes: Sequence[str] | None = None,
    except_classes: Sequence[str] = (),
) -> None:
    """Save `items` (as `record_errors_save`) and resolve the other errors of the `synced` records.

    What a page or a batch does with its errors, in one read and at most two writes:
    the unresolved errors of every record named are read once; repeats and resolutions
    are written by one multi-row update, new errors by one insert. `synced` are the
    records (external ids, or contact ids `by_contact`) that went through; their errors
    of `classes` (all but `except_classes`) that are not among `items` are resolved, as
    `record_errors_resolve` with `standing=items` would.
    """
    synced = set(synced)
    wanted = {_key(item, by_contact) for item in items} | synced
    if not wanted:
        return
    # Unordered: the model's default ordering would make SQLite sort every error of
    # the connection instead of using the index on the unresolved ones.
    unresolved = RecordError.objects.filter(connection=connection, resolved=False).order_by()
    key = "contact_id__in" if by_contact else "external_id__in"
    known = {(_key(error, by_contact), error.error_class): error
             for error in unresolved.filter(**{key: list(wanted)})}
    changed: dict[int, RecordError] = {}
    new = {}
    for item in items:
        # Providers echo refused values back in their messages, NUL bytes included.
        message = clean_text(redact(item.message))[:MESSAGE_LIMIT]
        existing = known.get((_key(item, by_contact), item.error_class))
        if existing is not None:
            existing.attempts += 1
            existing.run = run
            existing.message = message
            existing.retriable = item.retriable
            existing.severity = item.severity
            changed[existing.pk] = existing
            continue
        new[(_key(item, by_contact), item.error_class)] = RecordError(
            run=run,
            connection=connection,
            contact_id=item.contact_id,
            external_id=item.external_id,
            error_class=item.error_class,
            message=message,
            retriable=item.retriable,
            severity=item.severity,
        )
    standing = {(_key(item, by_contact), item.error_class) for item in items}
    for (record, error_class), error in known.items():
        if (record in synced and (record, error_class) not in standing
                and (classes is None or _class_in(error_class, classes))
                and not _class_in(error_class, except_classes)):
            error.resolved = True
            changed[error.pk] = error
    bulk_update_rows(RecordError, list(changed.values()),
                     ["attempts", "run", "message", "retriable", "severity", "resolved"])
    RecordError.objects.bulk_create(new.values(), batch_size=500)


def _class_in(error_class: str, classes: Sequence[str]) -> bool:
    """Whether `error_class` is one of `classes` (one ending in ":" stands for every class that begins with it)."""
    return any(error_class.startswith(name) if name.endswith(":") else error_class == name for name in classes)


def _key(item: ErrorItem | RecordError, by_contact: bool):
    return item.contact_id if by_contact else item.external_id


def record_errors_resolve(
    *,
    connection: Connection,
    external_ids: Iterable[str] = (),
    contact_ids: Iterable[int] = (),
    classes: Sequence[str] | None = None,
    except_classes: Sequence[str] = (),
    standing: Iterable[ErrorItem] = (),
) -> None:
    """Mark the unresolved errors of records that now synced as resolved.

    `classes` limits this to those error classes; `except_classes` spares those.
    `standing` are the problems met again this time (warnings about records that
    synced without a field): those stay open, every other one of the records is resolved.
    """
    external_ids, contact_ids = list(external_ids), list(contact_ids)
    if not external_ids and not contact_ids:
        return
    by_contact = not external_ids
    errors = RecordError.objects.filter(connection=connection, resolved=False).order_by()
    errors = errors.filter(contact_id__in=contact_ids) if by_contact else errors.filter(external_id__in=external_ids)
    if classes is not None:
        errors = errors.filter(_classes_q(classes))
    if except_classes:
        errors = errors.exclude(_classes_q(except_classes))
    kept = {(_key(item, by_contact), item.error_class) for item in standing}
    if kept:
        key = "contact_id" if by_contact else "external_id"
        rows = errors.values_list("pk", key, "error_class")
        errors = RecordError.objects.filter(pk__in=[pk for pk, record, error_class in rows
                                                    if (record, error_class) not in kept])
    errors.update(resolved=True)


def _classes_q(classes: Sequence[str]) -> Q:
    """Match `classes`; one ending in ":" matches every class that begins with it."""
    query = Q(error_class__in=[name for name in classes if not name.endswith(":")])
    for prefix in (name for name in classes if name.endswith(":")):
        query |= Q(error_class__startswith=prefix)
    return query
