"""The two providers' error replies, raised as exceptions and rendered as responses."""
from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from typing import Any

from werkzeug.wrappers import Response

MAILCHIMP_ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"


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


class HubSpotError(ProviderError):
    """An error reply in HubSpot's shape: `{status: "error", message, correlationId, category}`."""

    def __init__(self, status: int, message: str, category: str, *, sub_category: str | None = None,
                 context: dict[str, list[str]] | None = None, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.sub_category = sub_category
        self.context = context
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.context is not None:
            body["context"] = self.context
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status, headers=self.headers)


class HubSpotRateLimited(HubSpotError):
    """HubSpot's 429, whose body names the policy instead of a category."""

    def __init__(self, policy_name: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(429, message, "RATE_LIMITS", headers=headers)
        self.policy_name = policy_name

    def body(self) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": self.policy_name,
        }


class MailchimpError(ProviderError):
    """An error reply in Mailchimp's `application/problem+json` shape."""

    def __init__(self, status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": MAILCHIMP_ERROR_DOCS,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": str(uuid.uuid4()),
        }
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status, content_type="application/problem+json")


def mailchimp_invalid(detail: str, errors: list[dict[str, str]] | None = None) -> MailchimpError:
    """Return Mailchimp's 400 "Invalid Resource" error."""
    return MailchimpError(400, "Invalid Resource", detail, errors=errors)


def mailchimp_field_errors(errors: list[dict[str, str]]) -> MailchimpError:
    """Return the "Invalid Resource" error that lists field-level problems."""
    return mailchimp_invalid(
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        errors,
    )
