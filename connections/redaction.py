"""Keep credentials out of logs and messages."""
from __future__ import annotations

import logging
import re

# Values that look like credentials in URLs, headers and bodies: bearer tokens, basic
# auth, API-key headers and query parameters, and key=value pairs with secret names.
_PATTERNS = [
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer|basic|klaviyo-api-key)?\s*[^\s,'\"]+"),
    re.compile(r"(?i)(api[-_]?token\s*[:=]\s*)[^\s,'\"]+"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|client_secret|api_key|apikey|password|token|secret|code)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s&,'\"]+"
    ),
]
REDACTED = "[redacted]"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return `text` with known secret values and credential-looking values masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redact credential-looking values in every log record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
