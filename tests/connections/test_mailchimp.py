"""Mailchimp: the member body's consent rules, then the client against the sandbox process."""
import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from connections.providers import mailchimp as mailchimp_module
from connections.providers.base import AuthenticationError, MergeNotSupported, OutgoingRecord, ProviderConfig
from connections.providers.mailchimp import MailchimpProvider, subscriber_hash
from connections.registry import build_provider


def new_member(consent=None, fields=None, if_new="subscribed", **settings):
    provider = MailchimpProvider(
        ProviderConfig(base_url="http://mc.invalid/3.0", api_key="k-us1", settings=settings), http=None
    )
    record = OutgoingRecord(key=1, email="  Ann@Example.com ", fields=fields or {"FNAME": "Ann"}, email_consent=consent,
                            email_consent_if_new=if_new)
    return provider._new_member(record)


def member_record(**values) -> OutgoingRecord:
    """A record as the engine builds it for a person whose consent is on record (subscribed unless stated)."""
    values.setdefault("email_consent_if_new", values.get("email_consent") or "subscribed")
    return OutgoingRecord(**values)


def test_mailchimp_offers_pending_transactional_and_subscribed_for_new_members():
    assert MailchimpProvider.new_record_consent_states == ("pending", "transactional", "subscribed")


@pytest.mark.parametrize("status", ["subscribed", "pending", "transactional", "unsubscribed", "cleaned"])
def test_a_new_member_gets_the_engines_status_for_new_records(status):
    body = new_member(if_new=status)
    assert body["status"] == status
    # Mailchimp's batch members have no status_if_new: the status is all there is.
    assert "status_if_new" not in body


def test_fields_become_merge_fields_and_the_address_is_normalised():
    body = new_member(fields={"FNAME": "Ann", "LNAME": None, "email_address": "x@y.z", "status": "subscribed"})
    assert body["email_address"] == "ann@example.com"
    assert body["merge_fields"] == {"FNAME": "Ann", "LNAME": ""}


def test_tags_are_added_never_synced_away():
    body = new_member(fields={"tags": ["vip", "2024"]})
    assert body["tags"] == ["vip", "2024"]
    assert "sync_tags" not in body
    assert "tags" not in new_member(fields={"tags": []})


def test_the_member_id_is_the_md5_of_the_lowercased_address():
    assert subscriber_hash(" Ann@Example.com") == "257c57037d384ae37ea27a07e8a01665"


def mailchimp(sandbox, *, key=None, max_concurrency=None, **settings) -> MailchimpProvider:
    config = ProviderConfig(
        base_url=sandbox.mailchimp_url,
        api_key=key or sandbox.mailchimp_key,
        settings={"list_id": sandbox.list_id, **settings},
        max_concurrency=max_concurrency,
        budget_key=f"test-{uuid.uuid4()}",
    )
    return build_provider("mailchimp", config)


def read(provider, cursor=None):
    pages = list(provider.read_changed(cursor))
    return [record for page in pages for record in page.records], pages[-1].cursor, pages


def member_calls(sandbox) -> int:
    return sandbox.stats()["requests"].get("mailchimp", {}).get("GET /lists/{list_id}/members", 0)


def statuses(sandbox) -> dict[str, str]:
    return {member["email_address"]: member["status"] for member in sandbox.mailchimp_members()}


def stored(sandbox, email) -> dict:
    return next(member for member in sandbox.mailchimp_members() if member["email_address"] == email)


def calls(sandbox) -> dict[str, int]:
    return sandbox.stats()["requests"].get("mailchimp", {})


def set_status_in_mailchimp(sandbox, email, status):
    """Change a member's status the way a person or Mailchimp itself does: through the API."""
    response = requests.patch(
        f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/members/{subscriber_hash(email)}",
        json={"status": status}, auth=("someone", sandbox.mailchimp_key), timeout=10,
    )
    assert response.status_code == 200, response.text


@pytest.mark.integration
def test_fields_are_the_fixed_ones_and_the_audiences_merge_tags(sandbox):
    names = [field.name for field in mailchimp(sandbox).discover_fields()]
    assert names[:3] == ["email_address", "status", "tags"]
    assert {"FNAME", "LNAME", "PHONE"} <= set(names[3:])


@pytest.mark.integration
def test_a_full_read_returns_every_member_once_flattened_with_archived_ones_marked(sandbox):
    sandbox.seed(mailchimp_members=1500, random_seed=1)
    provider = mailchimp(sandbox)
    gone = next(member for member in sandbox.mailchimp_members() if member["status"] == "subscribed")
    provider.archive(gone["id"])
    archived_in_sandbox = {member["id"] for member in sandbox.mailchimp_members() if member["archived"]}
    records, _, pages = read(provider)
    assert len(records) == len({record.external_id for record in records}) == 1500
    assert pages[0].total == 1500
    assert member_calls(sandbox) == math.ceil(1500 / 1000)
    assert {record.external_id for record in records if record.archived} == archived_in_sandbox
    assert gone["id"] in archived_in_sandbox
    sample = next(record for record in records if not record.archived)
    assert {"email_address", "status", "tags", "FNAME", "LNAME"} <= set(sample.fields)
    assert isinstance(sample.fields["tags"], list)
    assert sample.external_id == subscriber_hash(sample.fields["email_address"])


@pytest.mark.integration
def test_a_delta_read_after_edits_returns_only_the_edited_members(sandbox):
    sandbox.seed(mailchimp_members=300, random_seed=1)
    provider = mailchimp(sandbox)
    records, cursor, _ = read(provider)
    edited = [record for record in records if record.fields["status"] == "subscribed"][:2]
    results = provider.upsert_batch(
        [member_record(key=r.external_id, email=r.fields["email_address"], fields={"FNAME": "Edited"}) for r in edited]
    )
    assert all(result.ok for result in results)
    delta, _, _ = read(provider, cursor)
    assert sorted(record.external_id for record in delta) == sorted(record.external_id for record in edited)
    assert {record.fields["FNAME"] for record in delta} == {"Edited"}


@pytest.mark.integration
def test_a_delta_read_without_changes_returns_nothing_in_one_call(sandbox):
    sandbox.seed(mailchimp_members=200, random_seed=1)
    provider = mailchimp(sandbox, overlap_seconds=0)
    _, cursor, _ = read(provider)
    sandbox.reset_stats()
    assert read(provider, cursor)[0] == []
    assert member_calls(sandbox) == 1


@pytest.mark.integration
def test_upserting_hostile_contacts_refuses_each_bad_one_and_lands_the_rest(sandbox, hostile_contacts):
    provider = mailchimp(sandbox)
    records = [
        member_record(key=i, email=c["email"],
                      fields={"FNAME": c["firstname"], "LNAME": c["lastname"], "PHONE": c.get("phone", "")})
        for i, c in enumerate(hostile_contacts)
    ]
    results = provider.upsert_batch(records)
    assert [result.key for result in results] == list(range(len(records)))
    refused = {hostile_contacts[result.key]["why"] for result in results if not result.ok}
    assert refused == {
        "NUL byte", "very long value", "internationalized domain", "unicode local part", "invalid: double dot",
        "invalid: no domain", "invalid: two at signs", "phone with letters", "phone garbage",
    }
    assert all(result.message.startswith("Mailchimp refused") and result.error_class
               for result in results if not result.ok)
    stored = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    assert stored["xss1@example.com"]["merge_fields"]["FNAME"] == "<script>alert(1)</script>"
    assert stored["mixed.case@example.com"]["merge_fields"]["LNAME"] == "Case"
    landed = [result for result in results if result.ok]
    assert all(result.external_id in {member["id"] for member in stored.values()} for result in landed)
    assert len(stored) == len({result.external_id for result in landed})


@pytest.mark.integration
def test_no_upsert_resubscribes_a_member_who_opted_out(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="out@example.com", fields={}, email_consent="unsubscribed")])
    assert statuses(sandbox)["out@example.com"] == "unsubscribed"
    provider.upsert_batch([member_record(key=1, email="out@example.com", fields={"FNAME": "Still out"})])
    provider.upsert_batch([member_record(key=1, email="out@example.com", fields={}, email_consent="subscribed")])
    assert statuses(sandbox)["out@example.com"] == "unsubscribed"


@pytest.mark.integration
@pytest.mark.parametrize("opt_out", ["unsubscribed", "cleaned"])
@pytest.mark.parametrize("consent", [None, "subscribed", "pending"])
def test_a_member_who_opted_out_in_mailchimp_keeps_the_opt_out_and_gets_the_new_fields(sandbox, opt_out, consent):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="ann@example.com", fields={"FNAME": "Ann", "LNAME": "Lee"})])
    set_status_in_mailchimp(sandbox, "ann@example.com", opt_out)
    (result,) = provider.upsert_batch(
        [member_record(key=7, email="ann@example.com", fields={"FNAME": "Annie", "LNAME": "Lee"},
                       email_consent=consent)]
    )
    assert (result.key, result.ok, result.external_id) == (7, True, subscriber_hash("ann@example.com"))
    assert result.fields == {"FNAME": "Annie", "LNAME": "Lee", "email_address": "ann@example.com"}
    member = stored(sandbox, "ann@example.com")
    assert member["status"] == opt_out
    assert member["merge_fields"] == {"FNAME": "Annie", "LNAME": "Lee"}


@pytest.mark.integration
def test_an_existing_member_is_updated_with_one_patch_after_the_batch(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="ann@example.com", fields={"FNAME": "Ann"})])
    sandbox.reset_stats()
    provider.upsert_batch([member_record(key=1, email="ann@example.com", fields={"FNAME": "Annie"})])
    assert calls(sandbox) == {"POST /lists/{list_id}": 1, "PATCH /lists/{list_id}/members/{subscriber_hash}": 1}


def linked(email, **values) -> OutgoingRecord:
    """A record for a member Syncapp linked."""
    return member_record(email=email, external_id=subscriber_hash(email), **values)


@pytest.mark.integration
def test_existing_members_are_updated_by_batch_operations_and_nobody_gets_another_status(sandbox):
    provider = mailchimp(sandbox)
    emails = [f"n{i}@example.com" for i in range(1100)]
    for start in range(0, 1100, 500):
        provider.upsert_batch([member_record(key=i, email=email, fields={"FNAME": "Old"})
                               for i, email in enumerate(emails[start:start + 500], start)])
    # Unsubscribed by the account, not by the person: Mailchimp would let a status
    # restated by a batch subscribe them again. No update sends them one.
    for email in emails[:5]:
        set_status_in_mailchimp(sandbox, email, "unsubscribed")
    sandbox.reset_stats()
    records = [linked(email, key=i, fields={"FNAME": f"N{i}"}) for i, email in enumerate(emails)]
    results = [result for start in range(0, 1100, 500) for result in provider.upsert_batch(records[start:start + 500])]
    assert [result.key for result in results] == list(range(1100)) and all(result.ok for result in results)
    made = calls(sandbox)
    # Per call of at most 500: the batch subscribe that finds them, and one batch operation.
    assert made["POST /lists/{list_id}"] == made["POST /batches"] == math.ceil(1100 / 500)
    assert "PATCH /lists/{list_id}/members/{subscriber_hash}" not in made
    assert statuses(sandbox) == {email: "unsubscribed" if index < 5 else "subscribed"
                                 for index, email in enumerate(emails)}
    assert stored(sandbox, "n7@example.com")["merge_fields"]["FNAME"] == "N7"
    assert results[7].fields == {"FNAME": "N7", "email_address": "n7@example.com"}
    assert (results[0].email_consent, results[7].email_consent) == ("unsubscribed", "subscribed")


@pytest.mark.integration
def test_an_unsubscribe_does_not_turn_a_cleaned_member_into_an_unsubscribed_one(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="bounce@example.com", fields={})])
    set_status_in_mailchimp(sandbox, "bounce@example.com", "cleaned")
    (result,) = provider.upsert_batch(
        [member_record(key=1, email="bounce@example.com", fields={"FNAME": "B"}, email_consent="unsubscribed")]
    )
    assert result.ok
    assert statuses(sandbox) == {"bounce@example.com": "cleaned"}


@pytest.mark.integration
def test_a_first_push_into_an_empty_audience_costs_one_call_per_500_members(sandbox):
    provider = mailchimp(sandbox)
    records = [member_record(key=i, email=f"n{i}@example.com", fields={"FNAME": f"N{i}"}) for i in range(1100)]
    results = [result for start in range(0, 1100, 500) for result in provider.upsert_batch(records[start:start + 500])]
    assert [result.key for result in results] == list(range(1100)) and all(result.ok for result in results)
    assert calls(sandbox) == {"POST /lists/{list_id}": math.ceil(1100 / 500)}
    assert set(statuses(sandbox).values()) == {"subscribed"}


@pytest.mark.integration
def test_a_batch_of_new_and_existing_members_maps_every_outcome_to_its_key(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch(
        [member_record(key=0, email=f"old{i}@example.com", fields={"FNAME": "Old"}) for i in range(3)]
    )
    set_status_in_mailchimp(sandbox, "old1@example.com", "unsubscribed")
    records = [
        member_record(key="new", email="new@example.com", fields={"FNAME": "New"}),
        member_record(key="bad-new", email="a..b@example.com", fields={"FNAME": "Bad"}),
        member_record(key="old0", email="old0@example.com", fields={"FNAME": "Old0"}),
        member_record(key="bad-old", email="old1@example.com", fields={"PHONE": "call me maybe"}),
        member_record(key="bad-phone-new", email="phone@example.com", fields={"PHONE": "1-800-FLOWERS"}),
        member_record(key="old2", email="OLD2@example.com", fields={"FNAME": "Old2"}, email_consent="unsubscribed"),
    ]
    results = {result.key: result for result in provider.upsert_batch(records)}
    assert list(results) == [record.key for record in records]
    assert {key for key, result in results.items() if result.ok} == {"new", "old0", "old2"}
    assert results["bad-new"].error_class == "ERROR_GENERIC"
    assert results["bad-phone-new"].error_class == "ERROR_GENERIC"
    assert results["bad-old"].error_class == "Invalid Resource" and "PHONE" in results["bad-old"].message
    assert all(not result.retriable and result.message.startswith("Mailchimp refused")
               for result in results.values() if not result.ok)
    assert statuses(sandbox) == {"old0@example.com": "subscribed", "old1@example.com": "unsubscribed",
                                 "old2@example.com": "unsubscribed", "new@example.com": "subscribed"}
    assert stored(sandbox, "old0@example.com")["merge_fields"] == {"FNAME": "Old0"}
    assert stored(sandbox, "old1@example.com")["merge_fields"] == {"FNAME": "Old"}


@pytest.mark.integration
def test_two_records_for_one_member_both_land_in_order(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=0, email="twice@example.com", fields={"FNAME": "Before"})])
    results = provider.upsert_batch([
        member_record(key=1, email="twice@example.com", fields={"FNAME": "First"}),
        member_record(key=2, email="Twice@Example.com", fields={"FNAME": "Second"}),
        member_record(key=3, email="fresh@example.com", fields={"FNAME": "One"}),
        member_record(key=4, email="fresh@example.com", fields={"FNAME": "Two"}),
    ])
    assert [(result.key, result.ok) for result in results] == [(1, True), (2, True), (3, True), (4, True)]
    assert stored(sandbox, "twice@example.com")["merge_fields"] == {"FNAME": "Second"}
    assert stored(sandbox, "fresh@example.com")["merge_fields"] == {"FNAME": "Two"}


@pytest.mark.integration
def test_tags_reach_existing_members_too_and_none_is_removed(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="t@example.com", fields={"tags": ["VIP"]})])
    (result,) = provider.upsert_batch([member_record(key=1, email="t@example.com", fields={"tags": ["2024"]})])
    assert result.ok and result.fields["tags"] == ["2024", "VIP"]
    assert stored(sandbox, "t@example.com")["tags"] == ["VIP", "2024"]
    sandbox.reset_stats()
    provider.upsert_batch([member_record(key=1, email="t@example.com", fields={"tags": ["VIP"]})])
    assert "POST /lists/{list_id}/members/{subscriber_hash}/tags" not in calls(sandbox)


@pytest.mark.integration
def test_existing_hostile_contacts_are_updated_or_refused_each_under_its_own_key(sandbox, hostile_contacts):
    provider = mailchimp(sandbox)
    first = provider.upsert_batch(
        [member_record(key=i, email=c["email"], fields={}) for i, c in enumerate(hostile_contacts)]
    )
    landed = {result.key for result in first if result.ok}
    records = [
        member_record(key=i, email=c["email"],
                      fields={"FNAME": c["firstname"], "LNAME": c["lastname"], "PHONE": c.get("phone", "")})
        for i, c in enumerate(hostile_contacts)
    ]
    sandbox.reset_stats()
    results = provider.upsert_batch(records)
    assert [result.key for result in results] == list(range(len(records)))
    refused = {hostile_contacts[result.key]["why"] for result in results if not result.ok}
    assert refused == {
        "NUL byte", "very long value", "internationalized domain", "unicode local part", "invalid: double dot",
        "invalid: no domain", "invalid: two at signs", "phone with letters", "phone garbage",
    }
    # The existing members' PATCHes went in one batch operation.
    assert calls(sandbox)["POST /batches"] == 1
    # Those refused on their second visit had landed as members the first time: the
    # refusal came from the update of an existing member.
    assert any(result.key in landed for result in results if not result.ok)
    members = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    assert members["xss1@example.com"]["merge_fields"]["FNAME"] == "<script>alert(1)</script>"
    assert all(member["status"] == "subscribed" for member in members.values())


@pytest.mark.integration
def test_new_members_get_the_status_for_new_records_and_without_one_are_not_created(sandbox):
    provider = mailchimp(sandbox, status_if_new="subscribed")
    results = provider.upsert_batch([
        OutgoingRecord(key=1, email="pend@example.com", fields={}, email_consent_if_new="pending"),
        OutgoingRecord(key=2, email="tx@example.com", fields={}, email_consent_if_new="transactional"),
        OutgoingRecord(key=3, email="unknown@example.com", fields={"FNAME": "U"}),
    ])
    assert statuses(sandbox) == {"pend@example.com": "pending", "tx@example.com": "transactional"}
    assert [result.ok for result in results] == [True, True, False]
    assert results[2].error_class == "not_created" and not results[2].retriable
    assert "Choose the status new members get on the sync page" in results[2].message


@pytest.mark.integration
def test_a_record_without_a_status_for_new_members_still_updates_an_existing_member(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="known@example.com", fields={"FNAME": "Old"})])
    (result,) = provider.upsert_batch([OutgoingRecord(key=1, email="known@example.com", fields={"FNAME": "New"})])
    assert result.ok
    (member,) = sandbox.mailchimp_members()
    assert (member["merge_fields"]["FNAME"], member["status"]) == ("New", "subscribed")


@pytest.mark.integration
@pytest.mark.parametrize("restriction", ["unsubscribed", "cleaned"])
def test_a_restriction_reaches_an_existing_subscribed_member(sandbox, restriction):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="in@example.com", fields={})])
    (result,) = provider.upsert_batch(
        [member_record(key=1, email="in@example.com", fields={}, email_consent=restriction)]
    )
    assert result.ok
    assert statuses(sandbox)["in@example.com"] == restriction


@pytest.mark.integration
def test_a_linked_member_whose_address_changed_is_updated_not_duplicated(sandbox):
    provider = mailchimp(sandbox)
    (old,) = provider.upsert_batch([member_record(key=1, email="old@example.com", fields={"FNAME": "Ann"})])
    (moved,) = provider.upsert_batch(
        [member_record(key=1, email="New@Example.com", fields={"FNAME": "Ann"}, external_id=old.external_id)]
    )
    assert moved.ok and moved.external_id == subscriber_hash("new@example.com")
    assert [member["email_address"] for member in sandbox.mailchimp_members()] == ["new@example.com"]


@pytest.mark.integration
def test_archive_keeps_the_member_and_erase_forgets_it_for_good(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=i, email=f"m{i}@example.com", fields={}) for i in range(2)])
    provider.archive(subscriber_hash("m0@example.com"))
    provider.erase("m1@example.com")
    provider.erase("never-synced@example.com")
    assert statuses(sandbox) == {"m0@example.com": "archived"}
    assert sandbox.mailchimp_forgotten() == [subscriber_hash("m1@example.com")]
    (again,) = provider.upsert_batch([member_record(key=1, email="m1@example.com", fields={})])
    assert not again.ok
    assert "permanently deleted" in again.message


@pytest.mark.integration
def test_find_person_reads_the_member_of_the_address_archived_or_not(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=i, email=f"m{i}@example.com", fields={"PHONE": "+14155550100"})
                           for i in range(2)])
    provider.archive(subscriber_hash("m1@example.com"))
    assert provider.find_person(email="M0@Example.com", phone=None) == [subscriber_hash("m0@example.com")]
    assert provider.find_person(email="m1@example.com", phone=None) == [subscriber_hash("m1@example.com")]
    assert provider.find_person(email="nobody@example.com", phone=None) == []
    # Mailchimp's API cannot search members by phone: those are found by their links.
    assert provider.find_person(email=None, phone="+14155550100") == []


@pytest.mark.integration
def test_erase_answers_a_summary_without_the_person_and_is_harmless_twice(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="ada@example.com", fields={})])
    first = provider.erase(subscriber_hash("ada@example.com"))
    assert first == {"request": "POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent",
                     "status": 204, "outcome": "erased"}
    again = provider.erase("ada@example.com")
    assert (again["status"], again["outcome"]) == (404, "already_gone")
    assert "ada" not in json.dumps([first, again])
    assert sandbox.mailchimp_members() == []


@pytest.mark.integration
def test_read_by_ids_accepts_hashes_or_addresses_and_leaves_unknown_ones_out(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=i, email=f"r{i}@example.com", fields={}) for i in range(2)])
    found = provider.read_by_ids([subscriber_hash("r0@example.com"), "r1@example.com", "nobody@example.com"])
    assert sorted(record.fields["email_address"] for record in found) == ["r0@example.com", "r1@example.com"]


@pytest.mark.integration
def test_reads_and_writes_complete_despite_20_percent_faults(sandbox):
    sandbox.seed(mailchimp_members=2500, random_seed=1)
    sandbox.faults(provider="mailchimp", rate=0.2, statuses=[429, 500, 502, 503], reset_rate=0.05, random_seed=11)
    provider = mailchimp(sandbox)
    results = provider.upsert_batch(
        [member_record(key=i, email=f"f{i}@example.com", fields={"FNAME": "F"}) for i in range(500)]
    )
    assert all(result.ok for result in results)
    for _ in range(3):
        records, _, _ = read(provider)
        assert len({record.external_id for record in records}) == 3000
    assert any(status != "200" for status in sandbox.stats()["statuses"]["mailchimp"])


@pytest.mark.integration
def test_the_concurrency_cap_keeps_parallel_workers_within_the_providers_limit(sandbox):
    sandbox.limits(mailchimp_max_connections=3)
    sandbox.faults(provider="mailchimp", latency_ms=100)
    ids = [f"c{i}@example.com" for i in range(9)]
    budget_key = f"test-{uuid.uuid4()}"

    def worker(email):
        config = ProviderConfig(base_url=sandbox.mailchimp_url, api_key=sandbox.mailchimp_key,
                                settings={"list_id": sandbox.list_id}, max_concurrency=3, budget_key=budget_key)
        return build_provider("mailchimp", config).read_by_ids([email])

    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=email, email=email, fields={}) for email in ids])
    sandbox.reset_stats()
    with ThreadPoolExecutor(max_workers=9) as pool:
        found = [record for records in pool.map(worker, ids) for record in records]
    assert len(found) == 9
    # The sandbox answers a fourth simultaneous request with 429: none was sent.
    assert sandbox.stats()["statuses"]["mailchimp"] == {"200": 9}


@pytest.mark.integration
def test_a_refused_key_raises_an_authentication_error_without_the_key(sandbox):
    with pytest.raises(AuthenticationError, match="API Key Invalid") as caught:
        read(mailchimp(sandbox, key="wrong-key-us1"))
    assert "wrong-key-us1" not in str(caught.value)


def patch_member(sandbox, email, **body) -> dict:
    """Change a member the way a person or Mailchimp itself does: through the API."""
    response = requests.patch(
        f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}/members/{subscriber_hash(email)}",
        json=body, auth=("someone", sandbox.mailchimp_key), timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.integration
def test_records_carry_the_members_contact_id_and_opt_in_time(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([
        member_record(key=1, email="in@example.com", fields={}),
        member_record(key=2, email="wait@example.com", fields={}, email_consent="pending"),
    ])
    records = {record.fields["email_address"]: record for record in read(provider)[0]}
    stored = {member["email_address"]: member for member in sandbox.mailchimp_members()}
    assert records["in@example.com"].stable_id == stored["in@example.com"]["contact_id"] != ""
    assert records["in@example.com"].opted_in_at == datetime.fromisoformat(stored["in@example.com"]["timestamp_opt"])
    assert records["wait@example.com"].opted_in_at is None
    assert read_member_stable_id(provider, "wait@example.com") == stored["wait@example.com"]["contact_id"]


def read_member_stable_id(provider, email) -> str:
    (record,) = provider.read_by_ids([email])
    return record.stable_id


@pytest.mark.integration
def test_an_address_changed_in_mailchimp_comes_back_under_a_new_id_with_the_same_stable_id(sandbox):
    provider = mailchimp(sandbox)
    (written,) = provider.upsert_batch([member_record(key=1, email="old@example.com", fields={"FNAME": "Ann"})])
    records, cursor, _ = read(provider)
    assert written.stable_id == records[0].stable_id != ""
    patch_member(sandbox, "old@example.com", email_address="new@example.com")
    (moved,) = read(provider, cursor)[0]
    assert moved.external_id == subscriber_hash("new@example.com") != written.external_id
    assert moved.stable_id == written.stable_id


@pytest.mark.integration
def test_a_member_archived_in_mailchimp_comes_in_the_delta_as_archived(sandbox):
    provider = mailchimp(sandbox, overlap_seconds=0)
    provider.upsert_batch([member_record(key=i, email=f"a{i}@example.com", fields={}) for i in range(2)])
    _, cursor, _ = read(provider)
    time.sleep(1.1)
    provider.archive(subscriber_hash("a1@example.com"))
    (archived,) = read(provider, cursor)[0]
    assert (archived.external_id, archived.archived) == (subscriber_hash("a1@example.com"), True)
    assert archived.modified_at == datetime.fromisoformat(stored(sandbox, "a1@example.com")["last_changed"])


def bulk_import(sandbox, emails) -> None:
    """Add members in one batch call: Mailchimp stamps them all with the same second."""
    response = requests.post(f"{sandbox.mailchimp_url}/lists/{sandbox.list_id}", timeout=60,
                             json={"members": [{"email_address": email, "status": "subscribed"} for email in emails]},
                             auth=("someone", sandbox.mailchimp_key))
    assert response.status_code == 200 and response.json()["total_created"] == len(emails), response.text


@pytest.mark.integration
def test_more_members_changed_in_one_second_than_a_page_are_paged_by_offset_within_it(sandbox):
    bulk_import(sandbox, [f"bulk{i}@example.com" for i in range(450)])
    assert len({member["last_changed"] for member in sandbox.mailchimp_members()}) == 1
    provider = mailchimp(sandbox, overlap_seconds=0)
    provider.max_page = 100
    records, cursor, pages = read(provider)
    assert len(records) == len({record.external_id for record in records}) == 450
    assert pages[0].total == 450
    # From the beginning (a full page of one second); by offset within it, 100 at a
    # time; then strictly after it.
    assert member_calls(sandbox) == 1 + math.ceil(450 / 100) + 1
    assert "tie" not in json.loads(cursor)


@pytest.mark.integration
def test_a_read_cut_short_within_one_second_while_members_leave_it_misses_and_repeats_nothing(sandbox):
    emails = [f"bulk{i:03}@example.com" for i in range(450)]
    bulk_import(sandbox, emails)
    provider = mailchimp(sandbox, overlap_seconds=0)
    provider.max_page = 100
    pages = provider.read_changed(None)
    committed = []
    for page in pages:
        committed += page.records
        if json.loads(page.cursor).get("tie", {}).get("offset") == 200:
            break
    pages.close()
    # Members read already are changed again, leaving the second: the rest move up.
    read_emails = [record.fields["email_address"] for record in committed[:20]]
    results = provider.upsert_batch([member_record(key=email, email=email, fields={"FNAME": "Again"})
                                     for email in read_emails])
    assert all(result.ok for result in results)
    rest, _, _ = read(provider, page.cursor)
    delivered = [(record.external_id, record.modified_at) for record in committed + rest]
    assert len(delivered) == len(set(delivered))
    latest = {(member["id"], datetime.fromisoformat(member["last_changed"])) for member in sandbox.mailchimp_members()}
    assert latest <= set(delivered)


@pytest.mark.integration
def test_an_explicit_opt_in_asks_an_unsubscribed_member_to_confirm(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="back@example.com", fields={})])
    set_status_in_mailchimp(sandbox, "back@example.com", "unsubscribed")
    sandbox.reset_stats()
    (result,) = provider.upsert_batch([member_record(key=1, email="back@example.com", fields={"FNAME": "B"},
                                                      email_consent="subscribed", explicit_opt_in=True)])
    assert result.ok
    assert statuses(sandbox) == {"back@example.com": "pending"}
    assert calls(sandbox) == {"POST /lists/{list_id}": 1, "PATCH /lists/{list_id}/members/{subscriber_hash}": 2}
    # The person confirms from Mailchimp's email: subscribed, with the time of the opt-in.
    sandbox.mailchimp_confirm("back@example.com")
    (record,) = provider.read_by_ids(["back@example.com"])
    assert record.fields["status"] == "subscribed"
    assert record.opted_in_at == datetime.fromisoformat(stored(sandbox, "back@example.com")["timestamp_opt"])


@pytest.mark.integration
@pytest.mark.parametrize("status, explicit", [("unsubscribed", False), ("cleaned", True), ("cleaned", False)])
def test_without_an_explicit_opt_in_or_for_a_bounced_address_nothing_loosens(sandbox, status, explicit):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="out@example.com", fields={})])
    set_status_in_mailchimp(sandbox, "out@example.com", status)
    (result,) = provider.upsert_batch([member_record(key=1, email="out@example.com", fields={"FNAME": "O"},
                                                      email_consent="subscribed", explicit_opt_in=explicit)])
    assert result.ok
    assert statuses(sandbox) == {"out@example.com": status}


@pytest.mark.integration
def test_an_explicit_opt_in_costs_nothing_for_a_member_already_subscribed_and_creates_new_ones_subscribed(sandbox):
    provider = mailchimp(sandbox)
    provider.upsert_batch([member_record(key=1, email="in@example.com", fields={})])
    sandbox.reset_stats()
    records = [member_record(key=email, email=email, fields={"FNAME": "X"}, email_consent="subscribed",
                              explicit_opt_in=True) for email in ("in@example.com", "new@example.com")]
    assert all(result.ok for result in provider.upsert_batch(records))
    assert statuses(sandbox) == {"in@example.com": "subscribed", "new@example.com": "subscribed"}
    assert calls(sandbox) == {"POST /lists/{list_id}": 1, "PATCH /lists/{list_id}/members/{subscriber_hash}": 1}


def test_mailchimp_writes_only_opt_outs_and_confirms_explicit_opt_ins_and_cannot_merge():
    assert MailchimpProvider.writable_consent_states == frozenset({"unsubscribed", "cleaned"})
    assert MailchimpProvider.explicit_opt_in_state == "pending"
    provider = MailchimpProvider(ProviderConfig(base_url="http://mc.invalid/3.0", api_key="k-us1"), http=None)
    with pytest.raises(MergeNotSupported):
        provider.merge_records("a", "b")


@pytest.mark.integration
def test_a_bulk_write_read_back_once_is_not_listed_again_by_later_reads(sandbox):
    # The watermark moves to Mailchimp's clock (the reply's Date) when the read began,
    # so the next read starts past members written long enough before it.
    provider = mailchimp(sandbox, overlap_seconds=1)
    for start in range(0, 2500, 500):
        provider.upsert_batch([member_record(key=i, email=f"echo{i}@example.com", fields={"FNAME": "E"})
                               for i in range(start, start + 500)])
    time.sleep(2.5)
    echoes, cursor, _ = read(provider)
    assert len(echoes) == 2500
    sandbox.reset_stats()
    again, _, _ = read(provider, cursor)
    assert again == []
    assert member_calls(sandbox) == 1


PATCH_ROUTE = "PATCH /lists/{list_id}/members/{subscriber_hash}"


def members_in_every_state(sandbox, hostile_contacts) -> list[OutgoingRecord]:
    """Seed members a PATCH meets in every state; return one linked record each, some calling for a follow-up."""
    nul = next(contact for contact in hostile_contacts if contact["why"] == "NUL byte")
    held = {"out": "unsubscribed", "bounce": "cleaned", "pend": "pending", "tx": "transactional",
            "back": "unsubscribed", "tag": "transactional", "clean": "transactional", "gone": "unsubscribed",
            "ghost": "unsubscribed", "nul": "unsubscribed"}
    # Gone and ghost are gone from Mailchimp since Syncapp last read them.
    seeded = mailchimp(sandbox).upsert_batch([
        member_record(key=name, email=f"{name}@example.com", fields={}, email_consent_if_new=status)
        for name, status in held.items() if name not in ("gone", "ghost")])
    assert all(result.ok for result in seeded)

    def record(name, fields, **values):
        return linked(f"{name}@example.com", key=name, fields=fields, **values)

    return [
        record("out", {"FNAME": "Out"}, email_consent="unsubscribed"),
        # An unsubscribe never turns a bouncing address into a merely unsubscribed one.
        record("bounce", {"FNAME": "Bounce"}, email_consent="unsubscribed"),
        # Decided on the operation's reply: a second PATCH.
        record("pend", {"FNAME": "Pend"}, email_consent="unsubscribed"),
        record("tx", {"FNAME": "Tx"}),
        record("back", {"FNAME": "Back"}, email_consent="subscribed", explicit_opt_in=True),
        record("tag", {"FNAME": "Tag", "tags": ["VIP"]}),
        record("clean", {"FNAME": "Clean"}, email_consent="cleaned"),
        # Gone since the last read: created again by the batch subscribe.
        record("gone", {"FNAME": "Gone"}),
        # Gone, and no status to create it with.
        record("ghost", {"FNAME": "Ghost"}, email_consent_if_new=None),
        record("nul", {"FNAME": nul["firstname"]}),
    ]


def outcomes(results, sandbox) -> tuple[list, dict]:
    written = [(result.key, result.ok, result.error_class, result.retriable, result.email_consent, result.fields,
                result.external_id) for result in results]
    members = {member["email_address"]: (member["status"], member["merge_fields"], member["tags"])
               for member in sandbox.mailchimp_members()}
    return written, members


@pytest.mark.integration
def test_more_than_three_member_patches_go_in_one_batch_operation_with_the_outcomes_of_single_ones(
        sandbox, hostile_contacts, monkeypatch):
    with monkeypatch.context() as single:
        single.setattr(mailchimp_module, "MAX_SINGLE_UPDATES", 100)
        records = members_in_every_state(sandbox, hostile_contacts)
        sandbox.reset_stats()
        alone = outcomes(mailchimp(sandbox).upsert_batch(records), sandbox)
        # Every record but gone (the batch subscribe creates it again), and two follow-ups.
        assert calls(sandbox)[PATCH_ROUTE] == len(records) - 1 + 2
        assert "POST /batches" not in calls(sandbox)
    sandbox.reset()
    records = members_in_every_state(sandbox, hostile_contacts)
    sandbox.reset_stats()

    results = mailchimp(sandbox).upsert_batch(records)

    assert outcomes(results, sandbox) == alone
    made = calls(sandbox)
    assert made["POST /batches"] == 1 and made["GET /batch-results/{batch_id}"] == 1
    assert made["GET /batches/{batch_id}"] >= 1
    # The follow-ups the replies called for: pend's opt-out, back's confirmation, tag's tags.
    assert made[PATCH_ROUTE] == 2 and made["POST /lists/{list_id}/members/{subscriber_hash}/tags"] == 1
    by_key = {result.key: result for result in results}
    assert statuses(sandbox) == {"out@example.com": "unsubscribed", "bounce@example.com": "cleaned",
                                 "pend@example.com": "unsubscribed", "tx@example.com": "transactional",
                                 "back@example.com": "pending", "tag@example.com": "transactional",
                                 "clean@example.com": "cleaned", "nul@example.com": "unsubscribed",
                                 "gone@example.com": "subscribed"}
    assert stored(sandbox, "bounce@example.com")["merge_fields"]["FNAME"] == "Bounce"
    assert stored(sandbox, "tag@example.com")["tags"] == ["VIP"]
    assert all(by_key[name].ok for name in ("out", "bounce", "pend", "tx", "back", "tag", "clean"))
    # Created again, with the status the engine gave for new records.
    assert by_key["gone"].ok and by_key["gone"].external_id == subscriber_hash("gone@example.com")
    assert (by_key["ghost"].ok, by_key["ghost"].error_class) == (False, "not_created")
    assert (by_key["nul"].ok, by_key["nul"].error_class, by_key["nul"].retriable) == (False, "Invalid Resource", False)
    assert by_key["nul"].message.startswith("Mailchimp refused nul@example.com")


@pytest.mark.integration
def test_one_upsert_of_1000_members_costs_two_batch_subscribes_and_two_batch_operations(sandbox):
    # 600 members exist already; of those, 20 opted out in the hub and 10 gain a tag:
    # their follow-ups go in a second batch operation, not 30 single calls.
    provider = mailchimp(sandbox)
    emails = [f"g{number}@example.com" for number in range(provider.push_group)]
    provider.upsert_batch([member_record(key=number, email=email, fields={"FNAME": "Old"})
                           for number, email in enumerate(emails[:600])])
    set_status_in_mailchimp(sandbox, emails[0], "cleaned")
    sandbox.reset_stats()
    records = [
        linked(email, key=number, fields={"FNAME": f"N{number}", **({"tags": ["VIP"]} if number % 60 == 1 else {})},
               email_consent="unsubscribed" if number % 30 == 0 else None)
        for number, email in enumerate(emails[:600])
    ] + [member_record(key=number, email=email, fields={"FNAME": f"N{number}"})
         for number, email in enumerate(emails[600:], 600)]

    results = provider.upsert_batch(records)

    assert [result.key for result in results] == list(range(1000)) and all(result.ok for result in results)
    made = calls(sandbox)
    assert made["POST /lists/{list_id}"] == 2 and made["POST /batches"] == 2
    assert PATCH_ROUTE not in made and "POST /lists/{list_id}/members/{subscriber_hash}/tags" not in made
    held = statuses(sandbox)
    # The cleaned member stays cleaned: an opt-out never loosens a bounce into an unsubscribe.
    assert held[emails[0]] == "cleaned" and results[0].email_consent == "cleaned"
    assert {email for email, status in held.items() if status == "unsubscribed"} == {
        emails[number] for number in range(30, 600, 30)}
    assert results[30].email_consent == "unsubscribed"
    assert stored(sandbox, emails[61])["tags"] == ["VIP"]
    assert stored(sandbox, emails[999])["merge_fields"]["FNAME"] == "N999"


@pytest.mark.integration
def test_follow_ups_in_a_batch_operation_have_the_outcomes_of_single_ones(sandbox, hostile_contacts, monkeypatch):
    with monkeypatch.context() as single:
        single.setattr(mailchimp_module, "MAX_SINGLE_UPDATES", 100)
        records = members_in_every_state(sandbox, hostile_contacts)
        alone = outcomes(mailchimp(sandbox).upsert_batch(records), sandbox)
    sandbox.reset()
    records = members_in_every_state(sandbox, hostile_contacts)
    sandbox.reset_stats()
    # Three members call for follow-ups (pend's opt-out, back's confirmation, tag's tags):
    # above a threshold of one, pend's and tag's go in a second batch operation; back's
    # explicit opt-in goes alone, as a batch that outlasts its wait may still run later.
    monkeypatch.setattr(mailchimp_module, "MAX_SINGLE_UPDATES", 1)

    results = mailchimp(sandbox).upsert_batch(records)

    assert outcomes(results, sandbox) == alone
    made = calls(sandbox)
    assert made["POST /batches"] == 2 and made["GET /batch-results/{batch_id}"] == 2
    assert made[PATCH_ROUTE] == 1 and "POST /lists/{list_id}/members/{subscriber_hash}/tags" not in made


@pytest.mark.integration
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_up_to_three_member_patches_stay_single(sandbox, count):
    provider = mailchimp(sandbox)
    emails = [f"tx{number}@example.com" for number in range(count)]
    provider.upsert_batch([member_record(key=email, email=email, fields={}, email_consent_if_new="transactional")
                           for email in emails])
    sandbox.reset_stats()
    results = provider.upsert_batch([linked(email, key=email, fields={"FNAME": "T"})
                                     for email in emails])
    assert all(result.ok for result in results)
    # The batch subscribe that finds them, then their PATCHes.
    if count <= 3:
        assert calls(sandbox) == {"POST /lists/{list_id}": 1, PATCH_ROUTE: count}
    else:
        assert calls(sandbox) == {"POST /lists/{list_id}": 1, "POST /batches": 1, "GET /batches/{batch_id}": 1,
                                  "GET /batch-results/{batch_id}": 1}
    assert {member["merge_fields"]["FNAME"] for member in sandbox.mailchimp_members()} == {"T"}


@pytest.mark.integration
def test_a_batch_operation_that_does_not_finish_in_time_leaves_retriable_failures(sandbox):
    provider = mailchimp(sandbox, batch_timeout_seconds=1)
    emails = [f"tx{number}@example.com" for number in range(5)]
    provider.upsert_batch([member_record(key=email, email=email, fields={}, email_consent_if_new="transactional")
                           for email in emails])
    records = [linked(email, key=email, fields={"FNAME": "T"}) for email in emails]
    sandbox.control("mailchimp", "batch-delay", {"milliseconds": 60_000})
    sandbox.reset_stats()
    started = time.monotonic()

    results = provider.upsert_batch(records)

    assert time.monotonic() - started < 10
    assert [(result.key, result.ok, result.retriable, result.error_class) for result in results] == [
        (email, False, True, "BatchIncomplete") for email in emails]
    assert "did not finish within 1 s" in results[0].message
    made = calls(sandbox)
    assert made["POST /batches"] == 1 and made["GET /batches/{batch_id}"] >= 1
    assert "GET /batch-results/{batch_id}" not in made
    sandbox.control("mailchimp", "batch-delay", {"milliseconds": 0})
    assert all(result.ok for result in provider.upsert_batch(records))


@pytest.mark.integration
def test_moved_members_in_a_batch_operation_are_addressed_at_their_old_id(sandbox):
    provider = mailchimp(sandbox)
    old = provider.upsert_batch([member_record(key=number, email=f"old{number}@example.com", fields={})
                                 for number in range(4)])
    # The fifth's old id is gone: it is created at its new address.
    old_ids = [result.external_id for result in old] + [subscriber_hash("old4@example.com")]
    sandbox.reset_stats()
    results = provider.upsert_batch([
        member_record(key=number, email=f"New{number}@Example.com", fields={"FNAME": "Moved"},
                      external_id=old_ids[number])
        for number in range(5)])
    assert all(result.ok for result in results)
    assert [result.external_id for result in results] == [subscriber_hash(f"new{n}@example.com") for n in range(5)]
    assert sorted(member["email_address"] for member in sandbox.mailchimp_members()) == [
        f"new{number}@example.com" for number in range(5)]
    assert calls(sandbox)["POST /batches"] == 1
