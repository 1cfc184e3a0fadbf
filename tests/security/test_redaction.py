"""The log filter and the redaction patterns behind it."""
import logging
import sys

import pytest

from connections.redaction import REDACTED, RedactSecretsFilter, redact

SECRET = "s3cr3t-VALUE-0042"


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"Authorization: Bearer {SECRET}", f"Authorization: {REDACTED}"),
        (f"{{'Authorization': 'Basic {SECRET}'}}", f"{{'Authorization': '{REDACTED}'}}"),
        (f"sent with Bearer {SECRET}", f"sent with Bearer {REDACTED}"),
        (f"GET /v1?hapikey={SECRET}&limit=10", f"GET /v1?hapikey={REDACTED}&limit=10"),
        (f'{{"access_token": "{SECRET}", "expires_in": 1800}}',
         f'{{"access_token": "{REDACTED}", "expires_in": 1800}}'),
        (f"refresh_token={SECRET}", f"refresh_token={REDACTED}"),
        (f"x-api-key: {SECRET}", f"x-api-key: {REDACTED}"),
        (f"client_secret='{SECRET}'", f"client_secret='{REDACTED}'"),
        (f"/oauth/callback?code={SECRET}&state=abc", f"/oauth/callback?code={REDACTED}&state=abc"),
        # Names that merely contain "code" or "token" are left alone.
        ("status_code=500 token_expires_at=2030-01-01 tokens: 5",
         "status_code=500 token_expires_at=2030-01-01 tokens: 5"),
    ],
)
def test_credential_looking_values_are_masked(text, expected):
    assert redact(text) == expected


def test_known_secrets_are_masked_wherever_they_appear():
    assert redact(f"the value {SECRET} leaked", (SECRET,)) == f"the value {REDACTED} leaked"


def record(msg, *args, exc_info=None, stack_info=None) -> logging.LogRecord:
    return logging.LogRecord("test", logging.ERROR, __file__, 1, msg, args, exc_info, sinfo=stack_info)


def test_the_message_is_rendered_redacted_and_its_arguments_dropped():
    entry = record("calling %s with %s", "HubSpot", {"access_token": SECRET})
    assert RedactSecretsFilter().filter(entry)
    assert SECRET not in entry.getMessage()
    assert entry.args is None
    assert entry.getMessage().startswith("calling HubSpot with {'access_token': ")


def test_the_traceback_is_redacted_and_the_exception_kept():
    try:
        raise RuntimeError(f"refused: Authorization: Bearer {SECRET}")
    except RuntimeError:
        entry = record("it failed", exc_info=sys.exc_info())
    RedactSecretsFilter().filter(entry)
    formatted = logging.Formatter().format(entry)
    assert "RuntimeError: refused: Authorization: [redacted]" in formatted
    assert SECRET not in formatted
    assert entry.exc_info[0] is RuntimeError


def test_the_stack_is_redacted():
    entry = record("here", stack_info=f'  File "x.py", line 1, in f\n    token = "{SECRET}"')
    RedactSecretsFilter().filter(entry)
    assert SECRET not in logging.Formatter().format(entry)


def test_a_message_that_does_not_fit_its_arguments_is_kept_redacted_without_raising():
    entry = record("two %s %s", f"password={SECRET}")
    RedactSecretsFilter().filter(entry)
    assert SECRET not in entry.getMessage()
    assert "arguments that did not fit" in entry.getMessage()
