"""The emulated Mailchimp Marketing API, over HTTP: what a Mailchimp client can rely on."""
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests

from sandbox.emails import subscriber_hash
from sandbox.mailchimp import MergeField, project

pytestmark = pytest.mark.integration


@pytest.fixture
def members(sandbox):
    return f"/lists/{sandbox.list_id}/members"


def put(mailchimp, members, email, **body):
    response = mailchimp.put(f"{members}/{subscriber_hash(email)}", json={"email_address": email, **body})
    assert response.status_code == 200, response.text
    return response.json()


def batch(mailchimp, sandbox, member_list, **options):
    response = mailchimp.post(f"/lists/{sandbox.list_id}", json={"members": member_list, **options})
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(response, status, title):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["title"] == title
    assert body["status"] == status
    assert body["type"] and body["detail"] and body["instance"]
    return body


def test_missing_or_wrong_keys_get_mailchimps_401(sandbox):
    url = f"{sandbox.mailchimp_url}/lists"
    assert_problem(requests.get(url, timeout=10), 401, "API Key Missing")
    body = assert_problem(requests.get(url, auth=("user", "wrong-key-us1"), timeout=10), 401, "API Key Invalid")
    assert "API key" in body["detail"]
    assert requests.get(url, auth=("any-user-name", sandbox.mailchimp_key), timeout=10).status_code == 200
    bearer = {"Authorization": f"Bearer {sandbox.mailchimp_key}"}
    assert requests.get(url, headers=bearer, timeout=10).status_code == 200


def test_one_audience_exists_from_the_start(mailchimp, sandbox):
    lists = mailchimp.get("/lists").json()
    assert [audience["id"] for audience in lists["lists"]] == [sandbox.list_id]
    assert lists["total_items"] == 1
    assert mailchimp.get(f"/lists/{sandbox.list_id}").json()["name"]
    assert_problem(mailchimp.get("/lists/0000000000"), 404, "Resource Not Found")
    assert_problem(mailchimp.get("/campaigns"), 404, "Resource Not Found")


def test_put_upserts_by_subscriber_hash(mailchimp, members):
    created = put(mailchimp, members, "Ann@Example.com", status_if_new="subscribed", merge_fields={"FNAME": "Ann"})
    assert created["id"] == subscriber_hash("ann@example.com")
    assert created["email_address"] == "Ann@Example.com"
    assert created["status"] == "subscribed"
    assert created["merge_fields"]["FNAME"] == "Ann"
    assert created["merge_fields"]["LNAME"] == ""
    assert created["last_changed"].endswith("+00:00")
    updated = put(mailchimp, members, "ann@example.com", status="unsubscribed", status_if_new="subscribed",
                  merge_fields={"LNAME": "Lee"})
    assert (updated["status"], updated["merge_fields"]["FNAME"], updated["merge_fields"]["LNAME"]) == (
        "unsubscribed", "Ann", "Lee")


def test_put_needs_status_if_new_for_new_members_and_a_matching_hash(mailchimp, members):
    body = assert_problem(mailchimp.put(f"{members}/{subscriber_hash('new@example.com')}",
                                        json={"email_address": "new@example.com"}), 400, "Invalid Resource")
    assert body["errors"][0]["field"] == "status_if_new"
    assert_problem(mailchimp.put(f"{members}/{subscriber_hash('other@example.com')}",
                                 json={"email_address": "new@example.com", "status_if_new": "subscribed"}),
                   400, "Invalid Resource")


def test_a_path_may_name_the_member_by_email(mailchimp, members):
    put(mailchimp, members, "path@example.com", status_if_new="pending")
    assert mailchimp.get(f"{members}/Path@Example.com").json()["status"] == "pending"


def test_post_creates_only(mailchimp, members):
    response = mailchimp.post(members, json={"email_address": "post@example.com", "status": "subscribed",
                                             "tags": ["Newsletter"]})
    assert response.status_code == 200
    assert response.json()["tags"][0]["name"] == "Newsletter"
    body = assert_problem(mailchimp.post(members, json={"email_address": "POST@example.com", "status": "subscribed"}),
                          400, "Member Exists")
    assert "Use PUT to insert or update list members" in body["detail"]


def test_patch_updates_existing_members_and_can_change_the_address(mailchimp, members):
    assert_problem(mailchimp.patch(f"{members}/{subscriber_hash('ghost@example.com')}", json={"status": "subscribed"}),
                   404, "Resource Not Found")
    put(mailchimp, members, "old@example.com", status_if_new="subscribed")
    moved = mailchimp.patch(f"{members}/{subscriber_hash('old@example.com')}",
                            json={"email_address": "new@example.com"}).json()
    assert moved["id"] == subscriber_hash("new@example.com")
    assert mailchimp.get(f"{members}/{subscriber_hash('old@example.com')}").status_code == 404


@pytest.mark.parametrize("email, title", [
    ("not-an-email", "Invalid Resource"),
    ("a..b@example.com", "Invalid Resource"),
    ("josé@example.com", "Invalid Resource"),
])
def test_invalid_addresses_are_refused(mailchimp, members, email, title):
    body = assert_problem(mailchimp.post(members, json={"email_address": email, "status": "subscribed"}), 400, title)
    assert "email" in body["detail"]


@pytest.mark.parametrize("merge_fields", [
    {"FNAME": "x" * 256},
    {"FNAME": "Nu\x00ll"},
    {"NICKNAME": "unknown tag"},
    {"PHONE": "1-800-FLOWERS"},
    {"PHONE": "call me maybe"},
    {"BIRTHDAY": "1990-02-30"},
    {"BIRTHDAY": "02/30"},
    {"ADDRESS": {"addr1": "1 Main St"}},
    {"ADDRESS": "1 Main St"},
])
def test_merge_values_the_field_refuses_are_invalid_resources(mailchimp, members, merge_fields):
    body = assert_problem(mailchimp.put(f"{members}/{subscriber_hash('m@example.com')}", json={
        "email_address": "m@example.com", "status_if_new": "subscribed", "merge_fields": merge_fields}),
        400, "Invalid Resource")
    assert body["errors"][0]["field"] == next(iter(merge_fields))


def test_merge_values_the_fields_accept(mailchimp, members):
    values = {"FNAME": "😀 Grin", "LNAME": "x" * 255, "PHONE": "+1 415 555 0100 ext. 12", "BIRTHDAY": "02/29",
              "ADDRESS": {"addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701", "country": "US"}}
    member = put(mailchimp, members, "ok@example.com", status_if_new="subscribed", merge_fields=values)
    assert {tag: member["merge_fields"][tag] for tag in values} == values


def test_last_changed_moves_forward_on_every_change_and_only_then(mailchimp, members):
    stamps = [put(mailchimp, members, "tick@example.com", status_if_new="subscribed")["last_changed"]]
    for index in range(3):
        stamps.append(put(mailchimp, members, "tick@example.com", merge_fields={"FNAME": f"v{index}"})["last_changed"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    same = put(mailchimp, members, "tick@example.com", merge_fields={"FNAME": "v2"})
    assert same["last_changed"] == stamps[-1]


def test_members_page_with_count_offset_and_filters(mailchimp, members, sandbox):
    batch(mailchimp, sandbox, [{"email_address": f"p{i}@example.com", "status": "subscribed"} for i in range(25)])
    batch(mailchimp, sandbox, [{"email_address": f"u{i}@example.com", "status": "unsubscribed"} for i in range(5)])
    first = mailchimp.get(members, params={"count": 20}).json()
    second = mailchimp.get(members, params={"count": 20, "offset": 20}).json()
    assert first["total_items"] == 30 and first["list_id"] == sandbox.list_id and first["_links"]
    emails = [m["email_address"] for m in first["members"] + second["members"]]
    assert len(emails) == len(set(emails)) == 30
    assert mailchimp.get(members).json()["members"].__len__() == 10
    unsubscribed = mailchimp.get(members, params={"status": "unsubscribed", "count": 100}).json()
    assert unsubscribed["total_items"] == 5
    assert_problem(mailchimp.get(members, params={"count": 1001}), 400, "Invalid Resource")
    assert_problem(mailchimp.get(members, params={"status": "happy"}), 400, "Invalid Resource")


def test_since_last_changed_is_an_exclusive_bound(mailchimp, members):
    early = put(mailchimp, members, "early@example.com", status_if_new="subscribed")
    time.sleep(1.1)
    late = put(mailchimp, members, "late@example.com", status_if_new="subscribed")
    changed = mailchimp.get(members, params={"since_last_changed": early["last_changed"]}).json()
    assert [m["email_address"] for m in changed["members"]] == ["late@example.com"]
    before = mailchimp.get(members, params={"before_last_changed": late["last_changed"]}).json()
    assert [m["email_address"] for m in before["members"]] == ["early@example.com"]
    newest_first = mailchimp.get(members, params={"sort_field": "last_changed", "sort_dir": "DESC"}).json()
    assert [m["email_address"] for m in newest_first["members"]] == ["late@example.com", "early@example.com"]
    assert_problem(mailchimp.get(members, params={"since_last_changed": "last tuesday"}), 400, "Invalid Resource")


def test_fields_and_exclude_fields_trim_the_reply(mailchimp, members):
    put(mailchimp, members, "f@example.com", status_if_new="subscribed", merge_fields={"FNAME": "F"})
    trimmed = mailchimp.get(members, params={"fields": "members.email_address,members.merge_fields.FNAME,total_items"})
    assert trimmed.json() == {"members": [{"email_address": "f@example.com", "merge_fields": {"FNAME": "F"}}],
                              "total_items": 1}
    without = mailchimp.get(members, params={"exclude_fields": "members._links,_links"}).json()
    assert "_links" not in without and "_links" not in without["members"][0]


def test_project_keeps_and_drops_dotted_paths():
    document = {"a": {"b": 1, "c": 2}, "d": [{"e": 3, "f": 4}]}
    assert project(document, [["a", "b"], ["d", "f"]], None) == {"a": {"b": 1}, "d": [{"f": 4}]}
    assert project(document, None, [["a", "c"], ["d"]]) == {"a": {"b": 1}}


@pytest.mark.parametrize("kind, options, good, bad", [
    ("phone", {}, "(415) 555-0100", "555-CALL-NOW"),
    ("birthday", {}, "12/31", "13/01"),
    ("date", {}, "2024-02-29", "2023-02-29"),
    ("number", {}, "3.5", "three"),
    ("zip", {}, "02134", "2134"),
    ("url", {}, "https://example.com/x", "example.com"),
    ("dropdown", {"choices": ["Red", "Blue"]}, "Red", "Green"),
])
def test_merge_field_types_validate_their_values(kind, options, good, bad):
    merge_field = MergeField(merge_id=9, tag="X", name="X", type=kind, options=options)
    assert merge_field.problem(good) is None
    assert merge_field.problem(bad)


def test_batch_subscribe_reports_each_refused_member_in_a_200(mailchimp, sandbox, members):
    put(mailchimp, members, "forgotten@example.com", status_if_new="subscribed")
    mailchimp.post(f"{members}/{subscriber_hash('forgotten@example.com')}/actions/delete-permanent")
    reply = batch(mailchimp, sandbox, [
        {"email_address": "good@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Good"}},
        {"email_address": "a..b@example.com", "status": "subscribed"},
        {"email_address": "forgotten@example.com", "status": "subscribed"},
        {"email_address": "nul@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Nu\x00ll"}},
        {"email_address": "long@example.com", "status": "subscribed", "merge_fields": {"FNAME": "A" * 10_000}},
        {"email_address": "good@example.com", "status": "subscribed"},
    ], update_existing=True)
    assert reply["total_created"] == 1 and reply["total_updated"] == 0 and reply["error_count"] == 5
    assert [m["email_address"] for m in reply["new_members"]] == ["good@example.com"]
    errors = {error["email_address"]: error for error in reply["errors"]}
    assert set(errors) == {"a..b@example.com", "forgotten@example.com", "nul@example.com", "long@example.com",
                           "good@example.com"}
    assert all(error["error_code"] == "ERROR_GENERIC" for error in errors.values())
    assert errors["nul@example.com"]["field"] == "FNAME"
    assert "permanently deleted" in errors["forgotten@example.com"]["error"]


@pytest.mark.parametrize("member", [
    {"email_address": "nostatus@example.com"},
    {"email_address": "empty@example.com", "status": ""},
    {"email_address": "odd@example.com", "status": "happy"},
    {"email_address": "archived@example.com", "status": "archived"},
])
def test_every_batch_member_needs_a_status_or_the_whole_call_is_refused(mailchimp, sandbox, member):
    good = {"email_address": "good@example.com", "status": "subscribed"}
    response = mailchimp.post(f"/lists/{sandbox.list_id}", json={"members": [good, member], "update_existing": True})
    body = assert_problem(response, 400, "Invalid Resource")
    assert [error["field"] for error in body["errors"]] == ["members.item:1.status"]
    assert "accepted values" in body["errors"][0]["message"]
    assert sandbox.mailchimp_members() == []


@pytest.mark.parametrize("update_existing", [True, False])
def test_status_if_new_is_not_part_of_a_batch_member(mailchimp, sandbox, members, update_existing):
    put(mailchimp, members, "out@example.com", status_if_new="unsubscribed")
    response = mailchimp.post(f"/lists/{sandbox.list_id}", json={"members": [
        {"email_address": "new@example.com", "status": "subscribed"},
        {"email_address": "out@example.com", "status": "unsubscribed", "status_if_new": "subscribed"},
        {"email_address": "other@example.com", "status_if_new": "pending"},
    ], "update_existing": update_existing})
    body = assert_problem(response, 400, "Invalid Resource")
    assert [error["field"] for error in body["errors"]] == [
        "members.item:1.status_if_new", "members.item:2.status_if_new", "members.item:2.status"]
    assert [(m["email_address"], m["status"]) for m in sandbox.mailchimp_members()] == [
        ("out@example.com", "unsubscribed")]


def test_batch_subscribe_without_update_existing_leaves_existing_members_untouched(mailchimp, sandbox, members):
    for email, status in (("in@example.com", "subscribed"), ("out@example.com", "unsubscribed"),
                          ("bounced@example.com", "cleaned")):
        put(mailchimp, members, email, status_if_new=status, merge_fields={"FNAME": "Before"})
    before = {m["email_address"]: m for m in sandbox.mailchimp_members()}
    reply = batch(mailchimp, sandbox, [
        {"email_address": email, "status": "subscribed", "merge_fields": {"FNAME": "After"}, "tags": ["T"]}
        for email in ("IN@example.com", "out@example.com", "bounced@example.com", "new@example.com")
    ])
    assert (reply["total_created"], reply["total_updated"], reply["error_count"]) == (1, 0, 3)
    assert [m["email_address"] for m in reply["new_members"]] == ["new@example.com"]
    errors = {error["email_address"].lower(): error for error in reply["errors"]}
    assert set(errors) == {"in@example.com", "out@example.com", "bounced@example.com"}
    assert {error["error_code"] for error in errors.values()} == {"ERROR_CONTACT_EXISTS"}
    assert "update_existing" in errors["out@example.com"]["error"]
    after = {m["email_address"]: m for m in sandbox.mailchimp_members()}
    assert {email: after[email] for email in before} == before


def test_with_update_existing_the_batch_status_reaches_existing_members_but_resubscribes_nobody(
        mailchimp, sandbox, members):
    # Mailchimp documents update_existing as "Whether this batch operation will change
    # existing members' subscription status"; a member who unsubscribed or bounced is in
    # a compliance state, and only the person can subscribe again.
    put(mailchimp, members, "out@example.com", status_if_new="unsubscribed")
    put(mailchimp, members, "bounced@example.com", status_if_new="cleaned")
    put(mailchimp, members, "in@example.com", status_if_new="subscribed")
    reply = batch(mailchimp, sandbox, [
        {"email_address": "out@example.com", "status": "subscribed", "merge_fields": {"FNAME": "O"}},
        {"email_address": "bounced@example.com", "status": "subscribed"},
        {"email_address": "in@example.com", "status": "unsubscribed"},
        {"email_address": "brand-new@example.com", "status": "pending"},
    ], update_existing=True)
    statuses = {m["email_address"]: m["status"] for m in reply["new_members"] + reply["updated_members"]}
    assert statuses == {"in@example.com": "unsubscribed", "brand-new@example.com": "pending"}
    assert (reply["total_created"], reply["total_updated"], reply["error_count"]) == (1, 1, 2)
    errors = {error["email_address"]: error for error in reply["errors"]}
    assert set(errors) == {"out@example.com", "bounced@example.com"}
    assert all("compliance state" in error["error"] for error in errors.values())
    out = mailchimp.get(f"{members}/out@example.com").json()
    assert (out["status"], out["merge_fields"]["FNAME"]) == ("unsubscribed", "")


def test_patch_changes_a_status_only_when_given_one(mailchimp, members):
    put(mailchimp, members, "p@example.com", status_if_new="unsubscribed")
    patched = mailchimp.patch(f"{members}/p@example.com", json={"merge_fields": {"FNAME": "P"}}).json()
    assert (patched["status"], patched["merge_fields"]["FNAME"]) == ("unsubscribed", "P")
    assert mailchimp.patch(f"{members}/p@example.com", json={"status": "cleaned"}).json()["status"] == "cleaned"


def test_batch_tags_are_added_or_synced(mailchimp, sandbox, members):
    batch(mailchimp, sandbox, [{"email_address": "t@example.com", "status": "subscribed", "tags": ["A", "B"]}])
    batch(mailchimp, sandbox, [{"email_address": "t@example.com", "status": "subscribed", "tags": ["C"]}],
          update_existing=True)
    assert [t["name"] for t in mailchimp.get(f"{members}/t@example.com").json()["tags"]] == ["A", "B", "C"]
    batch(mailchimp, sandbox, [{"email_address": "t@example.com", "status": "subscribed", "tags": ["B"]}],
          update_existing=True, sync_tags=True)
    assert [t["name"] for t in mailchimp.get(f"{members}/t@example.com").json()["tags"]] == ["B"]


def test_batch_subscribe_takes_at_most_500_members(mailchimp, sandbox):
    too_many = [{"email_address": f"n{index}@example.com", "status": "subscribed"} for index in range(501)]
    assert_problem(mailchimp.post(f"/lists/{sandbox.list_id}", json={"members": too_many}), 400, "Invalid Resource")
    assert sandbox.mailchimp_members() == []


def test_archived_members_read_back_as_archived_and_return_when_written(mailchimp, members):
    put(mailchimp, members, "arch@example.com", status_if_new="subscribed")
    assert mailchimp.delete(f"{members}/arch@example.com").status_code == 204
    assert mailchimp.get(f"{members}/arch@example.com").json()["status"] == "archived"
    listed = mailchimp.get(members, params={"status": "archived"}).json()["members"]
    assert [m["email_address"] for m in listed] == ["arch@example.com"]
    back = put(mailchimp, members, "arch@example.com", status_if_new="subscribed")
    assert back["status"] == "subscribed"
    assert_problem(mailchimp.delete(f"{members}/{subscriber_hash('ghost@example.com')}"), 404, "Resource Not Found")


def test_a_permanently_deleted_address_cannot_come_back(mailchimp, members, sandbox):
    put(mailchimp, members, "gone@example.com", status_if_new="subscribed")
    assert mailchimp.post(f"{members}/gone@example.com/actions/delete-permanent").status_code == 204
    assert mailchimp.get(f"{members}/gone@example.com").status_code == 404
    assert sandbox.mailchimp_forgotten() == [subscriber_hash("gone@example.com")]
    body = assert_problem(mailchimp.put(f"{members}/gone@example.com", json={
        "email_address": "Gone@example.com", "status_if_new": "subscribed"}), 400, "Forgotten Email Not Subscribed")
    assert "cannot be re-imported" in body["detail"]
    assert_problem(mailchimp.post(members, json={"email_address": "gone@example.com", "status": "subscribed"}),
                   400, "Forgotten Email Not Subscribed")


def test_member_tags_are_added_and_removed(mailchimp, members):
    put(mailchimp, members, "tags@example.com", status_if_new="subscribed")
    tags_path = f"{members}/tags@example.com/tags"
    response = mailchimp.post(tags_path, json={"tags": [{"name": "VIP", "status": "active"},
                                                        {"name": "Webinar", "status": "active"}]})
    assert response.status_code == 204
    listed = mailchimp.get(tags_path).json()
    assert [t["name"] for t in listed["tags"]] == ["VIP", "Webinar"] and listed["total_items"] == 2
    assert all(isinstance(t["id"], int) and t["date_added"] for t in listed["tags"])
    mailchimp.post(tags_path, json={"tags": [{"name": "VIP", "status": "inactive"}]})
    assert [t["name"] for t in mailchimp.get(f"{members}/tags@example.com").json()["tags"]] == ["Webinar"]
    assert_problem(mailchimp.post(tags_path, json={"tags": [{"name": "x", "status": "on"}]}), 400, "Invalid Resource")


def test_merge_fields_exist_at_start_and_can_be_added(mailchimp, sandbox):
    path = f"/lists/{sandbox.list_id}/merge-fields"
    listed = mailchimp.get(path, params={"count": 100}).json()
    assert [f["tag"] for f in listed["merge_fields"]][:5] == ["FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY"]
    added = mailchimp.post(path, json={"name": "Plan", "type": "dropdown", "tag": "PLAN",
                                       "options": {"choices": ["Free", "Pro"]}}).json()
    assert added["tag"] == "PLAN" and added["merge_id"]
    assert mailchimp.get(f"{path}/{added['merge_id']}").json()["name"] == "Plan"
    assert_problem(mailchimp.post(path, json={"name": "Plan again", "type": "text", "tag": "PLAN"}),
                   400, "Invalid Resource")
    assert_problem(mailchimp.post(path, json={"name": "Odd", "type": "colour"}), 400, "Invalid Resource")
    member = put(mailchimp, f"/lists/{sandbox.list_id}/members", "plan@example.com", status_if_new="subscribed",
                 merge_fields={"PLAN": "Pro"})
    assert member["merge_fields"]["PLAN"] == "Pro"
    sandbox.reset()
    assert mailchimp.get(path).json()["total_items"] == 6


def test_the_eleventh_simultaneous_request_gets_429(mailchimp, sandbox):
    sandbox.faults(provider="mailchimp", latency_ms=1500)
    start = threading.Barrier(14)
    statuses = []

    def call():
        start.wait()
        statuses.append(requests.get(f"{sandbox.mailchimp_url}/ping", auth=("u", sandbox.mailchimp_key),
                                     timeout=30))

    threads = [threading.Thread(target=call) for _ in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(response.status_code for response in statuses)
    assert codes == [200] * 10 + [429] * 4
    refused = next(response for response in statuses if response.status_code == 429)
    assert_problem(refused, 429, "Too Many Requests")


def test_hostile_records_become_members_or_per_member_errors(mailchimp, sandbox, hostile_contacts):
    reply = batch(mailchimp, sandbox, [
        {"email_address": record["email"], "status": "subscribed",
         "merge_fields": {"FNAME": record["firstname"], "LNAME": record["lastname"]}}
        for record in hostile_contacts
    ], update_existing=True)
    assert reply["total_created"] + reply["total_updated"] + reply["error_count"] == len(hostile_contacts)
    refused = {error["email_address"] for error in reply["errors"]}
    assert {"a..b@example.com", "nodomain@", "a@b@example.com", "josé@example.com", "user@bücher.example",
            "nul@example.com", "long@example.com"} <= refused
    stored = {m["email_address"]: m for m in sandbox.mailchimp_members()}
    assert stored["xss1@example.com"]["merge_fields"]["FNAME"] == "<script>alert(1)</script>"
    assert stored["emoji@example.com"]["merge_fields"]["LNAME"] == "𠮷野家"
    assert "Mixed.Case@Example.COM" in stored
    # The twins differ only by case, so they are one member: the batch refuses the second as a duplicate.
    assert sum(1 for email in stored if email.lower() == "dup@example.com") == 1
    assert "dup@example.com" in refused


def test_timestamps_are_iso_8601_with_an_offset(mailchimp, members):
    member = put(mailchimp, members, "iso@example.com", status_if_new="subscribed")
    parsed = datetime.fromisoformat(member["last_changed"])
    assert parsed.utcoffset() == timedelta(0)


def test_put_ignores_status_for_a_new_member(mailchimp, members):
    body = assert_problem(mailchimp.put(f"{members}/{subscriber_hash('s@example.com')}", json={
        "email_address": "s@example.com", "status": "subscribed"}), 400, "Invalid Resource")
    assert body["errors"][0]["field"] == "status_if_new"


def test_an_address_change_keeps_the_members_contact_id_and_unique_email_id(mailchimp, members, sandbox):
    before = put(mailchimp, members, "first@example.com", status_if_new="subscribed")
    moved = mailchimp.patch(f"{members}/{before['id']}", json={"email_address": "second@example.com"}).json()
    assert moved["id"] == subscriber_hash("second@example.com") != before["id"]
    assert (moved["contact_id"], moved["unique_email_id"]) == (before["contact_id"], before["unique_email_id"])
    assert moved["last_changed"] > before["last_changed"]
    assert [m["contact_id"] for m in sandbox.mailchimp_members()] == [before["contact_id"]]


def test_last_changed_moves_on_status_changes_and_archiving_too(mailchimp, members):
    stamps = [put(mailchimp, members, "moves@example.com", status_if_new="subscribed")["last_changed"]]
    for status in ("unsubscribed", "pending"):
        stamps.append(mailchimp.patch(f"{members}/moves@example.com", json={"status": status}).json()["last_changed"])
    assert mailchimp.delete(f"{members}/moves@example.com").status_code == 204
    stamps.append(mailchimp.get(f"{members}/moves@example.com").json()["last_changed"])
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # A delta from the last change before the archive finds the archived member.
    since = mailchimp.get(members, params={"since_last_changed": stamps[-2]}).json()["members"]
    assert [(m["email_address"], m["status"]) for m in since] == [("moves@example.com", "archived")]


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize("opted_out", ["unsubscribed", "cleaned"])
def test_nobody_who_opted_out_or_bounced_can_be_subscribed_again_by_the_account(mailchimp, members, method,
                                                                                 opted_out):
    put(mailchimp, members, "out@example.com", status_if_new=opted_out)
    body = {"status": "subscribed", **({"email_address": "out@example.com"} if method == "put" else {})}
    refused = assert_problem(getattr(mailchimp, method)(f"{members}/out@example.com", json=body), 400,
                             "Member In Compliance State")
    assert refused["detail"] == ("out@example.com is in a compliance state due to unsubscribe, bounce, or compliance "
                                 "review and cannot be subscribed.")
    assert mailchimp.get(f"{members}/out@example.com").json()["status"] == opted_out


def test_an_unsubscribed_member_can_be_asked_to_confirm_and_confirming_subscribes_them(mailchimp, members, sandbox):
    subscribed = put(mailchimp, members, "back@example.com", status_if_new="subscribed")
    time.sleep(1.1)
    put(mailchimp, members, "back@example.com", status="unsubscribed")
    pending = mailchimp.patch(f"{members}/back@example.com", json={"status": "pending"}).json()
    assert pending["status"] == "pending"
    assert pending["timestamp_opt"] == subscribed["timestamp_opt"]
    confirmed = sandbox.mailchimp_confirm("Back@Example.com")
    assert confirmed["status"] == "subscribed"
    member = mailchimp.get(f"{members}/back@example.com").json()
    assert member["timestamp_opt"] > subscribed["timestamp_opt"]
    assert member["last_changed"] > pending["last_changed"]


def test_a_cleaned_member_cannot_even_be_asked_to_confirm(mailchimp, members):
    put(mailchimp, members, "bounce@example.com", status_if_new="cleaned")
    assert_problem(mailchimp.patch(f"{members}/bounce@example.com", json={"status": "pending"}), 400,
                   "Member In Compliance State")


@pytest.mark.parametrize("body, complaint", [
    ({"email": "nobody@example.com"}, "not a pending member"),
    ({"email": "in@example.com"}, "not a pending member"),
    ({}, "email must name a member"),
    ({"email": "in@example.com", "when": "now"}, "unknown keys: when"),
])
def test_confirming_needs_a_pending_member(mailchimp, members, sandbox, body, complaint):
    put(mailchimp, members, "in@example.com", status_if_new="subscribed")
    response = requests.post(f"{sandbox.url}/_sandbox/mailchimp/confirm", json=body, timeout=10)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
