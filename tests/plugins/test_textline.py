"""The Textline client against its emulator over loopback: a provider keyed by phone works through the interface."""
from __future__ import annotations

import time

import pytest

from connections.providers.base import AuthenticationError, OutgoingRecord, ProviderError
from connections.registry import build_provider, provider_for
from tests.plugins.fixtures import textline_config
from tests.plugins.textline import TextlineProvider

pytestmark = pytest.mark.integration


@pytest.fixture
def textline(textline_sandbox, textline_registered) -> TextlineProvider:
    """A client of the sandbox's Textline account, built by the registry as a sync builds it."""
    provider = build_provider("textline", textline_config(textline_sandbox))
    assert isinstance(provider, TextlineProvider)
    return provider


def record(key, phone: str, **fields) -> OutgoingRecord:
    # An email and an email consent, which Textline has no place for: they must be ignored.
    return OutgoingRecord(key=key, email=f"person{key}@example.com", phone=phone, fields=fields,
                          email_consent="subscribed", email_consent_if_new="subscribed")


def stored(sandbox) -> dict[str, dict]:
    """The sandbox's subscribers by phone."""
    return {item["phone_number"]: item for item in sandbox.control("textline", "subscribers")["subscribers"]}


def test_the_client_declares_a_system_keyed_by_phone_without_email():
    assert TextlineProvider.keys.phone_field == "phone_number" and TextlineProvider.keys.email_field == ""
    assert TextlineProvider.keys.to_create == TextlineProvider.keys.to_update == ("phone",)
    assert TextlineProvider.writable_consent_states == frozenset()


def test_an_upsert_creates_by_phone_and_the_same_phone_again_updates_it(textline, textline_sandbox):
    created = textline.upsert_batch([record(1, "+14155550100", first_name="Ann", sms_status="subscribed")])
    assert created[0].ok and created[0].fields == {"phone_number": "+14155550100", "first_name": "Ann",
                                                   "sms_status": "subscribed"}
    updated = textline.upsert_batch([record(1, "+14155550100", last_name="Lee", sms_status="unsubscribed")])
    assert updated[0].ok and updated[0].external_id == created[0].external_id
    ann = stored(textline_sandbox)
    assert list(ann) == ["+14155550100"]
    assert (ann["+14155550100"]["first_name"], ann["+14155550100"]["last_name"],
            ann["+14155550100"]["sms_status"]) == ("Ann", "Lee", "unsubscribed")


def test_an_invalid_phone_is_rejected_alone_and_the_rest_written(textline, textline_sandbox):
    results = textline.upsert_batch([record(1, "+14155550100", sms_status="subscribed"),
                                     record(2, "415-555-0101", sms_status="subscribed"),
                                     record(3, "", sms_status="subscribed"),
                                     record(4, "+442079460000", sms_status="subscribed")])
    assert [result.key for result in results] == [1, 2, 3, 4]
    assert [result.ok for result in results] == [True, False, False, True]
    assert {results[1].error_class, results[2].error_class} == {"rejected"}
    assert "415-555-0101" in results[1].message and "invalid_phone_number" in results[1].message
    assert not results[1].retriable
    assert set(stored(textline_sandbox)) == {"+14155550100", "+442079460000"}


def test_a_new_subscriber_needs_an_sms_status_and_an_existing_one_keeps_theirs(textline, textline_sandbox):
    refused, = textline.upsert_batch([record(1, "+14155550100", first_name="Ann")])
    assert (refused.ok, refused.error_class) == (False, "rejected")
    assert "sms_status is required for a new subscriber" in refused.message
    assert stored(textline_sandbox) == {}
    textline.upsert_batch([record(1, "+14155550100", sms_status="unsubscribed")])
    kept, = textline.upsert_batch([record(1, "+14155550100", first_name="Ann", sms_status=None)])
    assert kept.ok and stored(textline_sandbox)["+14155550100"]["sms_status"] == "unsubscribed"


def test_a_full_read_pages_by_id_and_a_delta_after_an_edit_returns_the_edited_record(textline_sandbox,
                                                                                    textline_registered):
    # No overlap: the watermark alone must reach the edit.
    provider = build_provider("textline", textline_config(textline_sandbox, overlap_seconds=0))
    for start in (0, 100, 200):
        provider.upsert_batch([record(n, f"+1415555{n:04d}", first_name=f"P{n}", sms_status="subscribed")
                               for n in range(start, min(start + 100, 250))])
    # Textline gives each change its own millisecond, running ahead of the wall clock in a
    # burst; a read begun before the last of them would (rightly) keep its watermark at its
    # own start, and the delta would read them all again.
    time.sleep(0.5)
    pages = list(provider.read_changed(None))
    assert [len(page.records) for page in pages] == [100, 100, 50]
    ids = [int(item.external_id) for page in pages for item in page.records]
    assert ids == sorted(ids) and len(set(ids)) == 250
    first = pages[0].records[0]
    assert set(first.fields) == {"phone_number", "first_name", "last_name", "sms_status"}
    assert first.modified_at is not None and first.modified_at.tzinfo is not None

    edited = textline_sandbox.control("textline", "subscribers",
                                      {"phone_number": first.fields["phone_number"], "sms_status": "unsubscribed"})
    delta = {item.external_id: item for page in provider.read_changed(pages[-1].cursor) for item in page.records}
    assert delta[str(edited["id"])].fields["sms_status"] == "unsubscribed"
    # Besides the edit, only the newest record, at the watermark itself (updated_after is inclusive).
    assert set(delta) == {str(edited["id"]), pages[-1].records[-1].external_id}


def test_a_read_resumes_from_the_cursor_of_any_page(textline, textline_sandbox):
    textline.upsert_batch([record(n, f"+1415555{n:04d}", sms_status="subscribed") for n in range(100)])
    textline.upsert_batch([record(n, f"+1415555{n:04d}", sms_status="subscribed") for n in range(100, 150)])
    first = next(textline.read_changed(None))
    rest = [item.external_id for page in textline.read_changed(first.cursor) for item in page.records]
    assert len(rest) == 50 and not set(rest) & {item.external_id for item in first.records}


def test_read_by_ids_leaves_unknown_ids_out(textline):
    ann, bob = textline.upsert_batch([record(1, "+14155550100", sms_status="subscribed"),
                                      record(2, "+14155550101", sms_status="unsubscribed")])
    found = textline.read_by_ids([bob.external_id, "999999", "not-an-id", ann.external_id])
    assert sorted(item.external_id for item in found) == sorted([ann.external_id, bob.external_id])
    assert {item.fields["phone_number"]: item.fields["sms_status"] for item in found} == {
        "+14155550100": "subscribed", "+14155550101": "unsubscribed"}


def test_archive_and_erase_delete_the_subscriber_and_tolerate_one_gone(textline, textline_sandbox):
    ann, bob = textline.upsert_batch([record(1, "+14155550100", sms_status="subscribed"),
                                      record(2, "+14155550101", sms_status="subscribed")])
    textline.archive(ann.external_id)
    textline.archive(ann.external_id)
    assert textline.erase(bob.external_id) == {"request": "DELETE /subscribers/{id}", "status": 204,
                                               "outcome": "erased"}
    assert textline.erase(bob.external_id)["outcome"] == "already_gone"
    assert stored(textline_sandbox) == {}


def test_a_person_is_found_by_phone_only(textline):
    ann, = textline.upsert_batch([record(1, "+14155550100", sms_status="subscribed")])
    assert textline.find_person(email="person1@example.com", phone="+14155550100") == [ann.external_id]
    assert textline.find_person(email="person1@example.com", phone=None) == []


def test_a_wrong_key_is_an_authentication_error(textline_sandbox, textline_registered):
    provider = build_provider("textline", textline_config(textline_sandbox, key="not-the-key"))
    with pytest.raises(AuthenticationError) as reading:
        list(provider.read_changed(None))
    with pytest.raises(AuthenticationError):
        provider.upsert_batch([record(1, "+14155550100", sms_status="subscribed")])
    assert reading.value.status == 401 and "not-the-key" not in str(reading.value)


def test_a_request_textline_refuses_whole_says_why(textline):
    with pytest.raises(ProviderError, match=r"HTTP 404: no subscriber with id 12345 \(not_found\)"):
        textline._call("GET", "/subscribers/12345")


def test_discovery_lists_the_four_fields(textline):
    fields = {field.name: field for field in textline.discover_fields()}
    assert list(fields) == ["phone_number", "first_name", "last_name", "sms_status"]
    assert (fields["phone_number"].kind, fields["phone_number"].required) == ("phone", True)
    assert (fields["sms_status"].kind, fields["sms_status"].options) == ("consent", ("subscribed", "unsubscribed"))


def test_a_connection_row_to_the_sandbox_reaches_textline(textline_connection):
    provider = provider_for(textline_connection)
    assert isinstance(provider, TextlineProvider)
    assert [field.name for field in provider.discover_fields()][0] == "phone_number"
