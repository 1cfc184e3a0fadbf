"""A refused request is logged as one line; only a server error is logged with its traceback."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from connections.models import Connection
from syncapp.roles import REVIEWER
from tests.workspace import user_with_role

pytestmark = pytest.mark.django_db


def test_a_forbidden_page_is_logged_as_one_warning_line(printed):
    client = Client(raise_request_exception=False)
    client.force_login(user_with_role("rita", REVIEWER, staff=True))

    response = client.get(reverse("sync_list"))

    assert response.status_code == 403
    assert printed.getvalue().count("\n") == 1
    assert "WARNING django.request Forbidden (Permission denied): /syncs/" in printed.getvalue()


def test_a_suspicious_request_is_logged_as_one_error_line(printed):
    response = Client(raise_request_exception=False).get(reverse("login"), HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert printed.getvalue().count("\n") == 1
    assert "ERROR django.security.DisallowedHost Invalid HTTP_HOST header: 'evil.example'" in printed.getvalue()


@pytest.mark.urls("tests.security.crash_urls")
def test_a_server_error_keeps_its_traceback(printed):
    Connection.objects.create(name="HubSpot", provider="hubspot", base_url="https://api.hubapi.com",
                              access_token="pat-na1-0123456789")

    response = Client(raise_request_exception=False).get("/fail/HubSpot/")

    assert response.status_code == 500
    assert "ERROR django.request Internal Server Error: /fail/HubSpot/" in printed.getvalue()
    assert "Traceback (most recent call last)" in printed.getvalue()
    assert "ProviderError" in printed.getvalue()
