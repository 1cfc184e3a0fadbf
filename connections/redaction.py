"""Keep credentials out of logs and messages."""
from __future__ import annotations

import logging
import re

# Values that look like credentials in URLs, headers, bodies and reprs: authorization
# headers, bearer and basic credentials, and name=value or "name": "value" pairs whose
# name ends in token, secret, password or API key (access_token, x-api-key, hapikey...).
_QUOTE = "[\"']?"
_PATTERNS = [
    re.compile(rf"(?i)(authorization{_QUOTE}\s*[:=]\s*{_QUOTE})(bearer|basic|klaviyo-api-key)?\s*[^\s,'\"]+"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        rf"(?i)((?:token|secret|password|passwd|api[-_]?key){_QUOTE}\s*[:=]\s*{_QUOTE})"
        r"[^\s&,'\"]+"
    ),
    # OAuth authorization codes in callback URLs and token requests.
    re.compile(rf"(?i)(\bcode{_QUOTE}\s*[:=]\s*{_QUOTE})[^\s&,'\"]+"),
]
REDACTED = "[redacted]"

# Formats tracebacks the way logging's default formatter does, for redaction first.
_TRACEBACK_FORMATTER = logging.Formatter()


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return `text` with known secret values and credential-looking values masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redact credential-looking values in a record's message, arguments and traceback.

    The message is rendered with its arguments and stored redacted, with the arguments
    dropped, so that no handler or formatter sees the raw arguments. The traceback text
    is rendered here too (formatters reuse `exc_text`) and redacted. `exc_info` is kept
    for handlers that need the exception itself; Django's error mails go through
    `syncapp.security.reporting`, which masks secrets in what they show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break the caller's logging call
            message = f"{record.msg} (arguments that did not fit the message: {record.args!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
