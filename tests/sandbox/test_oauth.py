"""The sandbox's OAuth: approval screens, token endpoints, expiry, rotation and revocation."""
from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sandbox.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

REDIRECT = "https://syncapp.example/connections/oauth/callback/"
SCOPES = "oauth crm.objects.contacts.read crm.objects.contacts.write"


def approve(sandbox, path: str, *, scope: str = SCOPES, decision: str = "approve", **extra) -> dict[str, list[str]]:
    """Post the approval screen's decision; return the redirect's query."""
    form = {"client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT, "scope": scope, "state": "st-1",
            "response_type": "code", "decision": decision, **extra}
    response = requests.post(f"{sandbox.url}{path}", data=form, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


def hubspot_code(sandbox, **extra) -> str:
    return approve(sandbox, "/hubspot/oauth/authorize", **extra)["code"][0]


def hubspot_token(sandbox, **form) -> requests.Response:
    body = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET, **form}
    return requests.post(f"{sandbox.url}/hubspot/oauth/v1/token", data=body, timeout=10)


def hubspot_tokens(sandbox) -> dict:
    response = hubspot_token(sandbox, grant_type="authorization_code", code=hubspot_code(sandbox),
                             redirect_uri=REDIRECT)
    assert response.status_code == 200, response.text
    return response.json()


def list_contacts(sandbox, token: str) -> requests.Response:
    return requests.get(f"{sandbox.hubspot_url}/crm/v3/objects/contacts", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def test_the_approval_screen_lists_the_requested_scopes_with_approve_and_deny(sandbox):
    response = requests.get(f"{sandbox.url}/hubspot/oauth/authorize", timeout=10, params={
        "client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT, "scope": SCOPES, "state": "abc"})
    assert response.status_code == 200
    assert "<li>crm.objects.contacts.read</li>" in response.text
    assert "<li>crm.objects.contacts.write</li>" in response.text
    assert 'id="approve"' in response.text and 'id="deny"' in response.text


def test_an_unknown_client_gets_an_error_page_not_a_redirect(sandbox):
    response = requests.get(f"{sandbox.url}/hubspot/oauth/authorize", timeout=10, allow_redirects=False,
                            params={"client_id": "someone-else", "redirect_uri": REDIRECT, "state": "abc"})
    assert response.status_code == 400
    assert "client_id" in response.text


def test_approving_redirects_with_a_code_and_the_state(sandbox):
    query = approve(sandbox, "/hubspot/oauth/authorize")
    assert query["state"] == ["st-1"]
    assert query["code"][0]


def test_denying_redirects_with_access_denied(sandbox):
    query = approve(sandbox, "/hubspot/oauth/authorize", decision="deny")
    assert query == {"error": ["access_denied"], "state": ["st-1"]}


def test_a_code_gives_tokens_that_the_hubspot_api_accepts(sandbox):
    tokens = hubspot_tokens(sandbox)
    assert tokens["expires_in"] == 1800
    assert tokens["token_type"] == "bearer"
    assert tokens["refresh_token"]
    assert list_contacts(sandbox, tokens["access_token"]).status_code == 200


def test_the_private_app_token_still_works(sandbox):
    assert list_contacts(sandbox, sandbox.hubspot_token).status_code == 200


def test_a_code_is_single_use(sandbox):
    code = hubspot_code(sandbox)
    assert hubspot_token(sandbox, grant_type="authorization_code", code=code, redirect_uri=REDIRECT).status_code == 200
    again = hubspot_token(sandbox, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again.status_code == 400
    assert again.json()["status"] == "BAD_AUTH_CODE"


def test_a_wrong_client_secret_is_refused(sandbox):
    response = hubspot_token(sandbox, grant_type="authorization_code", code=hubspot_code(sandbox),
                             redirect_uri=REDIRECT, client_secret="wrong")
    assert response.status_code == 400
    assert response.json()["status"] == "BAD_CLIENT_ID"


def test_pkce_needs_the_matching_verifier(sandbox):
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = hubspot_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    wrong = hubspot_token(sandbox, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                          code_verifier="x" * 50)
    assert wrong.status_code == 400
    code = hubspot_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    right = hubspot_token(sandbox, grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                          code_verifier=verifier)
    assert right.status_code == 200


def test_an_access_token_expires_after_its_lifetime(sandbox):
    sandbox.oauth(access_token_lifetime=1)
    tokens = hubspot_tokens(sandbox)
    assert tokens["expires_in"] == 1
    time.sleep(1.2)
    response = list_contacts(sandbox, tokens["access_token"])
    assert response.status_code == 401
    assert response.json()["category"] == "EXPIRED_AUTHENTICATION"


def test_without_rotation_the_refresh_token_stays_the_same(sandbox):
    tokens = hubspot_tokens(sandbox)
    refreshed = hubspot_token(sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert refreshed["refresh_token"] == tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert list_contacts(sandbox, refreshed["access_token"]).status_code == 200


def test_with_rotation_the_old_refresh_token_is_refused(sandbox):
    sandbox.oauth(rotate_refresh_tokens=True)
    tokens = hubspot_tokens(sandbox)
    rotated = hubspot_token(sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    stale = hubspot_token(sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert stale.status_code == 400
    assert stale.json()["status"] == "BAD_REFRESH_TOKEN"
    assert hubspot_token(sandbox, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).ok
    assert sandbox.oauth()["rotations"] == 2


def test_revocation_refuses_refreshes_and_api_calls(sandbox):
    tokens = hubspot_tokens(sandbox)
    assert sandbox.oauth_revoke("hubspot")["revoked"] == 1
    refresh = hubspot_token(sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status_code == 400
    assert refresh.json()["status"] == "BAD_REFRESH_TOKEN"
    assert list_contacts(sandbox, tokens["access_token"]).status_code == 401


def test_mailchimp_tokens_never_expire_and_metadata_names_the_data_center(sandbox):
    code = approve(sandbox, "/mailchimp-login/oauth2/authorize", scope="")["code"][0]
    response = requests.post(f"{sandbox.url}/mailchimp-login/oauth2/token", timeout=10, data={
        "grant_type": "authorization_code", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
        "code": code, "redirect_uri": REDIRECT})
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["expires_in"] == 0 and "refresh_token" not in token
    metadata = requests.get(f"{sandbox.url}/mailchimp-login/oauth2/metadata", timeout=10,
                            headers={"Authorization": f"OAuth {token['access_token']}"}).json()
    assert metadata["dc"] == "us1"
    assert metadata["api_endpoint"] == f"{sandbox.url}/mailchimp"
    lists = requests.get(f"{metadata['api_endpoint']}/3.0/lists", timeout=10,
                         headers={"Authorization": f"Bearer {token['access_token']}"})
    assert lists.status_code == 200


def test_mailchimp_metadata_needs_a_valid_token(sandbox):
    response = requests.get(f"{sandbox.url}/mailchimp-login/oauth2/metadata", timeout=10,
                            headers={"Authorization": "OAuth not-a-token"})
    assert response.status_code == 401


@pytest.mark.parametrize("body, message", [
    ({"access_token_lifetime": 0}, "access_token_lifetime"),
    ({"rotate_refresh_tokens": "yes"}, "rotate_refresh_tokens"),
    ({"client_id": ""}, "client_id"),
    ({"lifetime": 5}, "unknown keys"),
])
def test_the_control_endpoint_refuses_bad_values(sandbox, body, message):
    response = requests.post(f"{sandbox.url}/_sandbox/oauth", json=body, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_reset_forgets_grants_and_restores_defaults(sandbox):
    sandbox.oauth(access_token_lifetime=5, rotate_refresh_tokens=True)
    tokens = hubspot_tokens(sandbox)
    sandbox.reset()
    state = sandbox.oauth()
    assert state["access_token_lifetime"] == 1800 and state["rotate_refresh_tokens"] is False
    assert list_contacts(sandbox, tokens["access_token"]).status_code == 401
