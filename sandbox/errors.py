"""What every emulator's error replies share: JSON and gateway responses, and the exception they are raised as.

Each provider's own shapes live in its emulator module."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from werkzeug.wrappers import Response


def json_response(body: Any, status: int = 200, *, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> Response:
    """Return `body` as compact UTF-8 JSON."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, status=status, content_type=f"{content_type}; charset=utf-8", headers=headers)


def gateway_page(status: int) -> Response:
    """Return the HTML page a load balancer sends when the API behind it is unreachable."""
    reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
    page = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    return Response(page, status=status, content_type="text/html; charset=utf-8")


class DropConnection(Exception):
    """Close the client's connection without sending any response."""


class ProviderError(Exception, ABC):
    """An error reply an emulated provider sends; `response()` renders it."""

    @abstractmethod
    def response(self) -> Response:
        """Return the reply in the provider's own error shape."""
