"""The filtered trail as a file: CSV or JSON Lines, streamed, audited before the first byte.

Rows are read a chunk at a time after the last id of the chunk before (keyset), and
written as they are read: memory stays flat whatever the number of events. The export
covers the trail as it stood when it was asked for: the events older than its own
"audit.exported" event, which records who exported what, with the filter and format.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.cache import patch_cache_control

from audit.models import AuditEvent
from audit.selectors import events_in_chunks
from audit.services import SECRET_FIELDS, SECRET_PLACEHOLDER, audit_record
from connections.redaction import REDACTED

CSV, JSONL = "csv", "jsonl"
# `changes` as the database stores it: most rows are written out without being parsed.
CHANGES_TEXT = "changes_text"
CONTENT_TYPES = {CSV: "text/csv; charset=utf-8", JSONL: "application/jsonl; charset=utf-8"}
EXPORTED = "audit.exported"

# (column read, name in the file), in the file's order; "id" first for the keyset, the
# changes last (JSON Lines append them as read, see _jsonl_lines).
COLUMNS = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("action", "action"),
    ("actor__username", "actor"),
    ("system", "system"),
    ("object_type", "object_type"),
    ("object_id", "object_id"),
    ("object_repr", "object"),
    ("contact_id", "contact_id"),
    ("run_id", "run_id"),
    ("prev_hash", "prev_hash"),
    ("row_hash", "row_hash"),
    (CHANGES_TEXT, "changes"),
)
FIELDS = tuple(field for field, _ in COLUMNS)
HEADER = tuple(name for _, name in COLUMNS)

# Spreadsheets run a cell starting with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Names of values that are credentials, as connections.redaction recognizes them in text.
SECRET_WORDS = r"(?:token|secret|password|passwd|api[-_]?key|authorization|credentials?)"
SECRET_NAME = re.compile(rf"(?i){SECRET_WORDS}$")
# Stored changes that must be parsed before they are written out: a key named like a
# secret (the name's end, its closing quote, a colon), or escaped text (\u00e9), shown
# as the characters it stands for.
NEEDS_PARSING = re.compile(rf'\\u|(?i:{SECRET_WORDS})"\s*:')
# What the trail writes for a secret that changed (audit.services): the fact, no value.
SECRET_CHANGED = [SECRET_PLACEHOLDER, SECRET_PLACEHOLDER]


def neutralised(cell: str) -> str:
    """Return `cell` with a quote in front when a spreadsheet would take it for a formula."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


@lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    return name in SECRET_FIELDS or bool(SECRET_NAME.search(name))


def without_secrets(value: Any) -> Any:
    """Return `value` with the value of every key named like a credential replaced, however deep.

    Payloads are redacted when they are written (audit.services.redact_changes); this
    holds for events written before a name was known to be secret, and for nested data.
    The write-time placeholder, which says a secret changed and shows no value, stays.
    """
    if isinstance(value, dict):
        return {
            name: (item if item == SECRET_CHANGED else REDACTED) if is_secret_name(name) else without_secrets(item)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [without_secrets(item) for item in value]
    return value


def changes_text(stored: str) -> str:
    """Return an event's stored changes (JSON text) as the export writes them: readable, no secret."""
    if not NEEDS_PARSING.search(stored):
        return stored
    return json.dumps(without_secrets(json.loads(stored)), ensure_ascii=False)


def trail_export(*, events: QuerySet[AuditEvent], file_format: str, filters: Mapping[str, str],
                 user) -> StreamingHttpResponse:
    """Audit the export of `events`, then return the response that streams them as `file_format`."""
    with transaction.atomic():
        exported = audit_record(
            action=EXPORTED, object_type="audit_trail", object_id="export",
            object_repr=f"Audit trail export ({file_format.upper()})", actor=user,
            changes={"format": [None, file_format], "filter": [None, dict(filters)]},
        )
    events = events.annotate(**{CHANGES_TEXT: Cast("changes", TextField())})
    chunks = events_in_chunks(events, fields=FIELDS, below=exported.pk)
    content = _csv_lines(chunks) if file_format == CSV else _jsonl_lines(chunks)
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[file_format])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.{file_format}"'
    patch_cache_control(response, private=True, no_store=True)
    return response


def _csv_lines(chunks: Iterable[list[tuple]]) -> Iterator[bytes]:
    yield _csv_text([[neutralised(name) for name in HEADER]])
    for rows in chunks:
        yield _csv_text(_csv_row(row) for row in rows)


def _csv_text(rows: Iterable[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _csv_row(row: tuple) -> list:
    (pk, created_at, action, actor, system, object_type, object_id, object_repr, contact_id, run_id, prev_hash,
     row_hash, changes) = row
    texts = (action, actor or "", system, object_type, object_id, object_repr)
    return [
        pk, created_at.isoformat(), *[f"'{text}" if text.startswith(FORMULA_STARTS) else text for text in texts],
        "" if contact_id is None else contact_id, "" if run_id is None else run_id, prev_hash, row_hash,
        neutralised(changes_text(changes)),
    ]


def _jsonl_lines(chunks: Iterable[list[tuple]]) -> Iterator[bytes]:
    for rows in chunks:
        lines = []
        for row in rows:
            record = dict(zip(HEADER[:-1], row[:-1], strict=True))
            record["created_at"] = record["created_at"].isoformat()
            # The changes are JSON already: appended as the record's last member.
            lines.append(f'{json.dumps(record, ensure_ascii=False)[:-1]}, "changes": {changes_text(row[-1])}}}')
        yield ("\n".join(lines) + "\n").encode("utf-8")
