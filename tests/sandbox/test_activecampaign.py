"""The emulated ActiveCampaign API v3: contacts, lists, tags, custom fields, bulk import, limits."""
import time
from datetime import datetime, timedelta

import pytest
import requests

from sandbox.emails import email_problem

pytestmark = pytest.mark.integration


@pytest.fixture
def ac(sandbox, activecampaign):
    """The ActiveCampaign client, without the 5-requests-a-second limit (tested on its own)."""
    sandbox.limits(activecampaign_rate_limit=0)
    return activecampaign


def dump(sandbox) -> dict[str, dict]:
    """The stored contacts by lowercased email, as the control endpoint shows them."""
    return {contact["email"].lower(): contact for contact in sandbox.control("activecampaign", "contacts")["contacts"]}


def sync(ac, **contact) -> requests.Response:
    return ac.post("/contact/sync", json={"contact": contact})


def wait_for_the_next_second():
    """udate is kept to the second: wait until a change made now reads later than one made before."""
    time.sleep(1.05)


def test_the_api_is_served_under_its_prefix_and_named_in_info(sandbox):
    assert sandbox.base_url("activecampaign") == f"{sandbox.url}/activecampaign/api/3"
    assert sandbox.info["activecampaign"]["base_path"] == "/activecampaign/api/3"


@pytest.mark.parametrize("headers", [{}, {"Api-Token": "wrong"},
                                     {"Authorization": "Bearer sandbox-activecampaign-token"}])
def test_a_missing_or_wrong_token_is_a_403(sandbox, headers):
    response = requests.get(f"{sandbox.base_url('activecampaign')}/contacts", headers=headers, timeout=10)
    assert response.status_code == 403
    assert response.json() == {"message": "No Result found for Subscriber with id 0"}


def test_paging_by_id_greater_reads_every_contact_once(sandbox, ac):
    sandbox.seed(activecampaign_contacts=250, random_seed=5)
    first = ac.get("/contacts", params={"limit": 500}).json()
    # More than 100 is clamped to 100, as ActiveCampaign does; numbers are strings.
    assert len(first["contacts"]) == 100 and first["meta"]["total"] == "250"
    seen, last = [], 0
    while True:
        page = ac.get("/contacts", params={"limit": 100, "id_greater": last, "orders[id]": "ASC"}).json()["contacts"]
        if not page:
            break
        seen += [contact["id"] for contact in page]
        last = int(page[-1]["id"])
    assert len(seen) == len(set(seen)) == 250
    assert seen == sorted(seen, key=int)
    assert all(isinstance(contact_id, str) for contact_id in seen)
    offset = ac.get("/contacts", params={"limit": 10, "offset": 240, "orders[id]": "DESC"}).json()["contacts"]
    assert [c["id"] for c in offset] == sorted(seen, key=int, reverse=True)[240:]


def test_contacts_carry_local_dates_with_an_offset(sandbox, ac):
    contact = sync(ac, email="ada@example.com", firstName="Ada").json()["contact"]
    udate = datetime.fromisoformat(contact["udate"])
    assert udate.utcoffset() in (timedelta(hours=-6), timedelta(hours=-5))
    assert contact["cdate"] == contact["udate"]
    assert set(contact) >= {"id", "email", "firstName", "lastName", "phone", "cdate", "udate", "links"}


def test_updated_after_is_inclusive_and_updated_before_exclusive(sandbox, ac):
    early = sync(ac, email="early@example.com").json()["contact"]
    wait_for_the_next_second()
    late = sync(ac, email="late@example.com").json()["contact"]
    assert late["udate"] > early["udate"]

    def emails(**filters):
        params = {f"filters[{name}]": value for name, value in filters.items()}
        return [c["email"] for c in ac.get("/contacts", params=params).json()["contacts"]]

    assert emails(updated_after=late["udate"]) == ["late@example.com"]
    assert emails(updated_after=early["udate"]) == ["early@example.com", "late@example.com"]
    assert emails(updated_before=late["udate"]) == ["early@example.com"]
    # As AC writes dates without an offset: in the account's time zone.
    naive = datetime.fromisoformat(late["udate"]).strftime("%Y-%m-%d %H:%M:%S")
    assert emails(updated_after=naive) == ["late@example.com"]
    refused = ac.get("/contacts", params={"filters[updated_after]": "last tuesday"})
    assert refused.status_code == 400 and "updated_after" in refused.json()["message"]


def test_email_listid_and_status_filters(sandbox, ac):
    ada = sync(ac, email="Ada@Example.com").json()["contact"]
    bob = sync(ac, email="bob@example.com").json()["contact"]
    sync(ac, email="cy@example.com")
    ac.post("/contactLists", json={"contactList": {"list": 1, "contact": ada["id"], "status": 1}})
    ac.post("/contactLists", json={"contactList": {"list": "1", "contact": bob["id"], "status": "2"}})

    def emails(**params):
        return [c["email"] for c in ac.get("/contacts", params=params).json()["contacts"]]

    assert emails(email="ada@example.COM") == ["Ada@Example.com"]
    assert emails(listid=1) == ["Ada@Example.com", "bob@example.com"]
    assert emails(listid=1, status=2) == ["bob@example.com"]
    assert emails(status=1) == ["Ada@Example.com"]
    assert emails(ids=f"{bob['id']},{ada['id']}") == ["Ada@Example.com", "bob@example.com"]


def test_ids_are_taken_as_ac_documents_them_or_comma_separated(sandbox, ac):
    ada, bob, cy = (sync(ac, email=f"{name}@example.com").json()["contact"]["id"] for name in ("ada", "bob", "cy"))

    def emails(params):
        response = ac.get("/contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["email"] for c in response.json()["contacts"]]

    assert emails({"ids[]": [cy, ada]}) == ["ada@example.com", "cy@example.com"]
    assert emails({"ids": f"{bob},{cy}"}) == ["bob@example.com", "cy@example.com"]
    assert emails({"ids": bob}) == ["bob@example.com"]
    refused = ac.get("/contacts", params={"ids[]": ["1", "two"]})
    assert refused.status_code == 400 and "ids" in refused.json()["message"]


def test_search_finds_text_in_the_names_address_or_phone_in_any_letter_case(sandbox, ac):
    sync(ac, email="ada@example.com", firstName="Ada", lastName="Lovelace", phone="+1 415 555 0100")
    sync(ac, email="zoe@analytical.example", firstName="Zoë", lastName="Engine")
    sync(ac, email="bob_100%@example.com", firstName="Bob")

    def emails(search, **params):
        response = ac.get("/contacts", params={"search": search, **params})
        assert response.status_code == 200, response.text
        return [c["email"] for c in response.json()["contacts"]]

    assert emails("LOVELACE") == emails("ada lov") == emails("555 0100") == ["ada@example.com"]
    assert emails("analytical") == emails("ZOË") == ["zoe@analytical.example"]
    assert emails("example") == ["ada@example.com", "zoe@analytical.example", "bob_100%@example.com"]
    # Phones are matched as written: another way of writing the number finds nothing.
    assert emails("+14155550100") == []
    # The wildcards of SQL are plain characters here.
    assert emails("_100%") == ["bob_100%@example.com"] and emails("%") == ["bob_100%@example.com"]
    # Combined with the other filters; blank is no search. A parameter AC does not know is ignored.
    assert emails("example", ids=ac.get("/contacts", params={"email": "ada@example.com"}).json()["contacts"][0][
        "id"]) == ["ada@example.com"]
    assert len(emails(" ")) == 3 and len(emails("", colour="red")) == 3
    assert ac.get("/contacts", params={"search": "ada"}).json()["meta"]["total"] == "1"


def test_include_side_loads_the_pages_memberships_tags_and_field_values(sandbox, ac):
    ada = sync(ac, email="ada@example.com", fieldValues=[{"field": 1, "value": "Acme"}]).json()["contact"]["id"]
    bob = sync(ac, email="bob@example.com").json()["contact"]["id"]
    cy = sync(ac, email="cy@example.com", fieldValues=[{"field": 2, "value": "1990-12-31"}]).json()["contact"]["id"]
    ac.post("/contactLists", json={"contactList": {"list": 1, "contact": ada, "status": 1}})
    ac.post("/contactLists", json={"contactList": {"list": 1, "contact": bob, "status": 2}})
    tag = ac.post("/tags", json={"tag": {"tag": "VIP", "tagType": "contact"}}).json()["tag"]["id"]
    ac.post("/contactTags", json={"contactTag": {"contact": bob, "tag": tag}})

    page = ac.get("/contacts", params={"include": "contactLists,fieldValues,contactTags", "limit": 2}).json()
    assert [c["id"] for c in page["contacts"]] == [ada, bob]
    assert [(m["contact"], m["list"], m["status"]) for m in page["contactLists"]] == [(ada, "1", "1"), (bob, "1", "2")]
    assert [(fv["contact"], fv["field"], fv["value"]) for fv in page["fieldValues"]] == [(ada, "1", "Acme")]
    assert [(t["contact"], t["tag"]) for t in page["contactTags"]] == [(bob, tag)]
    # Only what is asked for, only for the contacts of the page.
    rest = ac.get("/contacts", params={"include": "fieldValues", "id_greater": bob}).json()
    assert [(fv["contact"], fv["value"]) for fv in rest["fieldValues"]] == [(cy, "1990-12-31")]
    assert "contactLists" not in rest and "contactTags" not in rest
    plain = ac.get("/contacts").json()
    assert not {"contactLists", "fieldValues", "contactTags"} & set(plain)
    assert ac.get(f"/contacts/{bob}", params={"include": "contactTags"}).json()["contactLists"][0]["status"] == "2"
    for path in ("/contacts", f"/contacts/{ada}"):
        refused = ac.get(path, params={"include": "contactLists,deals"})
        assert refused.status_code == 400 and "deals" in refused.json()["message"]


def test_sync_creates_then_updates_by_email_in_any_letter_case(sandbox, ac):
    created = sync(ac, email="Ada@Example.com", firstName="Ada", phone="+1 415 555 0100",
                   fieldValues=[{"field": "1", "value": "Acme"}])
    assert created.status_code == 201
    contact = created.json()["contact"]
    assert contact["email"] == "Ada@Example.com" and contact["firstName"] == "Ada"
    assert [(fv["field"], fv["value"]) for fv in created.json()["fieldValues"]] == [("1", "Acme")]

    wait_for_the_next_second()
    unchanged = sync(ac, email="ada@example.com", firstName="Ada")
    assert unchanged.status_code == 200
    assert unchanged.json()["contact"]["id"] == contact["id"]
    assert unchanged.json()["contact"]["udate"] == contact["udate"]
    assert unchanged.json()["contact"]["email"] == "Ada@Example.com"

    wait_for_the_next_second()
    updated = sync(ac, email="ADA@example.com", lastName="Lovelace").json()["contact"]
    assert (updated["id"], updated["firstName"], updated["lastName"]) == (contact["id"], "Ada", "Lovelace")
    assert updated["udate"] > contact["udate"] and updated["cdate"] == contact["cdate"]
    assert len(dump(sandbox)) == 1


@pytest.mark.parametrize("contact, pointer", [
    ({"email": "not an address"}, "/data/attributes/email"),
    ({"email": "josé@example.com"}, "/data/attributes/email"),
    ({"firstName": "No Email"}, "/data/attributes/email"),
    ({"email": "long@example.com", "firstName": "A" * 256}, "/data/attributes/firstName"),
    ({"email": "d@example.com", "fieldValues": [{"field": "2", "value": "1990-02-30"}]}, "/data/attributes/value"),
])
def test_sync_refuses_what_activecampaign_refuses_with_a_422(sandbox, ac, contact, pointer):
    response = sync(ac, **contact)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert set(error) >= {"title", "detail", "code", "source"}
    assert error["source"]["pointer"] in (pointer, "/data/attributes/fieldValues")
    assert dump(sandbox) == {}


def test_creating_a_contact_whose_email_exists_is_a_422_duplicate(sandbox, ac):
    assert ac.post("/contacts", json={"contact": {"email": "ada@example.com"}}).status_code == 201
    response = ac.post("/contacts", json={"contact": {"email": "ADA@example.com", "firstName": "Twin"}})
    assert response.status_code == 422
    assert response.json() == {"errors": [{"title": "Email address already exists in the system.", "detail": "",
                                           "code": "duplicate", "source": {"pointer": "/data/attributes/email"}}]}


def test_a_contact_reads_with_its_lists_tags_and_field_values(sandbox, ac):
    contact = sync(ac, email="ada@example.com", fieldValues=[{"field": 1, "value": "Acme"}]).json()["contact"]
    ac.post("/contactLists", json={"contactList": {"list": 1, "contact": contact["id"], "status": 1}})
    tag = ac.post("/tags", json={"tag": {"tag": "VIP", "tagType": "contact"}}).json()["tag"]
    ac.post("/contactTags", json={"contactTag": {"contact": contact["id"], "tag": tag["id"]}})
    body = ac.get(f"/contacts/{contact['id']}").json()
    assert body["contact"]["email"] == "ada@example.com"
    assert [(m["list"], m["status"]) for m in body["contactLists"]] == [("1", "1")]
    assert [t["tag"] for t in body["contactTags"]] == [tag["id"]]
    assert [(fv["field"], fv["value"]) for fv in body["fieldValues"]] == [("1", "Acme")]
    missing = ac.get("/contacts/999999")
    assert missing.status_code == 404
    assert missing.json() == {"message": "No Result found for Subscriber with id 999999"}


def test_deleting_a_contact_removes_it_for_good(sandbox, ac):
    contact = sync(ac, email="ada@example.com").json()["contact"]
    deleted = ac.delete(f"/contacts/{contact['id']}")
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert ac.get(f"/contacts/{contact['id']}").status_code == 404
    again = ac.delete(f"/contacts/{contact['id']}")
    assert again.status_code == 404
    assert again.json() == {"message": f"No Result found for Subscriber with id {contact['id']}"}
    assert dump(sandbox) == {}
    # The address is free again.
    assert sync(ac, email="ada@example.com").status_code == 201


def test_list_status_goes_both_ways_and_moves_udate(sandbox, ac):
    assert [(item["id"], item["name"]) for item in ac.get("/lists").json()["lists"]] == [("1", "Newsletter")]
    contact = sync(ac, email="ada@example.com").json()["contact"]
    wait_for_the_next_second()
    subscribed = ac.post("/contactLists", json={"contactList": {"list": 1, "contact": contact["id"], "status": 1}})
    assert subscribed.status_code in (200, 201)
    assert subscribed.json()["contactList"]["status"] == "1"
    after_subscribe = ac.get(f"/contacts/{contact['id']}").json()["contact"]["udate"]
    assert after_subscribe > contact["udate"]
    wait_for_the_next_second()
    ac.post("/contactLists", json={"contactList": {"list": 1, "contact": contact["id"], "status": 2}})
    memberships = ac.get(f"/contacts/{contact['id']}/contactLists").json()["contactLists"]
    assert [(m["list"], m["status"]) for m in memberships] == [("1", "2")]
    assert ac.get(f"/contacts/{contact['id']}").json()["contact"]["udate"] > after_subscribe
    for item, status in (({"list": 1, "contact": contact["id"], "status": 3}, 422),
                         ({"list": 7, "contact": contact["id"], "status": 1}, 404),
                         ({"list": 1, "contact": 999999, "status": 1}, 404)):
        assert ac.post("/contactLists", json={"contactList": item}).status_code == status


def test_custom_fields_and_their_values(sandbox, ac):
    fields = {f["perstag"]: f for f in ac.get("/fields").json()["fields"]}
    assert (fields["COMPANY"]["type"], fields["BIRTHDAY"]["type"]) == ("text", "date")
    created = ac.post("/fields", json={"field": {"title": "Plan Tier", "type": "dropdown"}})
    assert created.status_code == 201
    plan = created.json()["field"]
    assert plan["perstag"] == "PLAN_TIER" and plan["id"].isdigit()
    assert ac.post("/fields", json={"field": {"title": "Plan tier", "type": "text"}}).status_code == 422
    assert ac.post("/fields", json={"field": {"title": "X", "type": "colour"}}).status_code == 422
    ac.post("/fieldRels", json={"fieldRel": {"field": plan["id"], "relid": 0}})

    contact = sync(ac, email="ada@example.com").json()["contact"]
    wait_for_the_next_second()
    value = ac.post("/fieldValues", json={"fieldValue": {"contact": contact["id"], "field": plan["id"],
                                                          "value": "gold"}})
    assert value.status_code == 201
    value_id = value.json()["fieldValue"]["id"]
    after_value = ac.get(f"/contacts/{contact['id']}").json()["contact"]["udate"]
    assert after_value > contact["udate"]
    again = ac.post("/fieldValues", json={"fieldValue": {"contact": contact["id"], "field": plan["id"],
                                                          "value": "silver"}})
    assert again.status_code == 422
    updated = ac.put(f"/fieldValues/{value_id}", json={"fieldValue": {"contact": contact["id"], "field": plan["id"],
                                                                       "value": "silver"}})
    assert updated.status_code == 200 and updated.json()["fieldValue"]["value"] == "silver"
    bad_date = ac.post("/fieldValues", json={"fieldValue": {"contact": contact["id"], "field": fields["BIRTHDAY"]["id"],
                                                             "value": "12/04/1990"}})
    assert bad_date.status_code == 422
    assert ac.post("/fieldValues", json={"fieldValue": {"contact": contact["id"], "field": 999,
                                                         "value": "x"}}).status_code == 404
    values = ac.get(f"/contacts/{contact['id']}/fieldValues").json()["fieldValues"]
    assert [(fv["field"], fv["value"]) for fv in values] == [(plan["id"], "silver")]


def test_a_new_field_takes_values_only_once_it_is_on_a_list(sandbox, ac):
    size = ac.post("/fields", json={"field": {"title": "Shoe size", "type": "text"}}).json()["field"]
    assert size["relations"] == []
    refused = sync(ac, email="ada@example.com", fieldValues=[{"field": size["id"], "value": "38"}])
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["code"] == "field_not_related" and "POST /fieldRels" in error["title"]
    assert dump(sandbox) == {}

    related = ac.post("/fieldRels", json={"fieldRel": {"field": size["id"], "relid": 0}})
    assert related.status_code == 201
    relation = related.json()["fieldRel"]
    assert (relation["field"], relation["relid"], relation["id"].isdigit()) == (size["id"], 0, True)
    # Relating it again changes nothing.
    again = ac.post("/fieldRels", json={"fieldRel": {"field": int(size["id"]), "relid": "0"}})
    assert (again.status_code, again.json()["fieldRel"]["id"]) == (200, relation["id"])
    listed = ac.get("/fields").json()
    assert {"field": size["id"], "relid": "0", "id": relation["id"]}.items() <= next(
        rel for rel in listed["fieldRels"] if rel["field"] == size["id"]).items()
    assert {f["perstag"]: f["relations"] for f in listed["fields"]}["SHOE_SIZE"] == [relation["id"]]
    # The standard fields are on every list from the start.
    assert {(rel["field"], rel["relid"]) for rel in listed["fieldRels"]} >= {("1", "0"), ("2", "0")}

    assert sync(ac, email="ada@example.com", fieldValues=[{"field": size["id"], "value": "38"}]).status_code == 201
    assert dump(sandbox)["ada@example.com"]["fieldValues"] == {"SHOE_SIZE": "38"}
    # One list will do, whichever lists the contact is on.
    team = ac.post("/fields", json={"field": {"title": "Team", "type": "text"}}).json()["field"]
    assert ac.post("/fieldRels", json={"fieldRel": {"field": team["id"], "relid": 1}}).status_code == 201
    assert sync(ac, email="ada@example.com", fieldValues=[{"field": team["id"], "value": "Blue"}]).status_code == 200


@pytest.mark.parametrize("relation, status", [
    ({"field": 999, "relid": 0}, 404),
    ({"field": 1, "relid": 7}, 404),
    ({"field": 1}, 422),
    ({"field": "one", "relid": 0}, 422),
])
def test_a_field_relation_needs_a_known_field_and_list(sandbox, ac, relation, status):
    assert ac.post("/fieldRels", json={"fieldRel": relation}).status_code == status
    assert ac.post("/fieldRels", json={"field": 1, "relid": 0}).status_code == 422


def test_values_of_a_field_on_no_list_are_refused_by_every_way_in(sandbox, ac):
    orphan = ac.post("/fields", json={"field": {"title": "Orphan", "type": "text"}}).json()["field"]
    contact = sync(ac, email="ada@example.com").json()["contact"]
    direct = ac.post("/fieldValues", json={"fieldValue": {"contact": contact["id"], "field": orphan["id"],
                                                           "value": "x"}})
    assert direct.status_code == 422 and direct.json()["errors"][0]["code"] == "field_not_related"
    edited = requests.post(f"{sandbox.url}/_sandbox/activecampaign/contacts",
                           json={"email": "ada@example.com", "fieldValues": {"ORPHAN": "x"}}, timeout=10)
    assert edited.status_code == 400 and "no list" in edited.json()["error"]
    batch = ac.post("/import/bulk_import", json={"contacts": [
        {"email": "bob@example.com", "fields": [{"id": orphan["id"], "value": "x"}]},
        {"email": "cy@example.com"}]}).json()["batchId"]
    sandbox.control("activecampaign", "import-delay", {"ms": 0})
    info = ac.get("/import/info", params={"batchId": batch}).json()
    assert (info["status"], info["failure"]) == ("completed", ["bob@example.com"])
    assert set(dump(sandbox)) == {"ada@example.com", "cy@example.com"}
    assert dump(sandbox)["ada@example.com"]["fieldValues"] == {}


def test_tags_are_created_added_listed_and_removed(sandbox, ac):
    created = ac.post("/tags", json={"tag": {"tag": "Webinar", "tagType": "contact", "description": "2026"}})
    assert created.status_code == 201
    tag = created.json()["tag"]
    assert ac.post("/tags", json={"tag": {"tag": "webinar", "tagType": "contact"}}).status_code == 422
    contact = sync(ac, email="ada@example.com").json()["contact"]
    added = ac.post("/contactTags", json={"contactTag": {"contact": contact["id"], "tag": tag["id"]}})
    assert added.status_code == 201
    contact_tag = added.json()["contactTag"]
    assert ac.post("/contactTags", json={"contactTag": {"contact": contact["id"], "tag": tag["id"]}}).json()[
        "contactTag"]["id"] == contact_tag["id"]
    assert [t["id"] for t in ac.get(f"/contacts/{contact['id']}/contactTags").json()["contactTags"]] == [
        contact_tag["id"]]
    assert [(t["tag"], t["subscriber_count"]) for t in ac.get("/tags").json()["tags"]] == [("Webinar", "1")]
    assert dump(sandbox)["ada@example.com"]["tags"] == ["Webinar"]
    removed = ac.delete(f"/contactTags/{contact_tag['id']}")
    assert (removed.status_code, removed.json()) == (200, {})
    assert ac.delete(f"/contactTags/{contact_tag['id']}").status_code == 404
    assert ac.get(f"/contacts/{contact['id']}/contactTags").json()["contactTags"] == []


def test_a_bulk_import_is_applied_later_and_fails_only_the_invalid_contact(sandbox, ac):
    sync(ac, email="known@example.com", firstName="Old")
    contacts = [
        {"email": "new1@example.com", "first_name": "New", "last_name": "One", "tags": ["imported"],
         "fields": [{"id": 1, "value": "Acme"}], "subscribe": [{"listid": 1}]},
        {"email": "not-an-address", "first_name": "Bad"},
        {"email": "Known@example.com", "first_name": "Renamed", "unsubscribe": [{"listid": 1}]},
    ]
    # Long enough for the checks of the pending import to come first, whatever the machine's load.
    sandbox.control("activecampaign", "import-delay", {"ms": 60_000})
    queued = ac.post("/import/bulk_import", json={"contacts": contacts})
    assert queued.status_code == 200
    body = queued.json()
    assert (body["success"], body["queued_contacts"]) == (1, 3) and body["batchId"]
    pending = ac.get("/import/info", params={"batchId": body["batchId"]}).json()
    assert pending == {"status": "waiting", "success": [], "failure": []}
    assert "new1@example.com" not in dump(sandbox)

    sandbox.control("activecampaign", "import-delay", {"ms": 0})
    info = ac.get("/import/info", params={"batchId": body["batchId"]}).json()
    stored = dump(sandbox)
    assert info["status"] == "completed"
    # Only contacts the import created are listed as successes, by id; failures by email.
    assert info["success"] == [stored["new1@example.com"]["id"]]
    assert info["failure"] == ["not-an-address"]
    new = stored["new1@example.com"]
    assert (new["firstName"], new["lastName"], new["tags"], new["fieldValues"], new["lists"]) == (
        "New", "One", ["imported"], {"COMPANY": "Acme"}, [{"list": "1", "status": 1}])
    known = stored["known@example.com"]
    assert (known["firstName"], known["lists"]) == ("Renamed", [{"list": "1", "status": 2}])
    assert "not-an-address" not in stored


@pytest.mark.parametrize("body, status", [
    ({"contacts": []}, 400),
    ({"contacts": [{"email": f"p{n}@example.com"} for n in range(251)]}, 400),
    ({"contacts": [{"email": "a@example.com"}, {"first_name": "No email"}]}, 400),
    ({"contacts": [{"email": "a@example.com", "first_name": "x" * 400_000}]}, 413),
])
def test_a_bulk_import_that_breaks_the_rules_is_refused_whole(sandbox, ac, body, status):
    response = ac.post("/import/bulk_import", json=body)
    assert response.status_code == status
    assert response.json()["success"] == 0 and response.json()["message"]
    assert sandbox.control("activecampaign", "contacts")["imports"] == []


def test_an_import_waits_its_delay_before_a_later_request_applies_it(sandbox, ac):
    sandbox.control("activecampaign", "import-delay", {"ms": 300})
    batch = ac.post("/import/bulk_import", json={"contacts": [{"email": "later@example.com"}]}).json()["batchId"]
    time.sleep(0.35)
    info = ac.get("/import/info", params={"batchId": batch}).json()
    assert info["status"] == "completed" and len(info["success"]) == 1


def test_import_info_needs_a_known_batch_id(sandbox, ac):
    assert ac.get("/import/info").json() == {"success": 0, "message": "'batchId' is a required field."}
    assert ac.get("/import/info", params={"batchId": "nope"}).status_code == 404


def test_the_bulk_importer_has_its_own_budget_for_single_contacts(sandbox, ac):
    sandbox.limits(activecampaign_bulk_import_single_rate_limit=2)
    single = {"contacts": [{"email": "one@example.com"}]}
    assert [ac.post("/import/bulk_import", json=single).status_code for _ in range(3)] == [200, 200, 429]
    assert ac.post("/import/bulk_import", json={"contacts": [{"email": "a@example.com"},
                                                               {"email": "b@example.com"}]}).status_code == 200


def test_requests_over_the_rate_per_second_get_a_429_with_retry_after(sandbox, activecampaign):
    first = activecampaign.get("/lists")
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("5", "4")
    # Two a second (settable like every limit) keeps the test's three requests well inside one second.
    sandbox.limits(activecampaign_rate_limit=2)
    replies = [activecampaign.get("/lists") for _ in range(3)]
    assert [reply.status_code for reply in replies[:2]] == [200, 200]
    assert [reply.headers["RateLimit-Remaining"] for reply in replies[:2]] == ["1", "0"]
    limited = replies[2]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["message"]
    time.sleep(1.0)
    assert activecampaign.get("/lists").status_code == 200


def test_faults_and_unknown_routes_answer_in_activecampaigns_shapes(sandbox, ac):
    assert ac.get("/nowhere").status_code == 404 and ac.get("/nowhere").json() == {"message": "Not Found"}
    assert ac.patch("/contacts").status_code == 405
    sandbox.faults(provider="activecampaign", rate=1.0, statuses=[429], retry_after=7, count=1)
    throttled = ac.get("/contacts")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    sandbox.faults(provider="activecampaign", rate=1.0, statuses=[500], count=1)
    assert ac.get("/contacts").json()["message"]
    sandbox.faults(provider="activecampaign", expire_tokens=True)
    assert ac.get("/contacts").status_code == 403
    sandbox.clear_faults()
    assert ac.get("/contacts").status_code == 200
    assert sandbox.stats()["requests"]["activecampaign"]["GET /contacts"] == 4


def test_seeded_contacts_overlap_the_other_systems_and_hold_only_valid_addresses(sandbox, ac, hostile_contacts):
    counts = sandbox.seed(hubspot_contacts=400, mailchimp_members=200, activecampaign_contacts=300,
                          hostile=["activecampaign"], random_seed=4)
    assert counts["activecampaign_contacts"] == 300 and counts["hostile_contacts"] == 0
    assert counts["activecampaign_hostile_contacts"] + len(counts["activecampaign_refused"]) == len(hostile_contacts)
    refused = {entry["email"] for entry in counts["activecampaign_refused"]}
    assert {"nodomain@", "a@b@example.com", "long@example.com", "dup@example.com"} <= refused
    stored = dump(sandbox)
    assert len(stored) == 300 + counts["activecampaign_hostile_contacts"]
    assert all(email_problem(contact["email"]) is None for contact in stored.values())
    assert stored["xss1@example.com"]["firstName"] == "<script>alert(1)</script>"
    hubspot = {(c["properties"].get("email") or "").lower() for c in sandbox.hubspot_contacts()}
    mailchimp = {m["email_address"].lower() for m in sandbox.mailchimp_members()}
    # The ActiveCampaign slice starts halfway into Mailchimp's, which starts halfway into HubSpot's.
    assert len(hubspot & set(stored)) >= 90 and len(mailchimp & set(stored)) >= 90
    statuses = [m["status"] for contact in stored.values() for m in contact["lists"]]
    assert {1, 2} <= set(statuses)
    assert any(contact["tags"] for contact in stored.values())
    assert any("COMPANY" in contact["fieldValues"] for contact in stored.values())
    assert ac.get("/contacts").json()["meta"]["total"] == str(len(stored))


def test_seeded_changes_are_never_older_than_changes_already_made(sandbox, ac):
    made = sync(ac, email="first@example.com").json()["contact"]
    sandbox.seed(activecampaign_contacts=100, random_seed=2)
    seeded = [c["udate"] for c in sandbox.control("activecampaign", "contacts")["contacts"]
              if c["email"] != "first@example.com"]
    assert min(datetime.fromisoformat(udate) for udate in seeded) >= datetime.fromisoformat(made["udate"])


def test_an_edit_in_activecampaigns_pages_moves_udate(sandbox, ac):
    contact = sync(ac, email="ada@example.com", firstName="Ada").json()["contact"]
    wait_for_the_next_second()
    edited = sandbox.control("activecampaign", "contacts", {"email": "ADA@example.com", "lastName": "Lovelace",
                                                            "fieldValues": {"COMPANY": "Analytical"},
                                                            "lists": {"1": 2}})
    assert (edited["id"], edited["firstName"], edited["lastName"]) == (contact["id"], "Ada", "Lovelace")
    assert edited["fieldValues"] == {"COMPANY": "Analytical"} and edited["lists"] == [{"list": "1", "status": 2}]
    assert edited["udate"] > contact["udate"]
    changed = ac.get("/contacts", params={"filters[updated_after]": edited["udate"]}).json()["contacts"]
    assert [c["id"] for c in changed] == [contact["id"]]
    signed_up = sandbox.control("activecampaign", "contacts", {"email": "new@example.com", "lists": {"1": 1}})
    assert signed_up["lists"] == [{"list": "1", "status": 1}]
    for body in ({"email": "bad address"}, {"email": "x@example.com", "fieldValues": {"NOPE": "1"}},
                 {"email": "x@example.com", "lists": {"1": 5}}, {"email": "x@example.com", "colour": "red"}):
        response = requests.post(f"{sandbox.url}/_sandbox/activecampaign/contacts", json=body, timeout=10)
        assert response.status_code == 400, body


def test_reset_wipes_activecampaign_but_keeps_its_first_list_and_fields(sandbox, ac):
    sandbox.seed(activecampaign_contacts=20, random_seed=1)
    ac.post("/fields", json={"field": {"title": "Extra", "type": "text"}})
    sandbox.reset()
    assert dump(sandbox) == {}
    assert [f["perstag"] for f in ac.get("/fields").json()["fields"]] == ["COMPANY", "BIRTHDAY"]
    assert [item["id"] for item in ac.get("/lists").json()["lists"]] == ["1"]
    assert ac.get("/tags").json()["tags"] == []
