"""Contract tests: Mailchimp's official SDK (mailchimp-marketing), pointed at the sandbox, works
against every endpoint the sandbox serves."""
import json

import mailchimp_marketing
import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError

from sandbox.emails import subscriber_hash
from sandbox.mailchimp import MailchimpAPI

pytestmark = pytest.mark.integration


def sdk_client(sandbox, api_key):
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": api_key, "server": "us1"})
    client.api_client.host = sandbox.mailchimp_url
    return client


@pytest.fixture
def client(sandbox):
    return sdk_client(sandbox, sandbox.mailchimp_key)


def test_the_sdk_drives_every_audience_endpoint(client, sandbox):
    lists = client.lists
    list_id = sandbox.list_id

    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}
    assert [audience["id"] for audience in lists.get_all_lists()["lists"]] == [list_id]
    assert lists.get_list(list_id)["stats"]["member_count"] == 0

    merge_fields = lists.get_list_merge_fields(list_id, count=100)
    assert {"FNAME", "LNAME", "PHONE", "ADDRESS"} <= {f["tag"] for f in merge_fields["merge_fields"]}
    plan = lists.add_list_merge_field(list_id, {"name": "Plan", "type": "text", "tag": "PLAN"})
    assert lists.get_list_merge_field(list_id, plan["merge_id"])["tag"] == "PLAN"
    spare = lists.add_list_merge_field(list_id, {"name": "Spare", "type": "number", "tag": "SPARE"})
    assert lists.update_list_merge_field(list_id, spare["merge_id"], {"name": "Extra"})["name"] == "Extra"
    lists.delete_list_merge_field(list_id, spare["merge_id"])
    assert "SPARE" not in {f["tag"] for f in lists.get_list_merge_fields(list_id, count=100)["merge_fields"]}

    added = lists.add_list_member(list_id, {"email_address": "added@example.com", "status": "subscribed",
                                            "merge_fields": {"FNAME": "Added", "PLAN": "Pro"}})
    assert added["id"] == subscriber_hash("added@example.com")

    upserted = lists.set_list_member(list_id, subscriber_hash("put@example.com"), {
        "email_address": "put@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Put"}})
    assert upserted["status"] == "subscribed"

    patched = lists.update_list_member(list_id, upserted["id"], {"merge_fields": {"LNAME": "Patched"}})
    assert patched["merge_fields"]["LNAME"] == "Patched"
    assert lists.get_list_member(list_id, upserted["id"])["merge_fields"]["FNAME"] == "Put"

    batch = lists.batch_list_members(list_id, {"members": [
        {"email_address": f"batch{index}@example.com", "status": "subscribed"} for index in range(3)
    ] + [{"email_address": "broken@", "status": "subscribed"}], "update_existing": True})
    assert (batch["total_created"], batch["error_count"]) == (3, 1)
    assert batch["errors"][0]["email_address"] == "broken@"

    batch0 = subscriber_hash("batch0@example.com")
    started = client.batches.start({"operations": [{
        "method": "PATCH", "path": f"/lists/{list_id}/members/{batch0}",
        "body": json.dumps({"merge_fields": {"FNAME": "Batched"}}), "operation_id": "batch0"}]})
    assert started["status"] == "pending"
    finished = client.batches.status(started["id"])
    assert (finished["status"], finished["finished_operations"], finished["errored_operations"]) == ("finished", 1, 0)
    assert [listed["id"] for listed in client.batches.list()["batches"]] == [started["id"]]
    # The results live on S3 in Mailchimp: fetched without the SDK and its key.
    assert requests.get(finished["response_body_url"], timeout=10).status_code == 200
    assert lists.get_list_member(list_id, batch0)["merge_fields"]["FNAME"] == "Batched"

    lists.update_list_member_tags(list_id, added["id"], {"tags": [{"name": "VIP", "status": "active"}]})
    assert [tag["name"] for tag in lists.get_list_member_tags(list_id, added["id"])["tags"]] == ["VIP"]

    page = lists.get_list_members_info(list_id, count=2, offset=0, fields=["members.email_address", "total_items"])
    assert page["total_items"] == 5 and len(page["members"]) == 2
    changed = lists.get_list_members_info(list_id, since_last_changed="2000-01-01T00:00:00+00:00",
                                          sort_field="last_changed", sort_dir="ASC", count=1000)
    assert len(changed["members"]) == 5

    lists.delete_list_member(list_id, upserted["id"])
    assert lists.get_list_member(list_id, upserted["id"])["status"] == "archived"
    lists.delete_list_member_permanent(list_id, added["id"])
    with pytest.raises(ApiClientError) as forgotten:
        lists.set_list_member(list_id, added["id"], {"email_address": "added@example.com",
                                                     "status_if_new": "subscribed"})
    assert forgotten.value.status_code == 400
    assert json.loads(forgotten.value.text)["title"] == "Forgotten Email Not Subscribed"

    served = {route.label for route in MailchimpAPI.routes}
    assert set(sandbox.stats()["requests"]["mailchimp"]) == served


def test_the_sdk_batch_creates_only_new_members_unless_told_to_update(client, sandbox):
    lists, list_id = client.lists, sandbox.list_id
    lists.set_list_member(list_id, subscriber_hash("out@example.com"), {
        "email_address": "out@example.com", "status_if_new": "unsubscribed"})
    members = [{"email_address": "out@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Out"}},
               {"email_address": "new@example.com", "status": "subscribed"}]

    created = lists.batch_list_members(list_id, {"members": members, "update_existing": False})
    assert (created["total_created"], created["total_updated"]) == (1, 0)
    assert [(error["email_address"], error["error_code"]) for error in created["errors"]] == [
        ("out@example.com", "ERROR_CONTACT_EXISTS")]
    out = lists.get_list_member(list_id, subscriber_hash("out@example.com"))
    assert (out["status"], out["merge_fields"]["FNAME"]) == ("unsubscribed", "")

    with pytest.raises(ApiClientError) as refused:
        lists.batch_list_members(list_id, {"members": [
            {"email_address": "out@example.com", "status": "unsubscribed", "status_if_new": "subscribed"}]})
    assert refused.value.status_code == 400
    assert json.loads(refused.value.text)["errors"][0]["field"] == "members.item:0.status_if_new"

    # With update_existing the status reaches existing members, but re-subscribes nobody.
    updated = lists.batch_list_members(list_id, {"members": members, "update_existing": True})
    assert (updated["total_created"], updated["total_updated"], updated["error_count"]) == (0, 1, 1)
    assert "compliance state" in updated["errors"][0]["error"]
    assert lists.get_list_member(list_id, subscriber_hash("out@example.com"))["status"] == "unsubscribed"


def test_sdk_errors_carry_mailchimps_problem_documents(client, sandbox):
    with pytest.raises(ApiClientError) as missing:
        client.lists.get_list_member(sandbox.list_id, subscriber_hash("nobody@example.com"))
    assert missing.value.status_code == 404
    assert json.loads(missing.value.text)["title"] == "Resource Not Found"

    with pytest.raises(ApiClientError) as refused:
        sdk_client(sandbox, "wrong-key-us1").lists.get_all_lists()
    assert refused.value.status_code == 401
    assert json.loads(refused.value.text)["title"] == "API Key Invalid"


def test_the_sdk_works_with_the_datacenter_taken_from_the_key(sandbox):
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": sandbox.mailchimp_key})
    client.api_client.host = sandbox.mailchimp_url
    assert client.lists.get_all_lists()["total_items"] == 1
