"""Contract tests: HubSpot's official SDK (hubspot-api-client), pointed at the sandbox, works
against every endpoint the sandbox serves."""
import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicGdprDeleteInput,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from sandbox.hubspot import HubSpotAPI

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sandbox):
    return HubSpot(access_token=sandbox.hubspot_token, host=sandbox.hubspot_url)


def test_the_sdk_drives_every_contacts_endpoint(client, sandbox):
    contacts = client.crm.contacts

    created = contacts.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"email": "Sdk.Person@Example.com", "firstname": "Sdk", "lifecyclestage": "lead"}))
    assert created.properties["email"] == "sdk.person@example.com"
    assert created.created_at == created.updated_at

    fetched = contacts.basic_api.get_by_id(created.id, properties=["email", "lifecyclestage"])
    assert fetched.properties["lifecyclestage"] == "lead"
    by_email = contacts.basic_api.get_by_id("sdk.person@example.com", id_property="email")
    assert by_email.id == created.id

    updated = contacts.basic_api.update(created.id, SimplePublicObjectInput(properties={"lastname": "Kit"}))
    assert updated.properties["lastname"] == "Kit"
    assert updated.updated_at > created.updated_at

    batch = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": {"email": f"batch{index}@example.com", "firstname": f"B{index}"}} for index in range(3)]))
    assert batch.status == "COMPLETE" and len(batch.results) == 3
    batch_ids = [result.id for result in batch.results]

    read = contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": batch_ids[0]}, {"id": "987654321"}], properties=["email"], properties_with_history=[]))
    assert [result.properties["email"] for result in read.results] == ["batch0@example.com"]
    assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"

    batch_update = contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": batch_ids[1], "properties": {"lastname": "Updated"}}]))
    assert batch_update.results[0].properties["lastname"] == "Updated"

    upserted = contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        {"id": "batch2@example.com", "idProperty": "email", "properties": {"lastname": "Upserted"}},
        {"id": "fresh@example.com", "idProperty": "email", "properties": {"firstname": "Fresh"}},
    ]))
    assert sorted((result.properties["email"], result.new) for result in upserted.results) == [
        ("batch2@example.com", False), ("fresh@example.com", True)]

    page = contacts.basic_api.get_page(limit=2, properties=["email"])
    assert len(page.results) == 2 and page.paging.next.after
    rest = contacts.basic_api.get_page(limit=100, after=page.paging.next.after, properties=["email"])
    assert len(page.results) + len(rest.results) == 5

    found = contacts.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                     "value": created.created_at.isoformat()}]}],
        sorts=["lastmodifieddate"], properties=["email"], limit=200))
    assert found.total == 5
    stamps = [result.updated_at for result in found.results]
    assert stamps == sorted(stamps)

    contacts.basic_api.archive(batch_ids[0])
    contacts.batch_api.archive(BatchInputSimplePublicObjectId(inputs=[{"id": batch_ids[1]}]))
    archived = contacts.basic_api.get_page(archived=True, limit=10)
    assert sorted(result.id for result in archived.results) == sorted(batch_ids[:2])
    assert all(result.archived and result.archived_at for result in archived.results)

    merged = contacts.basic_api.merge(PublicMergeInput(primary_object_id=batch_ids[2], object_id_to_merge=created.id))
    assert merged.id == batch_ids[2]
    assert merged.properties["firstname"] == "B2" and merged.properties["lastname"] == "Upserted"
    with pytest.raises(ApiException) as merged_away:
        contacts.basic_api.get_by_id(created.id)
    assert merged_away.value.status == 404

    # hubspot-api-client 12 speaks only the v3 subscription preferences API, which cannot
    # opt an address out of all email; the v4 endpoint is called directly.
    optout = requests.post(f"{sandbox.hubspot_url}/communication-preferences/v4/statuses/batch2@example.com/"
                           "unsubscribe-all", params={"channel": "EMAIL"}, timeout=10,
                           headers={"Authorization": f"Bearer {sandbox.hubspot_token}"})
    assert optout.status_code == 200
    assert contacts.basic_api.get_by_id(batch_ids[2], properties=["hs_email_optout"]).properties[
        "hs_email_optout"] == "true"
    batch_optout = requests.post(f"{sandbox.hubspot_url}/communication-preferences/v4/statuses/batch/unsubscribe-all",
                                 params={"channel": "EMAIL"}, json={"inputs": ["fresh@example.com"]}, timeout=10,
                                 headers={"Authorization": f"Bearer {sandbox.hubspot_token}"})
    assert batch_optout.status_code == 200
    assert contacts.basic_api.get_by_id("fresh@example.com", id_property="email",
                                        properties=["hs_email_optout"]).properties["hs_email_optout"] == "true"

    contacts.basic_api.purge(PublicGdprDeleteInput(object_id="fresh@example.com", id_property="email"))
    assert "fresh@example.com" not in [c["properties"].get("email") for c in sandbox.hubspot_contacts()]

    properties = client.crm.properties.core_api.get_all("contacts")
    assert "lastmodifieddate" in [prop.name for prop in properties.results]
    assert client.crm.properties.core_api.get_by_name("contacts", "email").type == "string"

    served = {route.label for route in HubSpotAPI.routes}
    assert set(sandbox.stats()["requests"]["hubspot"]) == served


def test_the_sdk_sends_the_searches_a_delta_read_makes(client):
    contacts = client.crm.contacts
    first = contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": "first@example.com"}))
    batch = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": {"email": f"same{index}@example.com"}} for index in range(4)]))
    ids = sorted((result.id for result in batch.results), key=int)
    # One batch write, one instant.
    (instant,) = {round(result.updated_at.timestamp() * 1000) for result in batch.results}

    by_time = contacts.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT",
                                     "value": str(round(first.updated_at.timestamp() * 1000))}]}],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], properties=["email"], limit=200))
    assert sorted((result.id for result in by_time.results), key=int) == ids

    within = contacts.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(instant)},
            {"propertyName": "hs_object_id", "operator": "GT", "value": ids[0]},
        ]}],
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}], properties=["email"], limit=2))
    assert [result.id for result in within.results] == ids[1:3]
    assert within.paging.next.after


def test_sdk_errors_carry_hubspots_error_bodies(client, sandbox):
    taken = SimplePublicObjectInputForCreate(properties={"email": "taken@example.com"})
    client.crm.contacts.basic_api.create(taken)
    with pytest.raises(ApiException) as conflict:
        client.crm.contacts.basic_api.create(taken)
    assert conflict.value.status == 409
    assert '"category":"CONFLICT"' in conflict.value.body

    with pytest.raises(ApiException) as missing:
        client.crm.contacts.basic_api.get_by_id("424242")
    assert missing.value.status == 404

    stranger = HubSpot(access_token="not-the-token", host=sandbox.hubspot_url)
    with pytest.raises(ApiException) as refused:
        stranger.crm.contacts.basic_api.get_page()
    assert refused.value.status == 401
    assert "INVALID_AUTHENTICATION" in refused.value.body


def test_the_sdk_sees_the_search_rate_limit(client, sandbox):
    search = client.crm.contacts.search_api
    for _ in range(5):
        search.do_search(PublicObjectSearchRequest(limit=1))
    with pytest.raises(ApiException) as limited:
        search.do_search(PublicObjectSearchRequest(limit=1))
    assert limited.value.status == 429
    assert '"policyName":"SECONDLY"' in limited.value.body
    assert "X-HubSpot-RateLimit-Remaining" not in limited.value.headers


def test_the_sdk_sees_the_rate_limit(client, sandbox):
    sandbox.limits(hubspot_rate_limit=1)
    client.crm.contacts.basic_api.get_page()
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.status == 429
    assert limited.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert '"errorType":"RATE_LIMIT"' in limited.value.body
