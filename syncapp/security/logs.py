"""Log filters for the records Django writes about requests."""
from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """Log a refused request (4xx) as its one line, without the traceback of the exception behind it.

    Django attaches the exception to the record of every 403 (PermissionDenied) and 400
    (BadRequest, SuspiciousOperation), so each forbidden page printed a dozen lines of
    traceback that say nothing the line does not. Server errors (5xx) keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status_code = getattr(record, "status_code", None)
        if isinstance(status_code, int) and status_code < 500:
            record.exc_info = None
            record.exc_text = None
        return True
