"""The Textline emulator over HTTP, in the sandbox process that plugs it in: its rules at their bounds."""
from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.integration


def call(sandbox, method: str, path: str, *, key: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or sandbox.credential('textline')}"}
    return requests.request(method, f"{sandbox.base_url('textline')}{path}", headers=headers, timeout=10, **kwargs)


def plant(sandbox, phone: str, **values) -> dict:
    """Create or edit a subscriber as someone in Textline's pages would."""
    return sandbox.control("textline", "subscribers", {"phone_number": phone, **values})


def test_the_sandbox_serves_textline_from_the_plug_in(textline_sandbox):
    assert textline_sandbox.base_url("textline").endswith("/textline/v1")
    assert textline_sandbox.credential("textline") == "sandbox-textline-key"
    # The built-in emulators are served beside it.
    assert {"hubspot", "mailchimp", "activecampaign", "textline"} <= set(textline_sandbox.info)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sandbox-textline-key"},
                                     {"Authorization": "Basic sandbox-textline-key"}])
def test_a_missing_or_wrong_key_is_a_401_in_textlines_shape(textline_sandbox, headers):
    response = requests.get(f"{textline_sandbox.base_url('textline')}/subscribers", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_list_pages_by_id_with_next_after_null_at_the_end(textline_sandbox):
    ids = [plant(textline_sandbox, f"+1415555010{n}", sms_status="subscribed")["id"] for n in range(5)]
    first = call(textline_sandbox, "GET", "/subscribers", params={"limit": 2}).json()
    assert [item["id"] for item in first["subscribers"]] == ids[:2] and first["next_after"] == ids[1]
    last = call(textline_sandbox, "GET", "/subscribers", params={"limit": 3, "after": ids[1]}).json()
    assert [item["id"] for item in last["subscribers"]] == ids[2:] and last["next_after"] is None


@pytest.mark.parametrize("params", [{"limit": 101}, {"limit": 0}, {"limit": "ten"}, {"after": "-1"},
                                    {"updated_after": "2026-12-04T10:00:00"}, {"updated_after": "yesterday"},
                                    {"ids": "1,x"}, {"ids": "1", "after": "1"}, {"since": "1"}])
def test_bad_list_parameters_are_a_400_naming_the_problem(textline_sandbox, params):
    response = call(textline_sandbox, "GET", "/subscribers", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter" and response.json()["error"]["message"]


def test_updated_after_is_inclusive_to_the_millisecond(textline_sandbox):
    older = plant(textline_sandbox, "+14155550100", sms_status="subscribed")
    newer = plant(textline_sandbox, "+14155550101", sms_status="subscribed")
    assert older["updated_at"] < newer["updated_at"] and newer["updated_at"].endswith("Z")
    found = call(textline_sandbox, "GET", "/subscribers", params={"updated_after": newer["updated_at"]}).json()
    assert [item["id"] for item in found["subscribers"]] == [newer["id"]]


def test_upsert_answers_each_item_in_order_and_moves_updated_at_only_on_a_change(textline_sandbox):
    ann = plant(textline_sandbox, "+14155550100", first_name="Ann", sms_status="subscribed")
    reply = call(textline_sandbox, "POST", "/subscribers/upsert", json={"subscribers": [
        {"phone_number": "+14155550100", "first_name": "Ann"},
        {"phone_number": "0415 555 0100", "sms_status": "subscribed"},
        {"phone_number": "+14155550199"},
        {"phone_number": "+14155550100", "last_name": "Lee"},
        {"phone_number": "+442079460000", "sms_status": "unsubscribed", "email": "x@example.com"},
    ]}).json()["results"]
    assert [result.get("status") or result["error"]["code"] for result in reply] == [
        "unchanged", "invalid_phone_number", "sms_status_required", "updated", "unknown_field"]
    assert reply[0]["subscriber"]["updated_at"] == ann["updated_at"]
    assert reply[3]["subscriber"]["updated_at"] > ann["updated_at"] and reply[3]["id"] == ann["id"]
    assert reply[2]["error"]["message"] == "sms_status is required for a new subscriber"


@pytest.mark.parametrize("body", [{"subscribers": []}, {"subscribers": [{"phone_number": "+14155550100"}] * 101},
                                  {"subscriber": {}}, ["not an object"]])
def test_an_upsert_outside_its_bounds_is_refused_whole(textline_sandbox, body):
    response = call(textline_sandbox, "POST", "/subscribers/upsert", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert textline_sandbox.control("textline", "subscribers") == {"subscribers": []}


def test_one_subscriber_reads_deletes_and_is_then_a_404(textline_sandbox):
    ann = plant(textline_sandbox, "+14155550100", sms_status="subscribed")
    assert call(textline_sandbox, "GET", f"/subscribers/{ann['id']}").json() == ann
    assert call(textline_sandbox, "DELETE", f"/subscribers/{ann['id']}").status_code == 204
    for method in ("GET", "DELETE"):
        response = call(textline_sandbox, method, f"/subscribers/{ann['id']}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_control_action_refuses_what_the_api_refuses(textline_sandbox):
    with pytest.raises(RuntimeError, match="E.164"):
        plant(textline_sandbox, "415-555-0100", sms_status="subscribed")
    with pytest.raises(RuntimeError, match="unknown keys: email"):
        plant(textline_sandbox, "+14155550100", email="ann@example.com")


def test_seeding_writes_only_when_asked_and_only_e164_phones(textline_sandbox):
    assert textline_sandbox.seed(hubspot_contacts=20)["textline_subscribers"] == 0
    seeded = textline_sandbox.seed(textline_subscribers=200, random_seed=7)["textline_subscribers"]
    subscribers = textline_sandbox.control("textline", "subscribers")["subscribers"]
    assert 0 < seeded == len(subscribers) < 200
    assert all(item["phone_number"].startswith("+") and item["sms_status"] in ("subscribed", "unsubscribed")
               for item in subscribers)


def test_its_rate_limit_is_a_429_with_retry_after(textline_sandbox):
    textline_sandbox.limits(textline_rate_limit=1)
    assert call(textline_sandbox, "GET", "/fields").headers["RateLimit-Limit"] == "1"
    refused = call(textline_sandbox, "GET", "/fields")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
