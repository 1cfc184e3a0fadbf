"""Deletion receipts: what each system held and answered, signed so that a later edit shows.

The receipt is a JSON document; its signature is HMAC-SHA256 with RECEIPT_SIGNING_KEY
over the document's canonical form (keys sorted, no spaces, UTF-8), so it verifies
however the database or a reader reorders its keys. It names the person only by the
keyed hashes of the suppression list, and the records each system held by keyed hashes
of their ids too (`audit.suppression.external_id_key`, under the key the identifiers
name): some ids are the address in disguise, as Mailchimp's MD5 member ids are.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings

from audit.models import DeletionRequest, DeletionTask

ALGORITHM = "HMAC-SHA256"
CANONICAL_FORM = "JSON with sorted keys, no whitespace, UTF-8"
VERSION = 1


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def receipt_sign(receipt: dict[str, Any]) -> str:
    """Return the receipt's signature (hex)."""
    return hmac.new(settings.RECEIPT_SIGNING_KEY.encode(), canonical_json(receipt), hashlib.sha256).hexdigest()


def receipt_verify(request: DeletionRequest) -> bool:
    """Return whether the request's stored receipt is the one signed when it completed."""
    if not request.receipt or not request.receipt_signature:
        return False
    return hmac.compare_digest(receipt_sign(request.receipt), request.receipt_signature)


def receipt_document(request: DeletionRequest) -> dict[str, Any]:
    """Return the receipt as downloaded: the receipt, and how to check its signature."""
    return {
        "receipt": request.receipt,
        "signature": {"algorithm": ALGORITHM, "signed": CANONICAL_FORM + " of the receipt",
                      "value": request.receipt_signature},
    }


def receipt_document_verify(document: Any) -> bool:
    """Return whether a downloaded receipt document still carries a valid signature."""
    if not isinstance(document, dict) or not isinstance(document.get("receipt"), dict):
        return False
    signature = document.get("signature")
    value = signature.get("value") if isinstance(signature, dict) else None
    if not isinstance(value, str) or not value:
        return False
    return hmac.compare_digest(receipt_sign(document["receipt"]), value)


def receipt_build(
    *,
    request: DeletionRequest,
    tasks: Sequence[DeletionTask],
    identifiers: list[dict[str, str]],
    contact_ids: list[int],
    hub_counts: dict[str, int],
    completed_at: datetime,
) -> dict[str, Any]:
    """Return the receipt of a request whose systems have all answered."""
    return {
        "version": VERSION,
        "request": {
            "id": request.pk,
            "regulation": request.regulation,
            "regulation_label": request.get_regulation_display(),
            "reference": request.reference,
            "due_date": request.due_date.isoformat(),
            "filed_at": _iso(request.created_at),
            "filed_by": request.requested_by.get_username() if request.requested_by else None,
            "completed_at": _iso(completed_at),
            # Keyed hashes (audit.suppression); the plain identifiers are not kept.
            "identifiers": identifiers,
        },
        "systems": [
            {
                "connection": task.connection_name,
                "provider": task.provider,
                "status": task.status,
                "found": list(task.found),
                "erased_at": _iso(task.erased_at),
                "attempts": task.attempts,
                "responses": list(task.responses),
            }
            for task in tasks
        ],
        "hub": {"contact_ids": contact_ids, "erased_at": _iso(completed_at), **hub_counts},
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
