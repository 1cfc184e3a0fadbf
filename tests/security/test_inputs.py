"""Bad input ends in a 404 or a form error, never a server error: ids past the database's
range in URLs and forms, JSON that no database stores, text that is not a URL."""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from connections.models import Connection
from syncapp.models import Conflict, Contact, DuplicatePair
from syncapp.roles import MARKETER, REVIEWER
from syncapp.security.inputs import ID_MAX, IdConverter, JSONInputField
from tests.workspace import run_make, user_with_role, workspace_make

pytestmark = pytest.mark.django_db

PAST_ANY_ID = ["9223372036854775808", "99999999999999999999", str(10**30)]


def logged_in(role: str | None = None, *, superuser: bool = False) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user_with_role("someone", role, staff=True, superuser=superuser))
    return client


@pytest.fixture
def ids() -> dict[str, int]:
    sync = workspace_make()
    contact = Contact.objects.create(email="ann@example.com", first_name="Ann")
    conflict = Conflict.objects.create(sync=sync, contact=contact, hub_field="first_name", base_value="Ann",
                                       hub_value="Ann", sides=[])
    pair = DuplicatePair.objects.create(contact_a=contact, contact_b=Contact.objects.create(email="ann2@example.com"),
                                        reason=DuplicatePair.Reason.SAME_PHONE)
    return {"sync": sync.pk, "run": run_make(sync).pk, "conflict": conflict.pk, "contact": contact.pk, "pair": pair.pk}


# (method, URL name, the ids it takes): each id in turn is replaced by one past the range.
PAGES_WITH_IDS = [
    ("GET", "sync_detail", ("sync",)),
    ("POST", "sync_run_now", ("sync",)),
    ("GET", "run_detail", ("sync", "run")),
    ("GET", "run_progress", ("sync", "run")),
    ("GET", "conflict_detail", ("conflict",)),
    ("POST", "conflict_resolve", ("conflict",)),
    ("GET", "contact_detail", ("contact",)),
    ("POST", "contact_consent_record", ("contact",)),
    ("GET", "duplicate_detail", ("pair",)),
    ("POST", "duplicate_merge", ("pair",)),
    ("POST", "duplicate_dismiss", ("pair",)),
]


@pytest.mark.parametrize("method, url_name, names", PAGES_WITH_IDS, ids=[name for _, name, _ in PAGES_WITH_IDS])
@pytest.mark.parametrize("too_large", PAST_ANY_ID)
def test_an_id_past_the_largest_one_in_a_url_is_not_found(ids, method, url_name, names, too_large):
    client = logged_in(superuser=True)
    for position in range(len(names)):
        path = reverse(url_name, args=[ids[name] for name in names])
        parts = path.split("/")
        # Swap the position-th id of the path for one past the range.
        id_positions = [index for index, part in enumerate(parts) if part.isdigit()]
        parts[id_positions[position]] = too_large
        url = "/".join(parts)
        response = client.post(url, {}) if method == "POST" else client.get(url)
        assert response.status_code == 404, url


def test_the_id_converter_takes_every_id_up_to_the_largest_and_nothing_past_it():
    converter = IdConverter()
    assert converter.to_python("0") == 0
    assert converter.to_python(str(ID_MAX)) == ID_MAX
    with pytest.raises(ValueError):
        converter.to_python(str(ID_MAX + 1))
    assert converter.to_url(42) == "42"


@pytest.mark.parametrize("too_large", PAST_ANY_ID)
def test_resolving_in_bulk_refuses_an_id_past_the_range_and_resolves_nothing(ids, too_large):
    client = logged_in(REVIEWER)
    response = client.post(reverse("conflicts_resolve_bulk"), {
        "conflicts": [ids["conflict"], too_large], "keep": "hub", "reason": "Checked with the customer",
    }, follow=True)
    assert response.status_code == 200
    assert f"{too_large} is not one of the available choices" in response.content.decode()
    assert Conflict.objects.get(pk=ids["conflict"]).status == Conflict.Status.OPEN


# -- The connection form ------------------------------------------------------------------------------


def connection_form(**overrides) -> dict:
    data = {
        "name": "HubSpot", "provider": "hubspot", "base_url": "http://127.0.0.1:9/hubspot", "settings": "{}",
        "default_phone_region": "US", "status": "connected", "token_expires_at_0": "", "token_expires_at_1": "",
        "scopes": "", "rate_limit_requests": "", "rate_limit_window_seconds": "", "max_concurrency": "",
        "rate_budget": "shared", "new_access_token": "pat-na1-0123456789",
    }
    data.update(overrides)
    return data


@pytest.fixture(params=["add", "change"])
def connection_form_url(request) -> str:
    if request.param == "add":
        return reverse("admin:connections_connection_add")
    connection = Connection.objects.create(name="HubSpot", provider="hubspot", base_url="http://127.0.0.1:9/hubspot",
                                           settings={"portal_id": "7"})
    return reverse("admin:connections_connection_change", args=[connection.pk])


@pytest.mark.parametrize("settings_text", ["", "null"])
def test_empty_or_null_settings_are_saved_as_no_settings(connection_form_url, settings_text):
    response = logged_in(MARKETER).post(connection_form_url, connection_form(settings=settings_text))

    assert response.status_code == 302
    assert Connection.objects.get(name="HubSpot").settings == {}


@pytest.mark.parametrize("settings_text, complaint", [
    ("NaN", "Numbers must be finite"),
    ("1e309", "Numbers must be finite"),
    ('{"list_id": "abc", "rate": -Infinity}', "Numbers must be finite"),
    ('{"nested": [[1e400]]}', "Numbers must be finite"),
    ("[1, 2]", "Enter the settings as a JSON object"),
    ('"abc"', "Enter the settings as a JSON object"),
    ("[" * 5000 + "]" * 5000, "Enter a valid JSON"),
    ("{'list_id': 'abc'}", "Enter a valid JSON"),
])
def test_settings_no_database_stores_are_a_form_error(connection_form_url, settings_text, complaint):
    before = list(Connection.objects.values_list("settings", flat=True))

    response = logged_in(MARKETER).post(connection_form_url, connection_form(settings=settings_text))

    assert response.status_code == 200
    assert complaint in response.content.decode()
    assert list(Connection.objects.values_list("settings", flat=True)) == before


NOT_URLS = ["[]", ["[]", "[]"], "http://[::1", "http://[1:2]/", "https://[]:80/x", "http://["]


@pytest.mark.parametrize("base_url", NOT_URLS)
def test_a_base_url_that_is_no_url_is_a_form_error(connection_form_url, base_url):
    response = logged_in(MARKETER).post(connection_form_url, connection_form(base_url=base_url))

    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    assert not Connection.objects.filter(base_url__contains="[").exists()


def test_the_base_url_is_still_checked_against_private_addresses(connection_form_url):
    response = logged_in(MARKETER).post(connection_form_url, connection_form(base_url="http://169.254.169.254/latest"))

    assert response.status_code == 200
    assert "private or local network" in response.content.decode()


def test_a_base_url_sent_twice_keeps_the_last_like_any_other_field():
    response = logged_in(MARKETER).post(reverse("admin:connections_connection_add"), connection_form(
        base_url=["http://127.0.0.1:9/first", "http://127.0.0.1:9/second"],
    ))

    assert response.status_code == 302
    assert Connection.objects.get(name="HubSpot").base_url == "http://127.0.0.1:9/second"


# -- The JSON form field ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('{"list_id": "abc"}', {"list_id": "abc"}),
    ("[1.5, -2, 1e300]", [1.5, -2, 1e300]),
    ("", None),
])
def test_the_json_field_takes_finite_json(text, expected):
    assert JSONInputField(required=False).clean(text) == expected


def test_the_json_field_shows_deeply_nested_input_back_as_typed():
    field = JSONInputField(required=False)
    deep = "[" * 5000
    assert field.bound_data(deep, None) == deep
    assert json.loads(field.prepare_value(field.bound_data("[1]", None))) == [1]
