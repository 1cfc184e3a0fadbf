"""The emulated Mailchimp batch operations (`POST /batches`), over HTTP: submitted, polled, results fetched."""
import io
import json
import tarfile
import time
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.emails import subscriber_hash
from tests.sandbox.test_mailchimp import assert_problem, put

pytestmark = pytest.mark.integration


@pytest.fixture
def members(sandbox):
    return f"/lists/{sandbox.list_id}/members"


def patch_operation(members, email, operation_id, **body):
    return {"method": "PATCH", "path": f"{members}/{subscriber_hash(email)}", "body": json.dumps(body),
            "operation_id": operation_id}


def start(mailchimp, operations) -> dict:
    response = mailchimp.post("/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    return response.json()


def results(url: str) -> list[dict]:
    """Fetch a results archive without credentials, as from S3; return every result of its JSON files."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    found = []
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        for entry in archive.getmembers():
            if entry.isfile() and entry.name.endswith(".json"):
                found += json.loads(archive.extractfile(entry).read())
    return found


def test_operations_run_as_single_calls_would_and_their_results_arrive_as_a_gzipped_tar(mailchimp, sandbox, members):
    put(mailchimp, members, "ann@example.com", status_if_new="subscribed")
    put(mailchimp, members, "out@example.com", status_if_new="unsubscribed")
    many = [f"many{number}@example.com" for number in range(150)]
    for email in many:
        put(mailchimp, members, email, status_if_new="cleaned")
    operations = [
        patch_operation(members, "ann@example.com", "ann", merge_fields={"FNAME": "Ann"}),
        patch_operation(members, "out@example.com", "out", merge_fields={"FNAME": "Out"}),
        patch_operation(members, "out@example.com", "resubscribe", status="subscribed"),
        patch_operation(members, "nobody@example.com", "missing", merge_fields={"FNAME": "X"}),
        patch_operation(members, "ann@example.com", "nul", merge_fields={"FNAME": "Nu\x00ll"}),
        {"method": "GET", "path": f"{members}/{subscriber_hash('ann@example.com')}", "operation_id": "read"},
        *(patch_operation(members, email, email, merge_fields={"LNAME": "Many"}) for email in many),
    ]
    sandbox.reset_stats()

    submitted = start(mailchimp, operations)

    assert submitted["status"] == "pending"
    assert submitted["total_operations"] == len(operations)
    assert submitted["response_body_url"] == ""
    batch = mailchimp.get(f"/batches/{submitted['id']}").json()
    assert batch["status"] == "finished"
    assert batch["finished_operations"] == len(operations)
    assert batch["errored_operations"] == 3
    by_id = {result["operation_id"]: result for result in results(batch["response_body_url"])}
    assert len(by_id) == len(operations)
    assert by_id["ann"]["status_code"] == 200
    assert json.loads(by_id["ann"]["response"])["merge_fields"]["FNAME"] == "Ann"
    assert json.loads(by_id["out"]["response"])["status"] == "unsubscribed"
    for operation_id, status, title in [("resubscribe", 400, "Member In Compliance State"),
                                        ("missing", 404, "Resource Not Found"), ("nul", 400, "Invalid Resource")]:
        assert by_id[operation_id]["status_code"] == status
        problem = json.loads(by_id[operation_id]["response"])
        assert (problem["status"], problem["title"]) == (status, title)
        assert problem["type"] and problem["detail"] and problem["instance"]
    assert json.loads(by_id["read"]["response"])["email_address"] == "ann@example.com"
    stored = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    assert stored["out@example.com"]["status"] == "unsubscribed"
    assert {stored[email]["merge_fields"]["LNAME"] for email in many} == {"Many"}
    assert {stored[email]["status"] for email in many} == {"cleaned"}
    counted = sandbox.stats()["requests"]["mailchimp"]
    assert counted == {"POST /batches": 1, "GET /batches/{batch_id}": 1, "GET /batch-results/{batch_id}": 1}
    assert sandbox.stats()["writes"] == 1


def test_a_batch_reads_as_started_until_its_delay_is_over_and_a_reset_restores_the_delay(mailchimp, sandbox,
                                                                                          members):
    put(mailchimp, members, "ann@example.com", status_if_new="subscribed")
    sandbox.control("mailchimp", "batch-delay", {"milliseconds": 400})
    submitted = start(mailchimp, [patch_operation(members, "ann@example.com", "1", merge_fields={"FNAME": "A"})])

    started = mailchimp.get(f"/batches/{submitted['id']}").json()
    assert (started["status"], started["finished_operations"], started["response_body_url"]) == ("started", 0, "")
    time.sleep(0.5)
    assert mailchimp.get(f"/batches/{submitted['id']}").json()["status"] == "finished"
    listed = mailchimp.get("/batches").json()
    assert [batch["id"] for batch in listed["batches"]] == [submitted["id"]] and listed["total_items"] == 1

    sandbox.reset()
    assert_problem(mailchimp.get(f"/batches/{submitted['id']}"), 404, "Resource Not Found")
    put(mailchimp, members, "ann@example.com", status_if_new="subscribed")
    again = start(mailchimp, [patch_operation(members, "ann@example.com", "1", merge_fields={"FNAME": "B"})])
    assert mailchimp.get(f"/batches/{again['id']}").json()["status"] == "finished"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "operations"),
    ({"operations": []}, "operations"),
    ({"operations": {"method": "GET"}}, "operations"),
    ({"operations": [{"method": "GET", "path": "/lists", "operation_id": "1"}]}, "operations.item:0.path"),
    ({"operations": [{"method": "POST", "path": "/batches", "body": "{}", "operation_id": "1"}]},
     "operations.item:0.path"),
    ({"operations": [{"method": "PATCH", "path": "/lists/{list}/merge-fields/1", "body": "{}", "operation_id": "1"}]},
     "operations.item:0.path"),
    ({"operations": [{"method": "PATCH", "path": "/lists/{list}/members", "body": "{}", "operation_id": "1"}]},
     "operations.item:0.path"),
    ({"operations": [{"method": "PATCH", "path": "/lists/{list}/members/x", "body": {"a": 1}, "operation_id": "1"}]},
     "operations.item:0.body"),
    ({"operations": [{"method": "PATCH", "path": "/lists/{list}/members/x", "operation_id": "1"}]},
     "operations.item:0.body"),
    ({"operations": [{"method": "PATCH", "path": "/lists/{list}/members/x", "body": "{}"}]},
     "operations.item:0.operation_id"),
    ({"operations": [{"method": "TRACE", "path": "/lists/{list}/members/x", "body": "{}", "operation_id": "1"}]},
     "operations.item:0.method"),
    ({"operations": [{"method": "GET", "path": "/lists/{list}/members/x", "operation_id": "1", "extra": 1}]},
     "operations.item:0.extra"),
    ({"operations": [{"method": "GET", "path": "/lists/{list}/members/x", "operation_id": "1"},
                     {"method": "GET", "path": "/lists/{list}/members/y", "operation_id": "1"}]},
     "operations.item:1.operation_id"),
    ({"operations": [{"method": "GET", "path": "/lists/{list}/members/x", "operation_id": str(n)}
                     for n in range(1001)]}, "operations"),
])
def test_a_batch_takes_only_well_formed_member_operations(mailchimp, sandbox, members, body, field):
    put(mailchimp, members, "ann@example.com", status_if_new="subscribed")
    text = json.dumps(body).replace("{list}", sandbox.list_id)
    before = sandbox.mailchimp_members()
    response = mailchimp.post("/batches", data=text, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 400, "Invalid Resource")
    assert field in [error["field"] for error in problem["errors"]]
    assert sandbox.mailchimp_members() == before
    assert mailchimp.get("/batches").json()["total_items"] == 0


def test_the_results_url_needs_no_key_refuses_one_and_cannot_be_altered(mailchimp, sandbox, members):
    put(mailchimp, members, "ann@example.com", status_if_new="subscribed")
    submitted = start(mailchimp, [patch_operation(members, "ann@example.com", "1", merge_fields={"FNAME": "A"})])
    url = mailchimp.get(f"/batches/{submitted['id']}").json()["response_body_url"]
    assert urlsplit(url).path.endswith(f"/batch-results/{submitted['id']}")

    assert [result["operation_id"] for result in results(url)] == ["1"]
    with_key = requests.get(url, auth=("anystring", sandbox.mailchimp_key), timeout=10)
    assert with_key.status_code == 400 and b"InvalidArgument" in with_key.content
    tampered = requests.get(url.replace("Expires=", "Expires=9"), timeout=10)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    other = requests.get(url.replace(submitted["id"], "0000000000"), timeout=10)
    assert other.status_code == 403
    assert_problem(requests.get(f"{sandbox.mailchimp_url}/batches/{submitted['id']}", timeout=10), 401,
                   "API Key Missing")
    assert_problem(mailchimp.get("/batches/0000000000"), 404, "Resource Not Found")
