"""HubSpot client against the sandbox process: fields, full and delta reads, batch writes, faults."""
import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import responses

from connections.providers.base import AuthenticationError, OutgoingRecord, ProviderConfig, ProviderError
from connections.providers.cursors import epoch_ms
from connections.providers.hubspot import HubSpotProvider, parse_hubspot_time
from connections.registry import build_provider

pytestmark = pytest.mark.integration

SEARCH = "POST /crm/v3/objects/contacts/search"
LIST = "GET /crm/v3/objects/contacts"
BATCH_READ = "POST /crm/v3/objects/contacts/batch/read"
BATCH_UPDATE = "POST /crm/v3/objects/contacts/batch/update"
UNSUBSCRIBE_ALL = "POST /communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all"
BATCH_UNSUBSCRIBE_ALL = "POST /communication-preferences/v4/statuses/batch/unsubscribe-all"
INVALID_EMAILS = {"a..b@example.com", "nodomain@", "a@b@example.com", "user@bücher.example", "josé@example.com"}


def hubspot(sandbox, *, token=None, fields=("email", "firstname", "lastname", "phone"), **settings) -> HubSpotProvider:
    config = ProviderConfig(
        base_url=sandbox.hubspot_url,
        access_token=token or sandbox.hubspot_token,
        settings=settings,
        budget_key=f"test-{uuid.uuid4()}",
    )
    return build_provider("hubspot", config, fields=fields)


def unpaced(sandbox, **settings) -> HubSpotProvider:
    """A client for a sandbox whose search limit is lifted, not pacing its searches either."""
    sandbox.limits(hubspot_search_rate_limit=0)
    return hubspot(sandbox, search_rate_limit=0, **settings)


def read(provider, cursor=None):
    """Return (records, last cursor, pages) of a whole read."""
    pages = list(provider.read_changed(cursor))
    return [record for page in pages for record in page.records], pages[-1].cursor, pages


def calls(sandbox, route: str) -> int:
    return sandbox.stats()["requests"].get("hubspot", {}).get(route, 0)


def saved(cursor: str) -> dict:
    return json.loads(cursor)


def versions(records) -> list[tuple[str, int]]:
    return [(record.external_id, epoch_ms(record.modified_at)) for record in records]


def latest_versions(sandbox) -> set[tuple[str, int]]:
    """(id, lastmodifieddate in ms) of every live contact, as the sandbox holds them."""
    return {
        (contact["id"], epoch_ms(parse_hubspot_time(contact["properties"]["lastmodifieddate"])))
        for contact in sandbox.hubspot_contacts()
        if not contact["archived"]
    }


def edit(provider, records, **fields) -> None:
    results = provider.upsert_batch(
        [OutgoingRecord(key=r.external_id, email=r.fields.get("email") or "", fields=fields, external_id=r.external_id)
         for r in records]
    )
    assert all(result.ok for result in results)


def bulk_edit(sandbox, **properties) -> dict:
    """Edit every live contact in one instant, as a HubSpot bulk edit or workflow can."""
    response = requests.post(f"{sandbox.url}/_sandbox/hubspot/bulk-edit", json={"properties": properties}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_fields_are_discovered_from_the_properties_api(sandbox):
    fields = {field.name: field for field in hubspot(sandbox).discover_fields()}
    assert {"email", "firstname", "lastname", "phone", "lifecyclestage"} <= set(fields)
    assert fields["lifecyclestage"].type == "enumeration"
    assert fields["firstname"].label == "First Name"


def test_a_full_read_lists_every_contact_once_by_id_with_the_properties_asked_for(sandbox):
    sandbox.seed(hubspot_contacts=450, random_seed=1)
    provider = hubspot(sandbox)
    began = int(time.time() * 1000)
    records, cursor, pages = read(provider)
    ids = [record.external_id for record in records]
    assert len(set(ids)) == 450 and ids == sorted(ids, key=int)
    assert {page.total for page in pages} == {450}
    # The list pages (100 a page), plus one search that counts them for the total.
    assert (calls(sandbox, LIST), calls(sandbox, SEARCH)) == (math.ceil(450 / 100), 1)
    assert provider.http.request_count == math.ceil(450 / 100) + 1
    assert all({"email", "firstname"} <= set(record.fields) and record.modified_at for record in records)
    stored = {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts()}
    assert {record.external_id: record.fields["firstname"] for record in records} == {
        contact_id: properties.get("firstname") for contact_id, properties in stored.items()
    }
    # The delta watermark is the time the scan began.
    assert began <= saved(cursor)["since"] <= int(time.time() * 1000)


def test_a_delta_read_after_edits_returns_only_the_edited_contacts(sandbox):
    sandbox.seed(hubspot_contacts=300, random_seed=1)
    provider = hubspot(sandbox)
    records, cursor, _ = read(provider)
    edited = records[10:13]
    edit(provider, edited, firstname="Edited")
    delta, _, _ = read(provider, cursor)
    assert sorted(record.external_id for record in delta) == sorted(record.external_id for record in edited)
    assert {record.fields["firstname"] for record in delta} == {"Edited"}


def test_a_delta_read_without_changes_returns_nothing_in_one_search_and_one_archived_list_call(sandbox):
    sandbox.seed(hubspot_contacts=250, random_seed=1)
    provider = hubspot(sandbox, overlap_seconds=0)
    _, cursor, _ = read(provider)
    sandbox.reset_stats()
    delta, next_cursor, _ = read(provider, cursor)
    assert delta == []
    assert calls(sandbox, SEARCH) == 1 and calls(sandbox, LIST) == 1
    # A read that went to the end moves its watermark to HubSpot's clock, never back.
    assert saved(next_cursor)["since"] >= saved(cursor)["since"]


def test_the_overlap_rereads_recent_changes_without_delivering_them_again(sandbox):
    provider = hubspot(sandbox, overlap_seconds=60)
    provider.upsert_batch([OutgoingRecord(key=i, email=f"o{i}@example.com", fields={}) for i in range(5)])
    _, cursor, _ = read(provider)
    assert sum(len(ids) for ids in saved(cursor)["seen"].values()) == 5
    sandbox.reset_stats()
    assert read(provider, cursor)[0] == []
    assert calls(sandbox, SEARCH) == 1


def test_a_full_read_resumed_from_a_page_cursor_misses_and_repeats_nothing(sandbox):
    sandbox.seed(hubspot_contacts=500, random_seed=1)
    provider = hubspot(sandbox)
    pages = provider.read_changed(None)
    first_page = next(pages)
    pages.close()
    assert saved(first_page.cursor)["scan"]["after"]
    rest, _, rest_pages = read(provider, first_page.cursor)
    ids = [record.external_id for record in first_page.records + rest]
    assert len(ids) == len(set(ids)) == 500
    # The resumed scan counts only what it has left.
    assert rest_pages[0].total == 400


def test_contacts_edited_during_a_full_read_are_delivered_by_the_next_delta(sandbox):
    sandbox.seed(hubspot_contacts=250, random_seed=2)
    provider = hubspot(sandbox)
    pages = provider.read_changed(None)
    first = next(pages)
    listed, unlisted = first.records[5], sandbox.hubspot_contacts()[-1]
    edit(provider, [listed], firstname="AfterItsPage")
    unlisted_record = provider.read_by_ids([unlisted["id"]])[0]
    edit(provider, [unlisted_record], firstname="BeforeItsPage")
    rest = list(pages)
    scanned = first.records + [record for page in rest for record in page.records]
    assert [r.fields["firstname"] for r in scanned if r.external_id == unlisted["id"]] == ["BeforeItsPage"]
    delta, _, _ = read(provider, rest[-1].cursor)
    # Only the contact the scan had passed comes back; the other was listed in its new state.
    assert [(r.external_id, r.fields["firstname"]) for r in delta] == [(listed.external_id, "AfterItsPage")]


def test_a_delta_read_with_edits_between_pages_and_a_crash_delivers_every_change_once(sandbox):
    sandbox.seed(hubspot_contacts=500, random_seed=3)
    provider = hubspot(sandbox, overlap_seconds=5)
    contacts, checkpoint, _ = read(provider)
    for start in range(0, 500, 100):
        edit(provider, contacts[start : start + 100], lastname="Round1")
    pages = provider.read_changed(checkpoint)
    first = next(pages)
    delivered_ids = {record.external_id for record in first.records}
    done = first.records[0]
    pending = next(record for record in contacts if record.external_id not in delivered_ids)
    # Between pages: one contact already delivered and one not yet reached are edited.
    edit(provider, [done, pending], lastname="Round2")
    second = next(pages)
    committed = first.records + second.records
    checkpoint = second.cursor
    # The crash: the read is dropped after its second page was saved.
    pages.close()
    assert "tie" not in saved(checkpoint)
    untouched = {r.external_id for r in committed} | {pending.external_id}
    late = next(record for record in contacts if record.external_id not in untouched)
    edit(provider, [late], lastname="Round3")
    rest, _, _ = read(provider, checkpoint)
    delivered = versions(committed + rest)
    assert len(delivered) == len(set(delivered)), "a version was delivered twice"
    assert latest_versions(sandbox) <= set(delivered), "a contact's latest version was missed"
    final = {record.external_id: record.fields["lastname"] for record in committed + rest}
    assert [final[r.external_id] for r in (done, pending, late)] == ["Round2", "Round2", "Round3"]
    assert "400" not in sandbox.stats()["statuses"]["hubspot"]


def test_more_contacts_stamped_in_one_instant_than_a_page_are_read_by_id_within_it(sandbox):
    sandbox.seed(hubspot_contacts=450, random_seed=4)
    provider = unpaced(sandbox, overlap_seconds=0)
    _, cursor, _ = read(provider)
    assert bulk_edit(sandbox, jobtitle="Bulk edited")["edited"] == 450
    sandbox.reset_stats()
    records, after, _ = read(provider, cursor)
    assert len(records) == len({record.external_id for record in records}) == 450
    assert {record.fields.get("email") for record in records} == {
        contact["properties"].get("email") for contact in sandbox.hubspot_contacts()
    }
    # From the watermark (a full page of one instant); by id within the instant, 200 at
    # a time; then strictly after it.
    assert calls(sandbox, SEARCH) == 1 + math.ceil(450 / 200) + 1
    assert "tie" not in saved(after)


def test_a_read_cut_short_within_one_instant_resumes_from_the_last_id(sandbox):
    sandbox.seed(hubspot_contacts=450, random_seed=5)
    provider = unpaced(sandbox, overlap_seconds=0)
    _, cursor, _ = read(provider)
    assert bulk_edit(sandbox, jobtitle="Bulk edited again")["edited"] == 450
    pages = provider.read_changed(cursor)
    committed = []
    for page in pages:
        committed += page.records
        if saved(page.cursor).get("tie", {}).get("after"):
            break
    pages.close()
    rest, _, _ = read(provider, page.cursor)
    ids = [record.external_id for record in committed + rest]
    assert len(ids) == len(set(ids)) == 450


def test_a_delta_over_more_than_10000_changes_never_pages_into_the_search_cap(sandbox):
    sandbox.limits(hubspot_rate_limit=0)
    sandbox.seed(hubspot_contacts=10_250, random_seed=1)
    provider = unpaced(sandbox, fields=("email",), overlap_seconds=0)
    # A watermark older than every seeded change.
    records, _, _ = read(provider, json.dumps({"v": 2, "since": 1, "seen": {}}))
    assert len(records) == len({record.external_id for record in records}) == 10_250
    # Each query starts at the newest time of the page before, which it reads again.
    assert calls(sandbox, SEARCH) == 1 + math.ceil((10_250 - 200) / 199)
    assert "400" not in sandbox.stats()["statuses"]["hubspot"]


def test_searches_keep_to_hubspots_search_rate_so_the_sandbox_never_refuses_one(sandbox):
    sandbox.seed(hubspot_contacts=1_400, random_seed=6)
    provider = hubspot(sandbox, overlap_seconds=0)
    began = time.monotonic()
    records, _, _ = read(provider, json.dumps({"v": 2, "since": 1, "seen": {}}))
    assert len(records) == 1_400
    searches = calls(sandbox, SEARCH)
    assert searches == 1 + math.ceil((1_400 - 200) / 199) > 5
    # Five at once, then the sixth a second after the first.
    assert time.monotonic() - began >= 1.0
    assert "429" not in sandbox.stats()["statuses"]["hubspot"]


def test_searches_have_a_budget_of_their_own_beside_the_accounts(sandbox):
    provider = hubspot(sandbox)
    search = provider.search_budget
    assert search.key == f"{provider.http.budget.key}:search"
    assert search.requests == 5 and 1 < search.window_seconds < 1.2
    slower = hubspot(sandbox, search_rate_limit=0.5).search_budget
    assert (slower.requests, slower.window_seconds) == (1, pytest.approx(2.1))
    assert hubspot(sandbox, search_rate_limit=0).search_budget is None


@pytest.mark.parametrize("settings", [
    {"search_rate_limit": -1}, {"search_rate_limit": "fast"}, {"overlap_seconds": None},
])
def test_a_bad_read_setting_is_a_clear_error(sandbox, settings):
    with pytest.raises(ProviderError, match=next(iter(settings))):
        list(hubspot(sandbox, **settings).read_changed(None))


def test_a_cursor_hubspot_cannot_read_asks_for_a_full_resync(sandbox):
    with pytest.raises(ProviderError, match="full resync"):
        list(hubspot(sandbox).read_changed('{"v": 2, "scan": {"after": "7"}}'))


def test_upserting_hostile_contacts_lands_every_valid_one_and_refuses_each_invalid_one(sandbox, hostile_contacts):
    provider = hubspot(sandbox)
    records = [
        OutgoingRecord(key=index, email=contact["email"],
                       fields={name: contact[name] for name in ("firstname", "lastname", "phone") if name in contact})
        for index, contact in enumerate(hostile_contacts)
    ]
    results = provider.upsert_batch(records)
    assert [result.key for result in results] == list(range(len(records)))
    refused = {hostile_contacts[result.key]["email"]: result for result in results if not result.ok}
    assert set(refused) == INVALID_EMAILS
    for email, result in refused.items():
        assert result.error_class == "INVALID_EMAIL"
        assert email in result.message and not result.retriable
    stored = {contact["properties"]["email"]: contact for contact in sandbox.hubspot_contacts()}
    for record, result in zip(records, results, strict=True):
        if result.ok:
            email = record.email.strip().lower()
            assert stored[email]["id"] == result.external_id
            assert result.fields["email"] == email
    assert stored["xss1@example.com"]["properties"]["firstname"] == "<script>alert(1)</script>"
    assert stored["emoji@example.com"]["properties"]["lastname"] == "\U00020bb7野家"
    # Two records for one address (by case) went in separate calls and met one contact.
    twins = [result for record, result in zip(records, results, strict=True)
             if record.email.lower() == "dup@example.com"]
    assert twins[0].external_id == twins[1].external_id


def test_a_linked_contact_is_updated_by_id_so_an_email_change_follows_it(sandbox):
    provider = hubspot(sandbox)
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="old@example.com", fields={"firstname": "Ann"})])
    (moved,) = provider.upsert_batch(
        [OutgoingRecord(key=1, email="new@example.com", fields={"email": "new@example.com"},
                        external_id=created.external_id)]
    )
    assert moved.ok and moved.external_id == created.external_id
    assert moved.fields == {"email": "new@example.com"}
    assert [contact["properties"]["email"] for contact in sandbox.hubspot_contacts()] == ["new@example.com"]


def test_a_contact_whose_stored_address_hubspot_refuses_still_takes_other_updates(sandbox):
    sandbox.seed(hubspot_contacts=400, random_seed=5)
    provider = hubspot(sandbox)
    records, _, _ = read(provider)
    legacy = [r for r in records
              if not r.fields.get("email") or "@" not in r.fields["email"] or " " in r.fields["email"]]
    assert legacy, "the seed holds old imports with missing or malformed addresses"
    results = provider.upsert_batch(
        [OutgoingRecord(key=r.external_id, email=r.fields.get("email") or "", fields={"firstname": "Fixed"},
                        external_id=r.external_id) for r in legacy[:100]]
    )
    assert all(result.ok for result in results)
    stored = {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts()}
    assert {stored[r.external_id]["firstname"] for r in legacy[:100]} == {"Fixed"}


def test_a_link_to_a_contact_that_no_longer_exists_falls_back_to_the_email(sandbox):
    provider = hubspot(sandbox)
    (result,) = provider.upsert_batch(
        [OutgoingRecord(key="k", email="back@example.com", fields={}, external_id="987654")]
    )
    assert result.ok
    assert result.external_id != "987654"
    assert [contact["id"] for contact in sandbox.hubspot_contacts()] == [result.external_id]


def test_read_by_ids_leaves_unknown_ids_out(sandbox):
    sandbox.seed(hubspot_contacts=5, random_seed=1)
    provider = hubspot(sandbox)
    ids = [contact["id"] for contact in sandbox.hubspot_contacts()][:3]
    found = provider.read_by_ids([*ids, "999999"])
    assert sorted(record.external_id for record in found) == sorted(ids)


def test_archive_hides_a_contact_and_erase_removes_it_for_good(sandbox):
    provider = hubspot(sandbox)
    kept, archived, erased = provider.upsert_batch(
        [OutgoingRecord(key=i, email=f"c{i}@example.com", fields={}) for i in range(3)]
    )
    provider.archive(archived.external_id)
    provider.archive(archived.external_id)
    provider.erase(erased.external_id)
    provider.erase("never-synced@example.com")
    contacts = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    assert contacts[archived.external_id]["archived"] is True
    assert erased.external_id not in contacts
    assert {entry["email"] for entry in sandbox.hubspot_gdpr_deleted()} == {
        "c2@example.com", "never-synced@example.com"
    }
    assert [record.external_id for record in read(provider)[0]] == [kept.external_id]


def test_find_person_searches_the_email_and_both_phone_properties(sandbox):
    provider = hubspot(sandbox)
    people = [
        {"email": "ada@example.com", "firstname": "Ada"},
        {"email": "work@example.com", "phone": "+14155550100"},
        {"email": "mobile@example.com", "mobilephone": "+14155550100"},
        {"email": "other@example.com", "phone": "+14155550199"},
    ]
    response = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/batch/create", timeout=30,
                             json={"inputs": [{"properties": person} for person in people]},
                             headers={"Authorization": f"Bearer {sandbox.hubspot_token}"})
    response.raise_for_status()
    ids = {contact["properties"]["email"]: contact["id"] for contact in sandbox.hubspot_contacts()}
    assert provider.find_person(email=" ADA@example.com", phone=None) == [ids["ada@example.com"]]
    assert sorted(provider.find_person(email=None, phone="+14155550100")) == sorted(
        [ids["work@example.com"], ids["mobile@example.com"]])
    assert sorted(provider.find_person(email="ada@example.com", phone="+14155550100")) == sorted(
        [ids["ada@example.com"], ids["work@example.com"], ids["mobile@example.com"]])
    assert provider.find_person(email="nobody@example.com", phone="+442079460000") == []
    assert provider.find_person(email=None, phone=None) == []


def test_find_person_finds_an_address_a_merge_left_among_the_additional_emails(sandbox):
    provider = hubspot(sandbox)
    primary, first, second = provider.upsert_batch([
        OutgoingRecord(key=1, email="keep@example.com", fields={}),
        OutgoingRecord(key=2, email="ada@example.com", fields={}),
        OutgoingRecord(key=3, email="ada.work@example.com", fields={}),
    ])
    for other in (first, second):
        provider.merge_records(primary.external_id, other.external_id)
    assert provider.find_person(email="Ada@Example.com", phone=None) == [primary.external_id]
    assert provider.find_person(email="ada.work@example.com", phone=None) == [primary.external_id]
    assert provider.find_person(email="keep@example.com", phone=None) == [primary.external_id]
    assert provider.find_person(email="ada", phone=None) == []
    # A `*` in an address is no wildcard here: it would find other people.
    assert provider.find_person(email="ada*@example.com", phone=None) == []


def test_erase_answers_a_summary_without_the_person_and_is_harmless_twice(sandbox):
    provider = hubspot(sandbox)
    # Letters beyond a-f: a random correlation id in the answer cannot spell it by chance.
    (written,) = provider.upsert_batch([OutgoingRecord(key=1, email="zoe.quill@example.com", fields={})])
    first = provider.erase(written.external_id)
    assert first == {"request": "POST /crm/v3/objects/contacts/gdpr-delete", "status": 204, "outcome": "erased"}
    again = provider.erase(written.external_id)
    assert (again["status"], again["outcome"], again["category"]) == (404, "already_gone", "OBJECT_NOT_FOUND")
    assert "zoe.quill" not in json.dumps([first, again])
    assert sandbox.hubspot_contacts() == []


def test_reads_and_writes_complete_despite_20_percent_faults(sandbox):
    sandbox.seed(hubspot_contacts=300, random_seed=1)
    sandbox.faults(provider="hubspot", rate=0.2, statuses=[429, 500, 502, 503], reset_rate=0.05, random_seed=7)
    provider = hubspot(sandbox)
    records, _, pages = read(provider)
    assert len({record.external_id for record in records}) == 300
    results = provider.upsert_batch(
        [OutgoingRecord(key=i, email=f"f{i}@example.com", fields={"firstname": "F"}) for i in range(100)]
    )
    assert all(result.ok for result in results)
    injected = sum(count for status, count in sandbox.stats()["statuses"]["hubspot"].items() if status != "200")
    assert injected > 0
    # The list pages, the search that counts them, the upsert, and a retry per fault.
    assert provider.http.request_count == len(pages) + 1 + 1 + injected
    assert len(sandbox.hubspot_contacts()) == 400


def test_a_refused_token_raises_an_authentication_error_without_the_token(sandbox):
    with pytest.raises(AuthenticationError, match="HTTP 401") as caught:
        read(hubspot(sandbox, token="not-the-token"))
    assert "not-the-token" not in str(caught.value)


def test_an_expired_token_raises_an_authentication_error(sandbox):
    sandbox.faults(provider="hubspot", expire_tokens=True)
    with pytest.raises(AuthenticationError, match="expired"):
        hubspot(sandbox).discover_fields()


def unsubscribe_in_hubspot(sandbox, email) -> None:
    """Opt an address out of all email the way HubSpot's own pages do: through the subscriptions API."""
    response = requests.post(f"{sandbox.hubspot_url}/communication-preferences/v4/statuses/{email}/unsubscribe-all",
                             params={"channel": "EMAIL"}, timeout=10,
                             headers={"Authorization": f"Bearer {sandbox.hubspot_token}"})
    assert response.status_code == 200, response.text


def test_a_delta_read_reports_contacts_archived_since_its_cursor_once_with_their_archive_time(sandbox):
    provider = hubspot(sandbox, overlap_seconds=0)
    kept, gone, earlier = provider.upsert_batch(
        [OutgoingRecord(key=i, email=f"a{i}@example.com", fields={"firstname": f"A{i}"}) for i in range(3)])
    provider.archive(earlier.external_id)
    # Bounds are inclusive: a read starting in the millisecond of the archive would report it.
    time.sleep(0.01)
    _, cursor, _ = read(provider)
    provider.archive(gone.external_id)
    delta, cursor, _ = read(provider, cursor)
    (archived,) = delta
    stored = {contact["id"]: contact for contact in sandbox.hubspot_contacts()}
    assert (archived.external_id, archived.archived) == (gone.external_id, True)
    assert archived.modified_at == parse_hubspot_time(stored[gone.external_id]["archivedAt"])
    # The pass asks for no properties: an archived record is known by its id.
    assert "email" not in archived.fields
    # Reported once; the contact archived before the first read never is.
    assert read(provider, cursor)[0] == []


def test_a_restored_contact_comes_back_through_the_search_as_live(sandbox):
    provider = hubspot(sandbox)
    (contact,) = provider.upsert_batch([OutgoingRecord(key=1, email="back@example.com", fields={"firstname": "B"})])
    _, cursor, _ = read(provider)
    provider.archive(contact.external_id)
    archived, cursor, _ = read(provider, cursor)
    assert [(r.external_id, r.archived) for r in archived] == [(contact.external_id, True)]
    assert sandbox.hubspot_restore([contact.external_id]) == 1
    restored, _, _ = read(provider, cursor)
    assert [(r.external_id, r.archived, r.fields["firstname"]) for r in restored] == [(contact.external_id, False, "B")]
    assert restored[0].modified_at > archived[0].modified_at


def test_archived_contacts_cost_one_list_call_per_100_in_the_recycle_bin(sandbox):
    sandbox.seed(hubspot_contacts=250, random_seed=6)
    provider = hubspot(sandbox, overlap_seconds=0)
    ids = [contact["id"] for contact in sandbox.hubspot_contacts()]
    _, cursor, _ = read(provider)
    response = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/batch/archive", timeout=30,
                             json={"inputs": [{"id": contact_id} for contact_id in ids[:100]]},
                             headers={"Authorization": f"Bearer {sandbox.hubspot_token}"})
    assert response.status_code == 204
    for contact_id in ids[100:150]:
        provider.archive(contact_id)
    sandbox.reset_stats()
    delta, cursor, pages = read(provider, cursor)
    assert sorted(r.external_id for r in delta) == sorted(ids[:150]) and all(r.archived for r in delta)
    assert calls(sandbox, LIST) == math.ceil(150 / 100)
    assert "started" not in saved(cursor)["archived"]
    sandbox.reset_stats()
    assert read(provider, cursor)[0] == []
    assert calls(sandbox, LIST) == math.ceil(150 / 100)


def test_an_archived_pass_cut_short_resumes_without_missing_or_repeating_a_contact(sandbox):
    sandbox.seed(hubspot_contacts=250, random_seed=7)
    provider = hubspot(sandbox)
    ids = sorted((contact["id"] for contact in sandbox.hubspot_contacts()), key=int)
    _, cursor, _ = read(provider)
    for contact_id in ids[:150]:
        provider.archive(contact_id)
    pages = provider.read_changed(cursor)
    committed = []
    for page in pages:
        committed += page.records
        if saved(page.cursor)["archived"].get("after"):
            break
    pages.close()
    # Archived behind where the cut-short pass stood.
    provider.archive(ids[200])
    rest, cursor, _ = read(provider, page.cursor)
    reported = [r.external_id for r in committed + rest]
    assert len(reported) == len(set(reported))
    delivered = set(reported) | {r.external_id for r in read(provider, cursor)[0]}
    assert delivered == {*ids[:150], ids[200]}


def test_merging_keeps_the_primary_and_the_other_contact_is_gone(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname", "lastname"))
    primary, other = provider.upsert_batch([
        OutgoingRecord(key=1, email="keep@example.com", fields={"firstname": "Keep"}),
        OutgoingRecord(key=2, email="dup@example.com", fields={"firstname": "Dup", "lastname": "Filled"}),
    ])
    _, cursor, _ = read(provider)
    survivor = provider.merge_records(primary.external_id, other.external_id)
    assert survivor == primary.external_id
    (merged,) = provider.read_by_ids([primary.external_id, other.external_id])
    assert (merged.fields["email"], merged.fields["firstname"], merged.fields["lastname"]) == (
        "keep@example.com", "Keep", "Filled")
    # The merge is a change of the primary; the other contact is not reported archived.
    assert [(r.external_id, r.archived) for r in read(provider, cursor)[0]] == [(primary.external_id, False)]
    with pytest.raises(ProviderError) as missing:
        provider.merge_records(primary.external_id, other.external_id)
    assert missing.value.status == 404


def test_an_unsubscribe_reaches_hubspot_through_the_subscriptions_api(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname", "hs_email_optout"))
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="leave@example.com", fields={"firstname": "L"})])
    _, cursor, _ = read(provider)
    sandbox.reset_stats()
    (result,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="leave@example.com", fields={"hs_email_optout": "true"}, external_id=created.external_id,
        email_consent="unsubscribed")])
    assert result.ok and result.fields["hs_email_optout"] == "true"
    # Nothing for the CRM itself: a lookup, then the opt-out from all email.
    assert sandbox.stats()["requests"]["hubspot"] == {BATCH_READ: 1, BATCH_UNSUBSCRIBE_ALL: 1}
    (changed,) = read(provider, cursor)[0]
    assert changed.fields["hs_email_optout"] == "true"
    sandbox.reset_stats()
    (again,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="leave@example.com", fields={"hs_email_optout": "true"}, external_id=created.external_id)])
    assert again.ok
    assert sandbox.stats()["requests"]["hubspot"] == {BATCH_READ: 1}


def test_a_contact_known_by_its_phone_is_written_by_id_without_an_email(sandbox):
    provider = hubspot(sandbox)
    contact_id = requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts",
                               json={"properties": {"firstname": "Pat", "phone": "+14155550123"}},
                               headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}, timeout=10).json()["id"]
    sandbox.reset_stats()
    (result,) = provider.upsert_batch([OutgoingRecord(key=1, email="", phone="+14155550123",
                                                      fields={"firstname": "Patricia"}, external_id=contact_id,
                                                      email_consent="unsubscribed")])
    assert result.ok and result.external_id == contact_id
    (contact,) = sandbox.hubspot_contacts()
    assert contact["properties"]["firstname"] == "Patricia"
    # Email consent belongs to an address: without one there is nothing to unsubscribe.
    assert not {UNSUBSCRIBE_ALL, BATCH_UNSUBSCRIBE_ALL} & set(sandbox.stats()["requests"]["hubspot"])


def test_a_contact_gone_from_hubspot_is_not_created_again_without_an_email(sandbox):
    provider = hubspot(sandbox)
    (result,) = provider.upsert_batch([OutgoingRecord(key=1, email="", fields={"firstname": "Pat"},
                                                      external_id="999999")])
    assert not result.ok and not result.retriable and result.error_class == "not_found"
    assert "without an email address it cannot be created again" in result.message
    assert sandbox.hubspot_contacts() == []
    assert "POST /crm/v3/objects/contacts/batch/upsert" not in sandbox.stats()["requests"].get("hubspot", {})


@pytest.mark.parametrize("consent", ["unsubscribed", "cleaned"])
def test_a_new_contact_that_opted_out_elsewhere_is_created_opted_out(sandbox, consent):
    provider = hubspot(sandbox, fields=("email", "hs_email_optout"))
    (result,) = provider.upsert_batch([OutgoingRecord(key=1, email="New@Example.com", fields={"firstname": "N"},
                                                      email_consent=consent)])
    assert result.ok
    (contact,) = sandbox.hubspot_contacts()
    assert contact["properties"]["hs_email_optout"] == "true"
    assert contact["properties"]["firstname"] == "N"


def test_fields_and_consent_together_cost_one_write_and_one_unsubscribe(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname", "hs_email_optout"))
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="both@example.com", fields={"firstname": "A"})])
    sandbox.reset_stats()
    (result,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="both@example.com", fields={"firstname": "B", "hs_email_optout": "true"},
        external_id=created.external_id)])
    assert result.ok and result.fields == {"firstname": "B", "hs_email_optout": "true", "email": "both@example.com"}
    assert sandbox.stats()["requests"]["hubspot"] == {BATCH_UPDATE: 1, BATCH_UNSUBSCRIBE_ALL: 1}


def test_nothing_resubscribes_a_contact_who_opted_out_in_hubspot(sandbox):
    provider = hubspot(sandbox, fields=("email", "hs_email_optout"))
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="out@example.com", fields={"firstname": "O"})])
    unsubscribe_in_hubspot(sandbox, "out@example.com")
    (result,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="out@example.com", fields={"firstname": "P", "hs_email_optout": "false"},
        external_id=created.external_id, email_consent="subscribed", explicit_opt_in=True)])
    assert result.ok
    (contact,) = sandbox.hubspot_contacts()
    assert (contact["properties"]["hs_email_optout"], contact["properties"]["firstname"]) == ("true", "P")


def test_hubspot_can_hold_one_email_opt_out_and_no_explicit_opt_in():
    assert HubSpotProvider.writable_consent_states == frozenset({"unsubscribed"})
    assert HubSpotProvider.explicit_opt_in_state is None


MISSING_BATCH_SCOPE = {
    "status": "error", "category": "MISSING_SCOPES", "correlationId": "c0ffee",
    "message": "This app hasn't been granted all required scopes to make this call.",
    "errors": [{"message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": ["communication_preferences.statuses.batch.write"]}}],
}


@responses.activate
def test_a_grant_without_the_preferences_scope_fails_the_opt_out_alone_and_says_why():
    """Error path: a connection authorized before Syncapp asked for the scope."""
    base = "https://hubspot.test"
    responses.post(f"{base}/crm/v3/objects/contacts/batch/read", json={"status": "COMPLETE", "results": [
        {"id": "7", "properties": {"email": "leave@example.com", "hs_email_optout": "false"}}]})
    responses.post(f"{base}/communication-preferences/v4/statuses/batch/unsubscribe-all", status=403,
                   json=MISSING_BATCH_SCOPE)
    responses.post(f"{base}/communication-preferences/v4/statuses/leave@example.com/unsubscribe-all", status=403,
                   json={"status": "error", "message": "This app hasn't been granted all required scopes",
                         "category": "MISSING_SCOPES"})
    provider = build_provider("hubspot", ProviderConfig(base_url=base, access_token="t", budget_key=str(uuid.uuid4())),
                              fields=("email", "hs_email_optout"))
    (result,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="leave@example.com", fields={}, external_id="7", email_consent="unsubscribed")])
    assert not result.ok and result.retriable and result.error_class == "missing_scope"
    assert "communication_preferences.write" in result.message and "reconnect" in result.message


def test_250_opt_outs_cost_3_batch_unsubscribes_not_250_calls(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname"))
    records = [OutgoingRecord(key=number, email=f"leaver{number}@example.com", fields={"firstname": f"L{number}"},
                              email_consent="unsubscribed") for number in range(250)]
    results = [result for start in range(0, len(records), provider.max_batch)
               for result in provider.upsert_batch(records[start:start + provider.max_batch])]
    assert all(result.ok for result in results)
    requests_made = sandbox.stats()["requests"]["hubspot"]
    assert requests_made.get(BATCH_UNSUBSCRIBE_ALL) == 3
    assert UNSUBSCRIBE_ALL not in requests_made
    contacts = sandbox.hubspot_contacts()
    assert len(contacts) == 250 and all(c["properties"]["hs_email_optout"] == "true" for c in contacts)


def test_one_upsert_writes_1000_contacts_100_a_call_and_unsubscribes_their_100_opt_outs_in_one_call(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname"))
    records = [OutgoingRecord(key=number, email=f"group{number}@example.com", fields={"firstname": f"G{number}"},
                              email_consent="unsubscribed" if number % 10 == 0 else None)
               for number in range(provider.push_group)]
    results = provider.upsert_batch(records)
    assert [result.key for result in results] == list(range(1000)) and all(result.ok for result in results)
    assert sandbox.stats()["requests"]["hubspot"] == {"POST /crm/v3/objects/contacts/batch/upsert": 10,
                                                      BATCH_UNSUBSCRIBE_ALL: 1}
    opted_out = {contact["properties"]["email"] for contact in sandbox.hubspot_contacts()
                 if contact["properties"].get("hs_email_optout") == "true"}
    assert opted_out == {f"group{number}@example.com" for number in range(0, 1000, 10)}


def test_an_upsert_larger_than_the_group_is_a_programming_error(sandbox):
    provider = hubspot(sandbox)
    with pytest.raises(ValueError, match="at most 1000"):
        provider.upsert_batch([OutgoingRecord(key=n, email=f"x{n}@example.com", fields={}) for n in range(1001)])


def opting_out(records, *, every=1) -> list[OutgoingRecord]:
    """Return linked records for HubSpot contacts, each `every`-th one unsubscribed from all email."""
    return [OutgoingRecord(key=record.external_id, email=record.fields.get("email") or "", fields={"firstname": "X"},
                           external_id=record.external_id,
                           email_consent="unsubscribed" if number % every == 0 else None)
            for number, record in enumerate(records)]


def test_hostile_addresses_hubspot_refuses_to_unsubscribe_fail_alone_and_the_others_are_unsubscribed(sandbox):
    sandbox.seed(hostile=["hubspot"])
    provider = hubspot(sandbox, fields=("email", "firstname", "hs_email_optout"))
    contacts, _, _ = read(provider)
    sandbox.reset_stats()
    results = provider.upsert_batch(opting_out(contacts))
    assert sandbox.stats()["requests"]["hubspot"] == {BATCH_UPDATE: 1, BATCH_UNSUBSCRIBE_ALL: 1}
    emails = {contact.external_id: contact.fields["email"] for contact in contacts}
    failed = {emails[result.key]: result for result in results if not result.ok}
    assert set(failed) == INVALID_EMAILS
    for email, result in failed.items():
        assert result.error_class == "VALIDATION_ERROR" and not result.retriable
        assert result.external_id and email.lower() in result.message
    stored = {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts()}
    for result in results:
        # Every contact was written; the opt-out failed alone.
        assert stored[result.key]["firstname"] == "X"
        assert stored[result.key].get("hs_email_optout") == ("true" if result.ok else None)


def test_only_the_contacts_opting_out_are_unsubscribed(sandbox):
    sandbox.seed(hostile=["hubspot"])
    provider = hubspot(sandbox, fields=("email", "firstname"))
    contacts, _, _ = read(provider)
    records = opting_out(contacts, every=2)
    results = provider.upsert_batch(records)
    assert sandbox.stats()["requests"]["hubspot"][BATCH_UNSUBSCRIBE_ALL] == 1
    stored = {contact["id"]: contact["properties"] for contact in sandbox.hubspot_contacts()}
    valid = [(record, result) for record, result in zip(records, results, strict=True)
             if record.email not in INVALID_EMAILS]
    assert all(result.ok for _, result in valid)
    assert {record.key for record, _ in valid if stored[record.key].get("hs_email_optout") == "true"} == {
        record.key for record, _ in valid if record.email_consent == "unsubscribed"}


def test_a_contact_already_opted_out_costs_no_unsubscribe(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname", "hs_email_optout"))
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="gone@example.com", fields={"firstname": "G"})])
    unsubscribe_in_hubspot(sandbox, "gone@example.com")
    sandbox.reset_stats()
    (result,) = provider.upsert_batch([OutgoingRecord(
        key=1, email="gone@example.com", fields={"firstname": "H", "hs_email_optout": "true"},
        external_id=created.external_id, email_consent="unsubscribed")])
    assert result.ok and result.fields["hs_email_optout"] == "true"
    assert sandbox.stats()["requests"]["hubspot"] == {BATCH_UPDATE: 1}


def test_one_address_held_by_two_records_is_sent_once(sandbox):
    provider = hubspot(sandbox, fields=("email", "firstname"))
    (created,) = provider.upsert_batch([OutgoingRecord(key=1, email="twin@example.com", fields={"firstname": "T"})])
    sandbox.reset_stats()
    # The sandbox refuses a batch naming one address twice, as HubSpot's batches do.
    results = provider.upsert_batch([
        OutgoingRecord(key=1, email="twin@example.com", fields={"firstname": "A"}, external_id=created.external_id,
                       email_consent="unsubscribed"),
        OutgoingRecord(key=2, email="Twin@Example.com", fields={"lastname": "B"}, email_consent="unsubscribed"),
    ])
    assert [result.ok for result in results] == [True, True]
    assert sandbox.stats()["requests"]["hubspot"][BATCH_UNSUBSCRIBE_ALL] == 1
    (contact,) = sandbox.hubspot_contacts()
    assert contact["properties"]["hs_email_optout"] == "true"


def test_below_enterprise_one_batch_attempt_then_one_call_per_address_for_the_whole_run(sandbox):
    sandbox.control("hubspot", "batch-subscription-scopes", {"granted": False})
    provider = hubspot(sandbox, fields=("email", "firstname"))
    pages = [[OutgoingRecord(key=(page, number), email=f"p{page}n{number}@example.com", fields={"firstname": "P"},
                             email_consent="unsubscribed") for number in range(10)] for page in range(6)]
    # Two batches in flight at once, as the run's pusher sends them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [result for page in pool.map(provider.upsert_batch, pages) for result in page]
    assert all(result.ok for result in results)
    requests_made = sandbox.stats()["requests"]["hubspot"]
    assert requests_made[BATCH_UNSUBSCRIBE_ALL] == 1
    assert requests_made[UNSUBSCRIBE_ALL] == 60
    contacts = sandbox.hubspot_contacts()
    assert len(contacts) == 60 and all(c["properties"]["hs_email_optout"] == "true" for c in contacts)


@responses.activate
def test_a_batch_hubspot_refuses_whole_sends_each_opt_out_alone_so_one_holds_back_no_other():
    """Error path: a 400 for the whole batch (one address it will not take, a lower limit)."""
    base = "https://hubspot.test"
    people = {"7": "ann@example.com", "8": "bob@example.com"}
    responses.post(f"{base}/crm/v3/objects/contacts/batch/read", json={"status": "COMPLETE", "results": [
        {"id": contact_id, "properties": {"email": email}} for contact_id, email in people.items()]})
    responses.post(f"{base}/communication-preferences/v4/statuses/batch/unsubscribe-all", status=400,
                   json={"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid input"})
    singles = [responses.post(f"{base}/communication-preferences/v4/statuses/{email}/unsubscribe-all", status=200,
                              json={"status": "COMPLETE", "results": []}) for email in people.values()]
    provider = build_provider("hubspot", ProviderConfig(base_url=base, access_token="t", budget_key=str(uuid.uuid4())),
                              fields=("email",))
    results = provider.upsert_batch([OutgoingRecord(key=contact_id, email=email, fields={}, external_id=contact_id,
                                                    email_consent="unsubscribed")
                                     for contact_id, email in people.items()])
    assert [result.ok for result in results] == [True, True]
    assert [single.call_count for single in singles] == [1, 1]
    # Not the portal's scope: the next batch is tried as a batch again.
    assert provider.batch_unsubscribe is None


@responses.activate
def test_each_input_hubspot_did_not_unsubscribe_fails_its_records_as_the_error_says():
    base = "https://hubspot.test"
    people = {"7": "Twin@Example.com", "8": "twin@example.com", "9": "bad@example.com", "10": "busy@example.com",
              "11": "lost@example.com"}
    responses.post(f"{base}/crm/v3/objects/contacts/batch/read", json={"status": "COMPLETE", "results": [
        {"id": contact_id, "properties": {"email": email}} for contact_id, email in people.items()]})
    batch = responses.post(f"{base}/communication-preferences/v4/statuses/batch/unsubscribe-all", status=207, json={
        "status": "COMPLETE", "numErrors": 2,
        "results": [{"subscriberIdString": "twin@example.com", "statuses": []}],
        "errors": [
            {"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid subscriber",
             "context": {"subscriberIdString": ["BAD@example.com"]}},
            {"status": "error", "category": "INTERNAL_ERROR", "message": "Try again later for busy@example.com"},
        ],
    })
    provider = build_provider("hubspot", ProviderConfig(base_url=base, access_token="t", budget_key=str(uuid.uuid4())),
                              fields=("email",))
    results = provider.upsert_batch([OutgoingRecord(key=contact_id, email=email, fields={}, external_id=contact_id,
                                                    email_consent="unsubscribed")
                                     for contact_id, email in people.items()])
    assert json.loads(batch.calls[0].request.body) == {
        "inputs": ["twin@example.com", "bad@example.com", "busy@example.com", "lost@example.com"]}
    outcome = {result.key: (result.ok, result.error_class, result.retriable) for result in results}
    assert outcome == {"7": (True, "", False), "8": (True, "", False), "9": (False, "VALIDATION_ERROR", False),
                       "10": (False, "INTERNAL_ERROR", True), "11": (False, "MissingFromReply", True)}
    assert all(people[result.key].lower() in result.message for result in results if not result.ok)


@pytest.mark.integration
def test_a_bulk_write_read_back_once_is_not_listed_again_by_later_reads(sandbox):
    # The watermark moves to HubSpot's clock (the search reply's Date) when the read
    # began, so the next read starts past contacts written long enough before it.
    provider = unpaced(sandbox, overlap_seconds=1)
    _, cursor, _ = read(provider)
    for start in range(0, 250, 100):
        provider.upsert_batch([OutgoingRecord(key=i, email=f"echo{i}@example.com", fields={"firstname": "E"})
                               for i in range(start, min(start + 100, 250))])
    time.sleep(2.5)
    echoes, cursor, _ = read(provider, cursor)
    assert len(echoes) == 250
    sandbox.reset_stats()
    again, _, _ = read(provider, cursor)
    assert again == []
    assert calls(sandbox, "POST /crm/v3/objects/contacts/search") == 1
