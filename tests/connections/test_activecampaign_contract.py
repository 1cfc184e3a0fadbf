"""Contract tests: the community ActiveCampaign client (activecampaign-python; ActiveCampaign publishes no
official SDK), pointed at the sandbox, works against the emulated API as against the real one."""
import pytest
from activecampaign.client import Client

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sandbox):
    # The client sends as fast as it is called and knows no 429: the rate limit is tested elsewhere.
    sandbox.limits(activecampaign_rate_limit=0)
    # It appends /api/3 to the account URL it is given, as to https://<account>.api-us1.com.
    return Client(sandbox.base_url("activecampaign").removesuffix("/api/3"), sandbox.credential("activecampaign"))


def test_the_client_lists_contacts_with_keyset_paging(client, sandbox):
    sandbox.seed(activecampaign_contacts=30)
    first = client.contacts.list_all_contacts(limit=20, **{"orders[id]": "ASC"})
    assert first["meta"]["total"] == "30" and len(first["contacts"]) == 20
    last_id = first["contacts"][-1]["id"]
    rest = client.contacts.list_all_contacts(limit=20, id_greater=last_id, **{"orders[id]": "ASC"})
    assert len(rest["contacts"]) == 10 and all(int(item["id"]) > int(last_id) for item in rest["contacts"])
    assert client.contacts.list_all_contacts(email=first["contacts"][0]["email"])["contacts"][0]["id"] == \
        first["contacts"][0]["id"]


def test_the_client_creates_syncs_subscribes_tags_and_deletes_a_contact(client, sandbox):
    created = client.contacts.create_a_contact({"contact": {"email": "ann@example.com", "firstName": "Ann"}})
    contact_id = created["contact"]["id"]
    duplicate = client.contacts.create_a_contact({"contact": {"email": "ANN@example.com"}})
    assert duplicate["errors"][0]["code"] == "duplicate"

    synced = client.contacts.create_or_update_contact(
        {"contact": {"email": "ann@example.com", "lastName": "Example",
                     "fieldValues": [{"field": "1", "value": "Acme"}]}})
    assert synced["contact"]["id"] == contact_id and synced["contact"]["lastName"] == "Example"
    assert client.contacts.create_or_update_contact({"contact": {"email": "bob@example.com"}})["contact"]["id"] != \
        contact_id

    membership = client.contacts.update_list_status_for_a_contact(
        {"contactList": {"list": "1", "contact": contact_id, "status": "1"}})
    assert membership["contactList"]["status"] == "1"
    tag = client.tags.create_a_tag({"tag": {"tag": "VIP", "tagType": "contact", "description": ""}})
    client.contacts.add_a_tag_to_contact({"contactTag": {"contact": contact_id, "tag": tag["tag"]["id"]}})

    retrieved = client.contacts.retrieve_a_contact(contact_id)
    assert retrieved["contact"]["email"] == "ann@example.com"
    assert [(item["list"], item["status"]) for item in retrieved["contactLists"]] == [("1", "1")]
    assert [item["tag"] for item in retrieved["contactTags"]] == [tag["tag"]["id"]]
    assert [(item["field"], item["value"]) for item in retrieved["fieldValues"]] == [("1", "Acme")]

    client.contacts.delete_a_contact(contact_id)
    assert "message" in client.contacts.retrieve_a_contact(contact_id)
