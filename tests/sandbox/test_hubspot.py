"""The emulated HubSpot contacts API, over HTTP: what a HubSpot client can rely on."""
import pytest
import requests

pytestmark = pytest.mark.integration

CONTACTS = "/crm/v3/objects/contacts"


def create(hubspot, **properties):
    response = hubspot.post(CONTACTS, json={"properties": properties})
    assert response.status_code == 201, response.text
    return response.json()


def batch_create(hubspot, *property_sets):
    response = hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": [{"properties": p} for p in property_sets]})
    assert response.status_code == 201, response.text
    return response.json()["results"]


def search(hubspot, **body):
    response = hubspot.post(f"{CONTACTS}/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_hubspot_error(response, status, category):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == category
    assert body["correlationId"] and body["message"]
    return body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_credentials_get_hubspots_401(sandbox, headers):
    response = requests.get(f"{sandbox.hubspot_url}{CONTACTS}", headers=headers, timeout=10)
    assert_hubspot_error(response, 401, "INVALID_AUTHENTICATION")


def test_unknown_paths_and_methods_answer_in_hubspots_shape(hubspot):
    assert_hubspot_error(hubspot.get("/crm/v3/objects/deals"), 404, "OBJECT_NOT_FOUND")
    assert hubspot.put(f"{CONTACTS}/1", json={}).status_code == 405


def test_create_trims_and_lowercases_the_email_and_sets_the_system_properties(hubspot):
    contact = create(hubspot, email="  Ann.Lee@Example.COM ", firstname="Ann")
    properties = contact["properties"]
    assert properties["email"] == "ann.lee@example.com"
    assert properties["hs_object_id"] == contact["id"]
    assert properties["createdate"] == properties["lastmodifieddate"] == contact["createdAt"] == contact["updatedAt"]
    assert properties["createdate"].endswith("Z") and len(properties["createdate"]) == 24
    assert contact["archived"] is False


def test_an_existing_email_in_any_case_is_a_409_conflict(hubspot):
    existing = create(hubspot, email="dup@example.com")
    body = assert_hubspot_error(hubspot.post(CONTACTS, json={"properties": {"email": "DUP@Example.com"}}),
                                409, "CONFLICT")
    assert body["message"] == f"Contact already exists. Existing ID: {existing['id']}"


def assert_conflict_with(response, existing_id: str) -> None:
    body = assert_hubspot_error(response, 409, "CONFLICT")
    assert body["message"] == f"Contact already exists. Existing ID: {existing_id}"


def test_no_write_gives_a_second_contact_an_address_in_another_case(hubspot, sandbox):
    ana = create(hubspot, email="ana@x.com")
    other = create(hubspot, email="other@x.com")
    assert_conflict_with(hubspot.patch(f"{CONTACTS}/{other['id']}", json={"properties": {"email": "Ana@X.com"}}),
                         ana["id"])
    assert_conflict_with(hubspot.post(f"{CONTACTS}/batch/update", json={"inputs": [
        {"id": other["id"], "properties": {"email": "ANA@x.com"}}]}), ana["id"])
    assert_conflict_with(hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": [
        {"properties": {"email": "fresh@x.com"}}, {"properties": {"email": "Ana@x.com"}}]}), ana["id"])
    assert_conflict_with(hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": other["id"], "properties": {"email": "ana@X.COM"}}]}), ana["id"])
    stored = sorted(contact["properties"]["email"] for contact in sandbox.hubspot_contacts())
    assert stored == ["ana@x.com", "other@x.com"]


def test_one_batch_cannot_give_one_address_to_two_contacts(hubspot, sandbox):
    taken = create(hubspot, email="moving@x.com")
    twins = hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": [
        {"properties": {"email": "twin@x.com"}}, {"properties": {"email": "Twin@X.com"}}]})
    body = assert_hubspot_error(twins, 409, "CONFLICT")
    assert "twin@x.com" in body["message"]
    # One input moves a contact onto an address another input creates.
    crossing = hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": taken["id"], "properties": {"email": "meet@x.com"}},
        {"id": "MEET@x.com", "idProperty": "email", "properties": {"firstname": "New"}}]})
    body = assert_hubspot_error(crossing, 409, "CONFLICT")
    assert "meet@x.com" in body["message"]
    assert [contact["properties"]["email"] for contact in sandbox.hubspot_contacts()] == ["moving@x.com"]


@pytest.mark.parametrize("email", ["a..b@example.com", "nodomain@", "a@b@example.com", "josé@example.com"])
def test_invalid_emails_are_refused_with_the_property_named(hubspot, email):
    body = assert_hubspot_error(hubspot.post(CONTACTS, json={"properties": {"email": email}}),
                                400, "VALIDATION_ERROR")
    assert body["message"].startswith("Property values were not valid")
    assert body["errors"][0]["code"] == "INVALID_EMAIL"
    assert body["errors"][0]["context"] == {"propertyName": ["email"]}


@pytest.mark.parametrize("properties, code", [
    ({"favourite_colour": "blue"}, "PROPERTY_DOESNT_EXIST"),
    ({"lastmodifieddate": "2020-01-01T00:00:00Z"}, "READ_ONLY_VALUE"),
    ({"hs_object_id": "7"}, "READ_ONLY_VALUE"),
    ({"lifecyclestage": "prospect"}, "INVALID_OPTION"),
    # Set by HubSpot's subscriptions API only.
    ({"hs_email_optout": "true"}, "READ_ONLY_VALUE"),
    ({"hs_merged_object_ids": "7"}, "READ_ONLY_VALUE"),
    ({"firstname": {"nested": "object"}}, "INVALID_TYPE"),
])
def test_properties_hubspot_would_refuse_are_refused(hubspot, properties, code):
    body = assert_hubspot_error(hubspot.post(CONTACTS, json={"properties": properties}), 400, "VALIDATION_ERROR")
    assert [error["code"] for error in body["errors"]] == [code]


def test_values_are_stored_as_strings(hubspot):
    contact = create(hubspot, firstname=42, lastname=True)
    assert contact["properties"]["firstname"] == "42"
    assert contact["properties"]["lastname"] == "true"


def test_list_pages_through_live_contacts_and_archived_ones_separately(hubspot, sandbox):
    sandbox.seed(hubspot_contacts=25, random_seed=1)
    seen, after = [], None
    while True:
        params = {"limit": 10, **({"after": after} if after else {})}
        page = hubspot.get(CONTACTS, params=params).json()
        seen += [result["id"] for result in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert hubspot.delete(f"{CONTACTS}/{seen[0]}").status_code == 204
    live = hubspot.get(CONTACTS, params={"limit": 100}).json()["results"]
    archived = hubspot.get(CONTACTS, params={"limit": 100, "archived": "true"}).json()["results"]
    assert len(live) == 24
    assert [(c["id"], c["archived"]) for c in archived] == [(seen[0], True)]
    assert archived[0]["archivedAt"]


def test_list_returns_the_default_or_requested_properties_with_nulls_for_unset(hubspot):
    create(hubspot, email="props@example.com", firstname="Pat")
    default = hubspot.get(CONTACTS).json()["results"][0]["properties"]
    assert set(default) == {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"}
    assert default["lastname"] is None
    chosen = hubspot.get(CONTACTS, params={"properties": "email,phone"}).json()["results"][0]["properties"]
    assert chosen == {"email": "props@example.com", "phone": None}


def test_list_refuses_pages_over_100(hubspot):
    assert_hubspot_error(hubspot.get(CONTACTS, params={"limit": 101}), 400, "VALIDATION_ERROR")


def test_get_patch_and_delete_one_contact_by_id_or_email(hubspot):
    contact = create(hubspot, email="one@example.com", firstname="One")
    by_email = hubspot.get(f"{CONTACTS}/one@example.com", params={"idProperty": "email"}).json()
    assert by_email["id"] == contact["id"]
    patched = hubspot.patch(f"{CONTACTS}/{contact['id']}", json={"properties": {"lastname": "Uno", "firstname": ""}})
    assert patched.status_code == 200
    assert patched.json()["properties"]["lastname"] == "Uno"
    assert "firstname" not in patched.json()["properties"]
    assert hubspot.delete(f"{CONTACTS}/{contact['id']}").status_code == 204
    body = assert_hubspot_error(hubspot.get(f"{CONTACTS}/{contact['id']}"), 404, "OBJECT_NOT_FOUND")
    assert body["context"] == {"id": [contact["id"]]}
    assert hubspot.get(f"{CONTACTS}/{contact['id']}", params={"archived": "true"}).json()["archived"] is True
    assert_hubspot_error(hubspot.patch(f"{CONTACTS}/{contact['id']}", json={"properties": {"lastname": "X"}}),
                         404, "OBJECT_NOT_FOUND")


def test_lastmodifieddate_strictly_increases_with_every_change_and_only_then(hubspot):
    contact = create(hubspot, email="tick@example.com")
    stamps = [contact["updatedAt"]]
    for index in range(5):
        stamps.append(hubspot.patch(f"{CONTACTS}/{contact['id']}",
                                    json={"properties": {"firstname": f"v{index}"}}).json()["updatedAt"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    unchanged = hubspot.patch(f"{CONTACTS}/{contact['id']}", json={"properties": {"firstname": "v4"}}).json()
    assert unchanged["updatedAt"] == stamps[-1]


def test_one_batch_write_stamps_every_contact_it_changes_with_one_instant(hubspot):
    created = batch_create(hubspot, *[{"email": f"b{index}@example.com"} for index in range(100)])
    created_stamps = {result["properties"]["lastmodifieddate"] for result in created}
    assert len(created_stamps) == 1
    response = hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": "b0@example.com", "idProperty": "email", "properties": {"firstname": "Changed"}},
        {"id": "b1@example.com", "idProperty": "email", "properties": {}},
        {"id": "new@example.com", "idProperty": "email", "properties": {}},
    ]})
    changed, unchanged, new = response.json()["results"]
    assert changed["updatedAt"] == new["updatedAt"] > unchanged["updatedAt"] == min(created_stamps)


SEARCH_PEOPLE = [
    {"email": "ann@alpha.example", "firstname": "Ann Marie", "lifecyclestage": "lead", "phone": "+1 415 555 0100"},
    {"email": "bob@beta.example", "firstname": "Bob", "lifecyclestage": "customer"},
    {"email": "cy@alpha.example", "firstname": "Cy", "lifecyclestage": "customer", "company": "Acme"},
    {"email": "dee@gamma.example", "firstname": "dee", "lifecyclestage": "subscriber"},
]


@pytest.fixture
def people(hubspot):
    # One by one, so that each has its own lastmodifieddate.
    return {result["properties"]["email"]: result for result in (create(hubspot, **person) for person in SEARCH_PEOPLE)}


def found_emails(hubspot, *groups, **body):
    reply = search(hubspot, filterGroups=[{"filters": list(group)} for group in groups],
                   properties=["email"], limit=100, **body)
    return sorted(result["properties"]["email"] for result in reply["results"])


@pytest.mark.parametrize("filters, expected", [
    ([{"propertyName": "firstname", "operator": "EQ", "value": "DEE"}], ["dee@gamma.example"]),
    ([{"propertyName": "lifecyclestage", "operator": "NEQ", "value": "customer"}],
     ["ann@alpha.example", "dee@gamma.example"]),
    ([{"propertyName": "lifecyclestage", "operator": "IN", "values": ["lead", "subscriber"]}],
     ["ann@alpha.example", "dee@gamma.example"]),
    ([{"propertyName": "lifecyclestage", "operator": "NOT_IN", "values": ["lead", "subscriber"]}],
     ["bob@beta.example", "cy@alpha.example"]),
    ([{"propertyName": "phone", "operator": "HAS_PROPERTY"}], ["ann@alpha.example"]),
    ([{"propertyName": "company", "operator": "NOT_HAS_PROPERTY"}],
     ["ann@alpha.example", "bob@beta.example", "dee@gamma.example"]),
    ([{"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "marie"}], ["ann@alpha.example"]),
    ([{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@alpha.example"}],
     ["ann@alpha.example", "cy@alpha.example"]),
    ([{"propertyName": "email", "operator": "NOT_CONTAINS_TOKEN", "value": "*@alpha.example"}],
     ["bob@beta.example", "dee@gamma.example"]),
    ([{"propertyName": "firstname", "operator": "LT", "value": "c"}], ["ann@alpha.example", "bob@beta.example"]),
    ([{"propertyName": "firstname", "operator": "BETWEEN", "value": "b", "highValue": "cz"}],
     ["bob@beta.example", "cy@alpha.example"]),
    ([{"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"},
      {"propertyName": "company", "operator": "EQ", "value": "acme"}], ["cy@alpha.example"]),
])
def test_search_filters_behave_like_hubspots_operators(hubspot, people, filters, expected):
    assert found_emails(hubspot, filters) == expected


def test_search_groups_are_ored(hubspot, people):
    assert found_emails(hubspot, [{"propertyName": "firstname", "operator": "EQ", "value": "bob"}],
                        [{"propertyName": "firstname", "operator": "EQ", "value": "cy"}]) == [
        "bob@beta.example", "cy@alpha.example"]


def test_search_compares_lastmodifieddate_as_a_time_given_in_ms_or_iso(hubspot, people, sandbox):
    # Five searches in a row: HubSpot's search rate is under test elsewhere.
    sandbox.limits(hubspot_search_rate_limit=0)
    stamps = sorted(result["properties"]["lastmodifieddate"] for result in people.values())
    second = stamps[1]
    from datetime import datetime
    second_ms = str(int(datetime.fromisoformat(second.replace("Z", "+00:00")).timestamp() * 1000))
    for value in (second, second_ms):
        newer = found_emails(hubspot, [{"propertyName": "lastmodifieddate", "operator": "GT", "value": value}])
        assert len(newer) == 2
        since = found_emails(hubspot, [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": value}])
        assert len(since) == 3
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/search", json={"filterGroups": [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "yesterday"}]}]}), 400, "VALIDATION_ERROR")


def test_search_sorts_and_always_returns_the_base_properties(hubspot, people):
    reply = search(hubspot, sorts=[{"propertyName": "firstname", "direction": "DESCENDING"}], properties=["firstname"])
    assert [r["properties"]["firstname"] for r in reply["results"]] == ["dee", "Cy", "Bob", "Ann Marie"]
    assert set(reply["results"][0]["properties"]) == {"createdate", "hs_object_id", "lastmodifieddate", "firstname"}
    assert reply["total"] == 4
    ascending = search(hubspot, sorts=["lastmodifieddate"])["results"]
    stamps = [r["properties"]["lastmodifieddate"] for r in ascending]
    assert stamps == sorted(stamps)


def test_search_with_free_text_query(hubspot, people):
    reply = search(hubspot, query="alpha", properties=["email"])
    assert sorted(r["properties"]["email"] for r in reply["results"]) == ["ann@alpha.example", "cy@alpha.example"]


@pytest.mark.parametrize("body", [
    {"limit": 201},
    {"filterGroups": [{"filters": []}] * 6},
    {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}] * 7}]},
    {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}] * 6}] * 3 + [
        {"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}]},
    {"filterGroups": [{"filters": [{"propertyName": "shoe_size", "operator": "EQ", "value": "9"}]}]},
    {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "a"}]}]},
    {"sorts": ["email", "firstname"]},
    {"after": "minus-one"},
])
def test_search_requests_hubspot_refuses_are_400s(hubspot, body):
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/search", json=body), 400, "VALIDATION_ERROR")


def test_search_stops_at_10000_results_and_restarting_from_the_last_value_reaches_the_rest(hubspot, sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    sandbox.seed(hubspot_contacts=10_050, random_seed=5)
    ascending = {"sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], "limit": 200}
    page = search(hubspot, after="9900", **ascending)
    assert page["total"] == 10_050
    assert len(page["results"]) == 100
    assert page["paging"]["next"]["after"] == "10000"
    body = assert_hubspot_error(hubspot.post(f"{CONTACTS}/search", json={**ascending, "after": "10000"}),
                                400, "VALIDATION_ERROR")
    assert "10000" in body["message"]
    last_seen = page["results"][-1]["properties"]["lastmodifieddate"]
    rest = search(hubspot, filterGroups=[{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GT", "value": last_seen}]}], **ascending)
    assert rest["total"] == 50
    assert "paging" not in rest


def test_batch_create_is_all_or_nothing(hubspot, sandbox):
    create(hubspot, email="taken@example.com")
    response = hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": [
        {"properties": {"email": "fresh@example.com"}}, {"properties": {"email": "TAKEN@example.com"}}]})
    assert_hubspot_error(response, 409, "CONFLICT")
    response = hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": [
        {"properties": {"email": "fresh@example.com"}}, {"properties": {"email": "not an email"}}]})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert [c["properties"]["email"] for c in sandbox.hubspot_contacts()] == ["taken@example.com"]


def test_batches_take_at_most_100_inputs_without_duplicates(hubspot):
    inputs = [{"properties": {"email": f"n{index}@example.com"}} for index in range(101)]
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/batch/create", json={"inputs": inputs}), 400, "VALIDATION_ERROR")
    twice = [{"id": "a@example.com", "idProperty": "email", "properties": {}}] * 2
    body = assert_hubspot_error(hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": twice}),
                                400, "VALIDATION_ERROR")
    assert "Duplicate IDs" in body["message"]


def test_batch_upsert_by_email_creates_and_updates_and_says_which(hubspot, sandbox):
    existing = create(hubspot, email="known@example.com", firstname="Old")
    response = hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": "Known@Example.com", "idProperty": "email", "properties": {"firstname": "New"}},
        {"id": "new@example.com", "idProperty": "email", "properties": {"firstname": "Fresh"}},
    ]})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    known, fresh = body["results"]
    assert (known["id"], known["new"], known["properties"]["firstname"]) == (existing["id"], False, "New")
    assert (fresh["new"], fresh["properties"]["email"], fresh["properties"]["firstname"]) == (
        True, "new@example.com", "Fresh")
    assert len(sandbox.hubspot_contacts()) == 2


def test_batch_upsert_refuses_the_whole_batch_for_one_invalid_email(hubspot, sandbox):
    response = hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": "good@example.com", "idProperty": "email", "properties": {}},
        {"id": "a..b@example.com", "idProperty": "email", "properties": {}},
    ]})
    body = assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert "a..b@example.com" in body["message"]
    assert sandbox.hubspot_contacts() == []


def test_batch_read_and_update_report_missing_records_in_a_207(hubspot):
    contact = create(hubspot, email="here@example.com")
    read = hubspot.post(f"{CONTACTS}/batch/read", json={"inputs": [{"id": contact["id"]}, {"id": "424242"}],
                                                         "properties": ["email"], "propertiesWithHistory": []})
    assert read.status_code == 207
    body = read.json()
    assert [r["properties"]["email"] for r in body["results"]] == ["here@example.com"]
    assert body["numErrors"] == 1
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"] == {"ids": ["424242"]}
    update = hubspot.post(f"{CONTACTS}/batch/update", json={"inputs": [
        {"id": contact["id"], "properties": {"firstname": "Here"}},
        {"id": "424242", "properties": {"firstname": "Nobody"}},
    ]})
    assert update.status_code == 207
    assert update.json()["results"][0]["properties"]["firstname"] == "Here"
    by_email = hubspot.post(f"{CONTACTS}/batch/read", json={"idProperty": "email", "properties": ["email"],
                                                             "inputs": [{"id": "HERE@example.com"}]})
    assert by_email.status_code == 200
    assert by_email.json()["results"][0]["id"] == contact["id"]


def test_batch_archive_hides_contacts_from_search_and_lists(hubspot):
    contacts = batch_create(hubspot, {"email": "x1@example.com"}, {"email": "x2@example.com"})
    response = hubspot.post(f"{CONTACTS}/batch/archive", json={"inputs": [{"id": c["id"]} for c in contacts]})
    assert response.status_code == 204
    assert search(hubspot)["total"] == 0
    assert hubspot.get(CONTACTS).json()["results"] == []


def test_gdpr_delete_removes_the_contact_for_good_and_blocklists_its_email(hubspot, sandbox):
    contact = create(hubspot, email="forget@example.com")
    response = hubspot.post(f"{CONTACTS}/gdpr-delete", json={"objectId": contact["id"]})
    assert response.status_code == 204
    assert sandbox.hubspot_contacts() == []
    assert [entry["email"] for entry in sandbox.hubspot_gdpr_deleted()] == ["forget@example.com"]
    body = assert_hubspot_error(hubspot.post(CONTACTS, json={"properties": {"email": "forget@example.com"}}),
                                400, "VALIDATION_ERROR")
    assert body["errors"][0]["code"] == "BLOCKLISTED_EMAIL"
    unknown = hubspot.post(f"{CONTACTS}/gdpr-delete", json={"objectId": "never@example.com", "idProperty": "email"})
    assert unknown.status_code == 204
    assert "never@example.com" in [entry["email"] for entry in sandbox.hubspot_gdpr_deleted()]
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/gdpr-delete", json={"objectId": "999999"}), 404, "OBJECT_NOT_FOUND")


def test_properties_describe_every_contact_field(hubspot):
    properties = hubspot.get("/crm/v3/properties/contacts").json()["results"]
    by_name = {p["name"]: p for p in properties}
    assert {"email", "firstname", "lastname", "phone", "company", "lifecyclestage", "hs_email_optout",
            "createdate", "lastmodifieddate", "hs_object_id"} <= set(by_name)
    assert by_name["lastmodifieddate"]["modificationMetadata"]["readOnlyValue"] is True
    assert "customer" in [option["value"] for option in by_name["lifecyclestage"]["options"]]
    assert hubspot.get("/crm/v3/properties/contacts/email").json()["label"] == "Email"
    assert hubspot.get("/crm/v3/properties/contacts/nope").status_code == 404


def test_the_rolling_rate_limit_answers_429_with_hubspots_headers_and_body(hubspot, sandbox, mailchimp):
    sandbox.limits(hubspot_rate_limit=3)
    replies = [hubspot.get(CONTACTS) for _ in range(4)]
    assert [reply.status_code for reply in replies] == [200, 200, 200, 429]
    assert [reply.headers["X-HubSpot-RateLimit-Remaining"] for reply in replies] == ["2", "1", "0", "0"]
    assert replies[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert replies[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(replies[0].headers["X-HubSpot-RateLimit-Daily-Remaining"]) > 0
    assert "X-HubSpot-RateLimit-Secondly" in replies[0].headers
    body = replies[-1].json()
    assert body["status"] == "error"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["correlationId"] and "ten_secondly_rolling" in body["message"]
    assert mailchimp.get("/ping").status_code == 200
    sandbox.reset()
    assert hubspot.get(CONTACTS).status_code == 200


def test_search_has_a_rate_of_its_own_with_the_secondly_policy_and_no_rate_headers(hubspot, sandbox):
    replies = [hubspot.post(f"{CONTACTS}/search", json={}) for _ in range(6)]
    assert [reply.status_code for reply in replies] == [200] * 5 + [429]
    body = replies[-1].json()
    assert (body["status"], body["errorType"], body["policyName"]) == ("error", "RATE_LIMIT", "SECONDLY")
    assert "secondly" in body["message"] and body["correlationId"]
    # "Responses from the search API endpoints will not include any of the rate limit headers."
    assert not [name for reply in replies for name in reply.headers if name.startswith("X-HubSpot-RateLimit")]
    # Other endpoints go on; the five searches let through count against the 10-second
    # window too, the refused one does not.
    listed = hubspot.get(CONTACTS)
    assert listed.status_code == 200
    assert listed.headers["X-HubSpot-RateLimit-Remaining"] == str(190 - 5 - 1)


def test_a_search_over_the_general_limit_is_refused_without_using_the_search_rate(hubspot, sandbox):
    sandbox.limits(hubspot_rate_limit=2, hubspot_search_rate_limit=2)
    assert hubspot.get(CONTACTS).status_code == 200
    assert hubspot.post(f"{CONTACTS}/search", json={}).status_code == 200
    refused = hubspot.post(f"{CONTACTS}/search", json={})
    assert refused.status_code == 429 and refused.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    sandbox.limits(hubspot_rate_limit=0)
    # The search refused by the general window left the search budget alone: one is left.
    assert hubspot.post(f"{CONTACTS}/search", json={}).status_code == 200


def test_the_search_rate_can_be_lifted_and_a_reset_restores_it(hubspot, sandbox):
    assert sandbox.limits(hubspot_search_rate_limit=0)["hubspot_search_rate_limit"] == 0
    assert {hubspot.post(f"{CONTACTS}/search", json={}).status_code for _ in range(12)} == {200}
    sandbox.reset()
    assert [hubspot.post(f"{CONTACTS}/search", json={}).status_code for _ in range(6)][-1] == 429


def test_within_one_instant_search_pages_by_id_with_an_id_filter(hubspot, sandbox):
    sandbox.limits(hubspot_search_rate_limit=0)
    batch_create(hubspot, *[{"email": f"tie{index}@example.com"} for index in range(7)])
    stamp = search(hubspot, limit=1)["results"][0]["properties"]["lastmodifieddate"]
    seen, after_id = [], None
    while True:
        filters = [{"propertyName": "lastmodifieddate", "operator": "EQ", "value": stamp}]
        if after_id:
            filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": after_id})
        page = search(hubspot, filterGroups=[{"filters": filters}], limit=3,
                      sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}])
        seen += [result["id"] for result in page["results"]]
        if "paging" not in page:
            break
        after_id = page["results"][-1]["id"]
    assert len(seen) == 7 and seen == sorted(seen, key=int)


def test_a_bulk_edit_stamps_every_contact_it_changes_with_one_instant(hubspot, sandbox):
    sandbox.seed(hubspot_contacts=250, random_seed=2)
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/bulk-edit", timeout=30,
                             json={"properties": {"jobtitle": "Bulk"}})
    assert response.status_code == 200, response.text
    reply = response.json()
    contacts = sandbox.hubspot_contacts()
    assert reply["edited"] == 250
    assert {c["properties"]["lastmodifieddate"] for c in contacts} == {reply["lastmodifieddate"]}
    assert {c["properties"]["jobtitle"] for c in contacts} == {"Bulk"}
    some = [contacts[0]["id"], contacts[1]["id"]]
    again = requests.post(f"{sandbox.url}/_sandbox/hubspot/bulk-edit", timeout=30,
                          json={"ids": [*some, "999999"], "properties": {"jobtitle": "Bulk"}})
    assert again.json() == {"edited": 0, "lastmodifieddate": None}


@pytest.mark.parametrize("body, complaint", [
    ({"properties": {}}, "at least one property"),
    ({"properties": {"shoe_size": "9"}}, "does not exist"),
    ({"properties": {"email": "a@example.com"}}, "emails"),
    ({"ids": "all", "properties": {"jobtitle": "x"}}, "ids"),
    ({"properties": {"jobtitle": "x"}, "when": "now"}, "unknown keys: when"),
])
def test_a_bad_bulk_edit_is_refused_with_the_reason(sandbox, body, complaint):
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/bulk-edit", json=body, timeout=30)
    assert response.status_code == 400
    assert complaint in response.json()["error"]


def test_hostile_records_come_back_through_the_api_unchanged(hubspot, sandbox, hostile_contacts):
    sandbox.seed(hostile=True)
    fields = ["email", "firstname", "lastname", "phone", "zip", "date_of_birth"]
    stored = []
    after = None
    while True:
        params = {"limit": 100, "properties": ",".join(fields), **({"after": after} if after else {})}
        page = hubspot.get(CONTACTS, params=params).json()
        stored += [result["properties"] for result in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    # HubSpot holds each address once: the twin by case is not seeded.
    seeded = [record for record in hostile_contacts if record["email"] != "dup@example.com"]
    assert len(stored) == len(seeded)
    for record, properties in zip(seeded, stored, strict=True):
        assert properties["email"] == record["email"]
        assert properties["firstname"] == record["firstname"]
        assert properties["date_of_birth"] == record.get("birthday")
    nul = next(p for p in stored if p["email"] == "nul@example.com")
    assert nul["firstname"] == "Nu\x00ll"
    twins = search(hubspot, filterGroups=[{"filters": [
        {"propertyName": "email", "operator": "EQ", "value": "dup@example.com"}]}])
    assert [result["properties"]["email"] for result in twins["results"]] == ["DUP@example.com"]


def test_an_update_naming_no_property_is_refused(hubspot):
    contact = create(hubspot, email="still@example.com")
    body = assert_hubspot_error(hubspot.patch(f"{CONTACTS}/{contact['id']}", json={"properties": {}}),
                                400, "VALIDATION_ERROR")
    assert body["message"] == "No properties found to update, please provide at least one."
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/batch/update", json={"inputs": [
        {"id": contact["id"], "properties": {}}]}), 400, "VALIDATION_ERROR")


def test_archiving_moves_lastmodifieddate_and_a_restore_brings_the_contact_back_as_a_change(hubspot, sandbox):
    contact = create(hubspot, email="bin@example.com", firstname="Bin")
    assert hubspot.delete(f"{CONTACTS}/{contact['id']}").status_code == 204
    (archived,) = hubspot.get(CONTACTS, params={"archived": "true", "properties": "email"}).json()["results"]
    assert archived["archived"] is True
    assert archived["archivedAt"] == archived["updatedAt"] > contact["updatedAt"]
    assert hubspot.get(f"{CONTACTS}/{contact['id']}").status_code == 404
    assert sandbox.hubspot_restore([contact["id"], "999999"]) == 1
    restored = hubspot.get(f"{CONTACTS}/{contact['id']}").json()
    assert (restored["archived"], restored["properties"]["firstname"]) == (False, "Bin")
    assert restored["updatedAt"] > archived["archivedAt"]
    assert "archivedAt" not in restored
    assert hubspot.get(CONTACTS, params={"archived": "true"}).json()["results"] == []


def test_a_contact_whose_address_was_taken_meanwhile_is_not_restored(hubspot, sandbox):
    contact = create(hubspot, email="taken@example.com")
    hubspot.delete(f"{CONTACTS}/{contact['id']}")
    create(hubspot, email="taken@example.com")
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/restore", json={"ids": [contact["id"]]}, timeout=10)
    assert response.status_code == 400
    assert "already exists" in response.json()["error"]


def test_a_merge_keeps_the_primarys_values_fills_its_empty_ones_and_removes_the_other(hubspot, sandbox):
    primary = create(hubspot, email="primary@example.com", firstname="Prima", lifecyclestage="lead")
    other = create(hubspot, email="other@example.com", firstname="Other", lastname="Filled", phone="+14155550100",
                   lifecyclestage="customer")
    response = hubspot.post(f"{CONTACTS}/merge", json={"primaryObjectId": primary["id"],
                                                       "objectIdToMerge": other["id"]})
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["id"] == primary["id"]
    properties = merged["properties"]
    assert (properties["email"], properties["firstname"], properties["lastname"], properties["phone"]) == (
        "primary@example.com", "Prima", "Filled", "+14155550100")
    # HubSpot keeps the lifecycle stage furthest down the funnel.
    assert properties["lifecyclestage"] == "customer"
    assert properties["hs_merged_object_ids"] == other["id"]
    assert properties["hs_additional_emails"] == "other@example.com"
    assert merged["updatedAt"] > primary["updatedAt"]
    # The other contact is gone from every read, and its address is free again.
    assert hubspot.get(f"{CONTACTS}/{other['id']}").status_code == 404
    assert hubspot.get(f"{CONTACTS}/other@example.com", params={"idProperty": "email"}).status_code == 404
    assert [c["id"] for c in sandbox.hubspot_contacts()] == [primary["id"]]
    assert search(hubspot)["total"] == 1
    read = hubspot.post(f"{CONTACTS}/batch/read", json={"inputs": [{"id": other["id"]}], "properties": ["email"]})
    assert read.status_code == 207
    assert create(hubspot, email="other@example.com")["id"] not in (primary["id"], other["id"])


def test_an_address_merged_into_a_contact_is_a_token_of_its_additional_emails(hubspot):
    primary = create(hubspot, email="primary@example.com")
    for address in ("first@example.com", "second@example.com"):
        other = create(hubspot, email=address)
        response = hubspot.post(f"{CONTACTS}/merge", json={"primaryObjectId": primary["id"],
                                                           "objectIdToMerge": other["id"]})
        assert response.status_code == 200, response.text
    create(hubspot, email="third@example.com")

    def among_additional(value, operator="CONTAINS_TOKEN"):
        return found_emails(hubspot, [{"propertyName": "hs_additional_emails", "operator": operator, "value": value}])

    # HubSpot keeps the options of a multiple-value property joined by ";": each is a token.
    assert among_additional("second@example.com") == ["primary@example.com"]
    assert among_additional("FIRST@example.com") == ["primary@example.com"]
    assert among_additional("first@example") == [] and among_additional("third@example.com") == []
    assert among_additional("second@example.com", "NOT_CONTAINS_TOKEN") == ["third@example.com"]


@pytest.mark.parametrize("body, status, category", [
    ({"primaryObjectId": "SELF", "objectIdToMerge": "SELF"}, 400, "VALIDATION_ERROR"),
    ({"primaryObjectId": "SELF", "objectIdToMerge": "999999"}, 404, "OBJECT_NOT_FOUND"),
    ({"primaryObjectId": "SELF", "objectIdToMerge": "ARCHIVED"}, 404, "OBJECT_NOT_FOUND"),
    ({"primaryObjectId": "SELF"}, 400, "VALIDATION_ERROR"),
    ({"primaryObjectId": "SELF", "objectIdToMerge": "abc"}, 400, "VALIDATION_ERROR"),
])
def test_merges_hubspot_cannot_make_are_refused(hubspot, sandbox, body, status, category):
    ids = {"SELF": create(hubspot, email="self@example.com")["id"],
           "ARCHIVED": create(hubspot, email="archived@example.com")["id"]}
    hubspot.delete(f"{CONTACTS}/{ids['ARCHIVED']}")
    body = {name: ids.get(value, value) for name, value in body.items()}
    assert_hubspot_error(hubspot.post(f"{CONTACTS}/merge", json=body), status, category)
    assert len(sandbox.hubspot_contacts()) == 2


UNSUBSCRIBE_ALL = "/communication-preferences/v4/statuses/{}/unsubscribe-all"


def test_unsubscribing_an_address_from_all_email_shows_on_its_contacts_as_a_change(hubspot, sandbox):
    contact = create(hubspot, email="leaving@example.com")
    response = hubspot.post(UNSUBSCRIBE_ALL.format("Leaving@Example.com"), params={"channel": "EMAIL"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "COMPLETE"
    after = hubspot.get(f"{CONTACTS}/{contact['id']}", params={"properties": "hs_email_optout"}).json()
    assert after["properties"]["hs_email_optout"] == "true"
    assert after["updatedAt"] > contact["updatedAt"]
    # Once is enough: the second changes nothing, so lastmodifieddate stays.
    hubspot.post(UNSUBSCRIBE_ALL.format("leaving@example.com"), params={"channel": "EMAIL"})
    again = hubspot.get(f"{CONTACTS}/{contact['id']}").json()
    assert again["updatedAt"] == after["updatedAt"]


def test_the_opt_out_belongs_to_the_address_so_later_contacts_with_it_are_opted_out(hubspot):
    assert hubspot.post(UNSUBSCRIBE_ALL.format("early@example.com"), params={"channel": "EMAIL"}).status_code == 200
    created = create(hubspot, email="early@example.com")
    assert created["properties"]["hs_email_optout"] == "true"
    other = create(hubspot, email="someone@example.com")
    moved = hubspot.patch(f"{CONTACTS}/{other['id']}", json={"properties": {"email": "gone@example.com"}}).json()
    assert "hs_email_optout" not in moved["properties"]
    hubspot.post(UNSUBSCRIBE_ALL.format("optedout@example.com"), params={"channel": "EMAIL"})
    moved = hubspot.patch(f"{CONTACTS}/{other['id']}", json={"properties": {"email": "optedout@example.com"}}).json()
    assert moved["properties"]["hs_email_optout"] == "true"


def test_the_opt_out_of_an_address_holds_in_every_letter_case(hubspot):
    hubspot.post(UNSUBSCRIBE_ALL.format("Early.Bird@Example.com"), params={"channel": "EMAIL"})
    created = hubspot.post(f"{CONTACTS}/batch/upsert", json={"inputs": [
        {"id": "EARLY.BIRD@example.COM", "idProperty": "email", "properties": {"firstname": "Early"}}]}).json()
    assert created["results"][0]["properties"]["hs_email_optout"] == "true"
    other = create(hubspot, email="late@example.com")
    moved = hubspot.post(f"{CONTACTS}/batch/update", json={"inputs": [
        {"id": other["id"], "properties": {"email": "Early.Bird2@example.com"}}]}).json()
    assert "hs_email_optout" not in moved["results"][0]["properties"]
    hubspot.post(UNSUBSCRIBE_ALL.format("EARLY.BIRD2@EXAMPLE.COM"), params={"channel": "EMAIL"})
    after = hubspot.get(f"{CONTACTS}/{other['id']}", params={"properties": "hs_email_optout"}).json()
    assert after["properties"]["hs_email_optout"] == "true"


@pytest.mark.parametrize("address, params", [
    ("someone@example.com", {}),
    ("someone@example.com", {"channel": "SMS"}),
    ("not-an-address", {"channel": "EMAIL"}),
])
def test_unsubscribe_all_needs_the_email_channel_and_an_address(hubspot, address, params):
    assert_hubspot_error(hubspot.post(UNSUBSCRIBE_ALL.format(address), params=params), 400, "VALIDATION_ERROR")


BATCH_UNSUBSCRIBE_ALL = "/communication-preferences/v4/statuses/batch/unsubscribe-all"
BATCH_UNSUBSCRIBE_ROUTE = f"POST {BATCH_UNSUBSCRIBE_ALL}"


def batch_unsubscribe(hubspot, inputs, **params):
    return hubspot.post(BATCH_UNSUBSCRIBE_ALL, params={"channel": "EMAIL", **params}, json={"inputs": inputs})


def test_a_batch_unsubscribe_opts_every_address_out_at_one_instant(hubspot, sandbox):
    leaving = batch_create(hubspot, {"email": "one@example.com"}, {"email": "two@example.com"})
    staying = create(hubspot, email="stay@example.com")
    response = batch_unsubscribe(hubspot, ["One@Example.com", "two@example.com"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETE" and "errors" not in body and body["startedAt"] and body["completedAt"]
    assert body["results"] == [{"subscriberIdString": "one@example.com", "statuses": []},
                               {"subscriberIdString": "two@example.com", "statuses": []}]
    after = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    for contact in leaving:
        assert after[contact["id"]]["properties"]["hs_email_optout"] == "true"
        assert after[contact["id"]]["updatedAt"] > contact["updatedAt"]
    assert len({after[contact["id"]]["updatedAt"] for contact in leaving}) == 1
    assert "hs_email_optout" not in after[staying["id"]]["properties"]
    assert after[staying["id"]]["updatedAt"] == staying["updatedAt"]
    # As the single route: once is enough, the second changes nothing.
    assert batch_unsubscribe(hubspot, ["one@example.com"]).status_code == 200
    again = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    assert again[leaving[0]["id"]]["updatedAt"] == after[leaving[0]["id"]]["updatedAt"]


def test_a_batch_unsubscribe_is_counted_as_a_write_like_every_route(hubspot, sandbox):
    batch_unsubscribe(hubspot, ["one@example.com"])
    batch_unsubscribe(hubspot, [])
    stats = sandbox.stats()
    assert stats["requests"]["hubspot"] == {BATCH_UNSUBSCRIBE_ROUTE: 2}
    assert stats["writes"] == 2 and stats["statuses"]["hubspot"] == {"200": 1, "400": 1}


def test_an_address_no_contact_holds_is_opted_out_as_by_the_single_route(hubspot):
    response = batch_unsubscribe(hubspot, ["nobody.yet@example.com"])
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [{"subscriberIdString": "nobody.yet@example.com", "statuses": []}]
    assert create(hubspot, email="Nobody.Yet@example.com")["properties"]["hs_email_optout"] == "true"


def test_invalid_addresses_are_listed_under_errors_and_the_others_still_applied(hubspot, sandbox, hostile_contacts):
    addresses = [contact["email"] for contact in hostile_contacts if contact["email"].lower() != "dup@example.com"]
    invalid = [address for address in addresses if single_unsubscribe_refuses(hubspot, address)]
    assert set(invalid) == {"a..b@example.com", "nodomain@", "a@b@example.com", "user@bücher.example",
                            "josé@example.com"}
    sandbox.reset()
    response = batch_unsubscribe(hubspot, addresses)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["status"] == "COMPLETE" and body["numErrors"] == len(invalid)
    assert [error["context"]["subscriberIdString"] for error in body["errors"]] == [[address] for address in invalid]
    assert {error["category"] for error in body["errors"]} == {"VALIDATION_ERROR"}
    assert all(address in error["message"] for address, error in zip(invalid, body["errors"], strict=True))
    applied = [address.strip().lower() for address in addresses if address not in invalid]
    assert [result["subscriberIdString"] for result in body["results"]] == applied
    # "  Mixed.Case@Example.COM " among them, trimmed and lowercased as HubSpot keys it.
    assert create(hubspot, email="mixed.case@example.com")["properties"]["hs_email_optout"] == "true"


def single_unsubscribe_refuses(hubspot, address) -> bool:
    response = hubspot.post(UNSUBSCRIBE_ALL.format(requests.utils.quote(address, safe="@")),
                            params={"channel": "EMAIL"})
    assert response.status_code in (200, 400), response.text
    return response.status_code == 400


@pytest.mark.parametrize("inputs", [
    [],
    [f"p{number}@example.com" for number in range(101)],
    "one@example.com",
    [{"id": "one@example.com"}],
    ["one@example.com", 7],
    ["one@example.com", "ONE@example.com"],
])
def test_a_batch_unsubscribe_hubspot_would_refuse_changes_nothing(hubspot, sandbox, inputs):
    assert_hubspot_error(batch_unsubscribe(hubspot, inputs), 400, "VALIDATION_ERROR")
    assert create(hubspot, email="one@example.com")["properties"].get("hs_email_optout") is None


def test_a_batch_unsubscribe_takes_100_addresses(hubspot):
    response = batch_unsubscribe(hubspot, [f"p{number}@example.com" for number in range(100)])
    assert response.status_code == 200 and len(response.json()["results"]) == 100


@pytest.mark.parametrize("params", [{}, {"channel": "SMS"}])
def test_a_batch_unsubscribe_needs_the_email_channel(hubspot, params):
    response = hubspot.post(BATCH_UNSUBSCRIBE_ALL, params=params, json={"inputs": ["one@example.com"]})
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_a_body_that_is_not_a_json_object_is_refused(hubspot):
    response = hubspot.post(BATCH_UNSUBSCRIBE_ALL, params={"channel": "EMAIL"}, data="[\"one@example.com\"]")
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")


def test_below_marketing_hub_enterprise_the_batch_route_is_refused_for_missing_scopes(hubspot, sandbox):
    assert sandbox.control("hubspot", "batch-subscription-scopes", {"granted": False}) == {"granted": False}
    create(hubspot, email="one@example.com")
    body = assert_hubspot_error(batch_unsubscribe(hubspot, ["one@example.com"]), 403, "MISSING_SCOPES")
    assert "required scopes" in body["message"]
    scopes = {"requiredGranularScopes": ["communication_preferences.statuses.batch.write"]}
    assert body["errors"] == [{"message": "One or more of the following scopes are required.", "context": scopes}]
    (contact,) = sandbox.hubspot_contacts()
    assert "hs_email_optout" not in contact["properties"]
    # Counted like any request; the single route still works.
    assert sandbox.stats()["requests"]["hubspot"][BATCH_UNSUBSCRIBE_ROUTE] == 1
    assert hubspot.post(UNSUBSCRIBE_ALL.format("one@example.com"), params={"channel": "EMAIL"}).status_code == 200
    # A reset restores the setting the sandbox started with.
    sandbox.reset()
    assert batch_unsubscribe(hubspot, ["one@example.com"]).status_code == 200


def test_the_batch_subscription_scopes_control_takes_a_yes_or_no(sandbox):
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/batch-subscription-scopes", json={"granted": 0},
                             timeout=10)
    assert response.status_code == 400 and "true or false" in response.json()["error"]
    info = requests.get(f"{sandbox.url}/_sandbox/info", timeout=10).json()
    assert info["hubspot"]["batch_subscription_scopes"] is True
