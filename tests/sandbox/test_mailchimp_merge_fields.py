"""The emulated Mailchimp merge fields: add, change, delete, and what members may then hold."""
import pytest

from sandbox.emails import subscriber_hash

pytestmark = pytest.mark.integration


@pytest.fixture
def merge_fields(sandbox):
    return f"/lists/{sandbox.list_id}/merge-fields"


def add(mailchimp, merge_fields, **body):
    response = mailchimp.post(merge_fields, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def problem(response, status=400):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return response.json()


def test_a_text_field_reports_its_size_given_or_not(mailchimp, merge_fields):
    plain = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    sized = add(mailchimp, merge_fields, name="Nickname", type="text", tag="NICK", options={"size": 40})
    number = add(mailchimp, merge_fields, name="Score", type="number", tag="SCORE")
    assert plain["options"]["size"] == 255
    assert sized["options"]["size"] == 40
    assert "size" not in number["options"]
    listed = {f["tag"]: f for f in mailchimp.get(merge_fields, params={"count": 100}).json()["merge_fields"]}
    assert listed["FNAME"]["options"]["size"] == 25


def test_patch_changes_name_options_and_tag_and_keeps_the_members_values(sandbox, mailchimp, merge_fields):
    field = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    member = f"/lists/{sandbox.list_id}/members/{subscriber_hash('ann@example.com')}"
    assert mailchimp.put(member, json={"email_address": "ann@example.com", "status_if_new": "subscribed",
                                       "merge_fields": {"JOBTITLE": "Engineer"}}).status_code == 200

    response = mailchimp.patch(f"{merge_fields}/{field['merge_id']}",
                               json={"name": "Role", "tag": "ROLE", "options": {"size": 60}})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["name"], changed["tag"], changed["type"], changed["options"]["size"]) == (
        "Role", "ROLE", "text", 60)
    values = mailchimp.get(member).json()["merge_fields"]
    assert values["ROLE"] == "Engineer"
    assert "JOBTITLE" not in values


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "number"}, "type"),
    ({"tag": "job title"}, "tag"),
    ({"tag": "1ABC"}, "tag"),
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"options": "wide"}, "options"),
    ({"options": {"size": 0}}, "options.size"),
    ({"required": "yes"}, "required"),
    ({"display_order": "first"}, "display_order"),
    ({"colour": "red"}, "colour"),
])
def test_patch_refuses_what_mailchimp_refuses(mailchimp, merge_fields, body, field):
    created = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    refused = problem(mailchimp.patch(f"{merge_fields}/{created['merge_id']}", json=body))
    assert refused["title"] == "Invalid Resource"
    assert field in [error["field"] for error in refused["errors"]]
    # Nothing changed.
    assert mailchimp.get(f"{merge_fields}/{created['merge_id']}").json()["tag"] == "JOBTITLE"


def test_patch_refuses_a_tag_another_field_has(mailchimp, merge_fields):
    created = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    refused = problem(mailchimp.patch(f"{merge_fields}/{created['merge_id']}", json={"tag": "FNAME"}))
    assert "already exists" in refused["detail"]


def test_delete_removes_the_field_and_its_values_then_writes_naming_it_are_refused(sandbox, mailchimp, merge_fields):
    field = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    member = f"/lists/{sandbox.list_id}/members/{subscriber_hash('ann@example.com')}"
    mailchimp.put(member, json={"email_address": "ann@example.com", "status_if_new": "subscribed",
                                "merge_fields": {"JOBTITLE": "Engineer"}})

    deleted = mailchimp.delete(f"{merge_fields}/{field['merge_id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert problem(mailchimp.get(f"{merge_fields}/{field['merge_id']}"), 404)["title"] == "Resource Not Found"
    assert "JOBTITLE" not in mailchimp.get(member).json()["merge_fields"]

    refused = problem(mailchimp.patch(member, json={"merge_fields": {"JOBTITLE": "Boss"}}))
    assert refused["errors"] == [{"field": "JOBTITLE", "message": "This merge field does not exist in the audience."}]
    reply = mailchimp.post(f"/lists/{sandbox.list_id}", json={"members": [
        {"email_address": "bob@example.com", "status": "subscribed", "merge_fields": {"JOBTITLE": "Boss"}}]}).json()
    assert reply["error_count"] == 1 and reply["new_members"] == []
    assert reply["errors"][0]["field"] == "JOBTITLE"

    # A new field under the old tag starts empty.
    add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    assert mailchimp.get(member).json()["merge_fields"]["JOBTITLE"] == ""


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_an_unknown_merge_field_is_a_404(mailchimp, merge_fields, method):
    body = problem(mailchimp.request(method, f"{merge_fields}/999", json={"name": "x"}), 404)
    assert body["title"] == "Resource Not Found"


def test_a_merge_field_change_counts_as_a_write(sandbox, mailchimp, merge_fields):
    field = add(mailchimp, merge_fields, name="Job title", type="text", tag="JOBTITLE")
    sandbox.reset_stats()
    mailchimp.patch(f"{merge_fields}/{field['merge_id']}", json={"name": "Role"})
    mailchimp.delete(f"{merge_fields}/{field['merge_id']}")
    assert sandbox.stats()["writes"] == 2
