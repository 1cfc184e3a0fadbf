"""ActiveCampaign: the client's parsing, consent rule and errors, then the client against the sandbox process."""
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connections.forms import ConnectionForm
from connections.providers.activecampaign import (
    ActiveCampaignProvider,
    IdKeysetRead,
    _by_size,
    _list_status_to_write,
    _text,
    error_summary,
    field_name,
    parse_time,
    perstag_for,
)
from connections.providers.base import (
    AuthenticationError,
    FieldCreationNotSupported,
    OutgoingRecord,
    ProviderConfig,
    ProviderError,
    RemoteRecord,
)
from connections.providers.cursors import CursorStuck, InvalidCursor, epoch_ms
from connections.registry import build_provider
from tests.connections.loopback import LoopbackServer, Reply

TOKEN = "ac-secret-token-9f2e1"


def config(base_url="https://acme.api-us1.com/api/3", **settings) -> ProviderConfig:
    return ProviderConfig(base_url=base_url, api_key=TOKEN, settings={"list_id": "1", **settings},
                          budget_key=f"test-{uuid.uuid4()}")


# The API root and credentials


@pytest.mark.parametrize("entered", ["https://acme.api-us1.com", "https://acme.api-us1.com/",
                                     "https://acme.api-us1.com/api/3", "https://acme.api-us1.com/api/3/"])
def test_the_api_root_is_the_accounts_with_api_3_added_where_missing(entered):
    assert ActiveCampaignProvider.base_url_for(config(entered)) == "https://acme.api-us1.com/api/3"


def test_without_a_base_url_the_client_says_where_to_find_it():
    with pytest.raises(ProviderError, match="Settings > Developer"):
        ActiveCampaignProvider.base_url_for(config(""))


def test_requests_carry_the_key_in_the_api_token_header():
    assert ActiveCampaignProvider.auth_headers(config()) == {"Api-Token": TOKEN}
    with pytest.raises(AuthenticationError):
        ActiveCampaignProvider.auth_headers(ProviderConfig(base_url="https://acme.api-us1.com"))


def test_the_list_is_required():
    provider = ActiveCampaignProvider(ProviderConfig(base_url="https://acme.api-us1.com", api_key=TOKEN), http=None)
    with pytest.raises(ProviderError, match="list_id"):
        assert provider.list_id


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "refusal"), [
    ("", "required"),
    ("http://acme.api-us1.com/api/3", "Use https"),
    ("https://169.254.169.254/api/3", "private or local network"),
])
def test_the_connection_form_refuses_a_missing_insecure_or_private_base_url(url, refusal, resolver):
    resolver.answer("acme.api-us1.com", ["93.184.216.34"])
    form = ConnectionForm(data={"name": "ActiveCampaign", "provider": "activecampaign", "base_url": url,
                                "settings": '{"list_id": "1"}', "default_phone_region": "US", "scopes": "",
                                "status": "connected"})
    assert not form.is_valid()
    assert refusal in " ".join(form.errors["base_url"])


# Errors: no common shape


def test_an_error_message_is_read_from_its_message():
    assert error_summary({"message": "No Result found for Subscriber with id 9"}) == \
        "No Result found for Subscriber with id 9"


def test_errors_give_their_title_detail_and_code():
    body = {"errors": [{"title": "Email address already exists in the system.", "detail": "", "code": "duplicate",
                        "source": {"pointer": "/data/attributes/email"}},
                       {"title": "Invalid phone", "detail": "Too long", "code": "field_invalid"}]}
    assert error_summary(body) == ("Email address already exists in the system. (duplicate); "
                                   "Invalid phone: Too long (field_invalid)")


def test_errors_keyed_by_field_and_plain_text_are_read_too():
    assert error_summary({"errors": {"email": "is invalid"}}) == "email: is invalid"
    assert error_summary("  Service Unavailable ") == "Service Unavailable"


def test_a_long_error_is_cut_short():
    summary = error_summary({"message": "x" * 2000})
    assert len(summary) == 300 and summary.endswith("…")


def client(server: LoopbackServer) -> ActiveCampaignProvider:
    provider = build_provider("activecampaign", config(server.url), max_retries=0)
    assert isinstance(provider, ActiveCampaignProvider)
    return provider


def test_a_refusal_is_raised_in_activecampaigns_words_without_the_key():
    body = {"errors": [{"title": f"Bad key {TOKEN} for contact", "code": "invalid"}]}
    with (LoopbackServer({("DELETE", "/api/3/contacts/7"): Reply(400, body)}) as server,
          pytest.raises(ProviderError) as caught):
        client(server).archive("7")
    message = str(caught.value)
    assert "HTTP 400" in message and "Bad key [redacted] for contact (invalid)" in message
    assert TOKEN not in message and caught.value.status == 400


def test_a_refused_key_is_an_authentication_error():
    with (LoopbackServer({("GET", "/api/3/fields"): Reply(403, {"message": "No Result found"})}) as server,
          pytest.raises(AuthenticationError)):
        client(server).discover_fields()


def test_a_plain_text_refusal_keeps_its_text():
    with (LoopbackServer({("DELETE", "/api/3/contacts/7"): Reply(400, b"Bad request, try later")}) as server,
          pytest.raises(ProviderError, match="Bad request, try later")):
        client(server).archive("7")


def test_erasing_a_contact_already_gone_is_no_error():
    with LoopbackServer({("DELETE", "/api/3/contacts/7"): Reply(404, {"message": "No Result found"})}) as server:
        assert client(server).erase("7") == {"request": "DELETE /contacts/{id}", "status": 404,
                                             "outcome": "already_gone"}


def test_an_unknown_bulk_import_state_is_waited_on_and_a_dead_import_is_transient():
    routes = {("POST", "/api/3/import/bulk_import"): Reply(200, {"success": 1, "batchId": "b1"}),
              ("GET", "/api/3/import/info"): Reply(200, {"status": "failed"})}
    waits = []
    with LoopbackServer(routes) as server:
        provider = client(server)
        provider.sleep = waits.append
        with pytest.raises(ProviderError, match="ended failed") as caught:
            provider._run_import([{"email": "a@example.com"}])
    assert caught.value.retriable and waits == [0.5]


def test_imports_are_split_to_stay_within_the_payload_limit():
    entries = [{"email": f"p{n}@example.com", "first_name": "x" * 100_000} for n in range(9)]
    chunks = _by_size(entries, 399_000)
    assert [len(chunk) for chunk in chunks] == [3, 3, 3]
    assert all(len(json.dumps({"contacts": chunk})) <= 400_000 for chunk in chunks)
    assert _by_size(entries[:1], 10) == [entries[:1]]


# Fields


def test_custom_fields_are_named_by_their_personalization_tag_else_their_id():
    assert field_name({"id": "4", "perstag": "COMPANY_SIZE"}) == "COMPANY_SIZE"
    assert field_name({"id": "4", "perstag": "%COMPANY_SIZE%"}) == "COMPANY_SIZE"
    assert field_name({"id": "4", "perstag": ""}) == "field:4"


def test_a_new_fields_tag_comes_from_its_label_and_is_unique():
    assert perstag_for("Company size", set()) == "COMPANY_SIZE"
    assert perstag_for("Company size", {"COMPANY_SIZE", "COMPANY_SIZE_2"}) == "COMPANY_SIZE_3"
    assert perstag_for("Größe", set()) == "GR_SSE"
    assert perstag_for("名前", set()) == "FIELD"


def test_kinds_without_a_field_type_are_refused():
    provider = ActiveCampaignProvider(config(), http=None)
    with pytest.raises(FieldCreationNotSupported, match="tags"):
        provider.create_field(label="Labels", kind="tags")


def test_values_are_sent_as_text_and_choices_joined_as_activecampaign_stores_them():
    assert _text(None) == ""
    assert _text(True) == "1"
    assert _text(42) == "42"
    assert _text(["a", "b"]) == "||a||b||"
    assert _text([]) == ""


def test_times_keep_their_offset():
    moment = parse_time("2018-09-28T17:30:52-05:00")
    assert moment == datetime(2018, 9, 28, 22, 30, 52, tzinfo=UTC)
    assert parse_time("0000-00-00 00:00:00") is None and parse_time(None) is None


# The consent rule


def outgoing(**values) -> OutgoingRecord:
    return OutgoingRecord(key=1, email="ann@example.com", fields={}, **values)


@pytest.mark.parametrize(("record", "status"), [
    (outgoing(email_consent_if_new="subscribed"), "1"),
    (outgoing(email_consent_if_new="unsubscribed"), "2"),
    (outgoing(email_consent_if_new="cleaned"), "2"),
    # Off the list: the API cannot set "unconfirmed", and transactional is no marketing.
    (outgoing(email_consent_if_new="pending"), None),
    (outgoing(email_consent_if_new="transactional"), None),
    (outgoing(), None),
    # A caller that decided only the state to hold.
    (outgoing(email_consent="subscribed"), "1"),
])
def test_a_contact_new_to_the_list_gets_the_status_for_new_records(record, status):
    assert _list_status_to_write(record, new_to_list=True) == status


@pytest.mark.parametrize(("record", "status"), [
    (outgoing(email_consent="unsubscribed", email_consent_if_new="unsubscribed"), "2"),
    (outgoing(email_consent="cleaned", email_consent_if_new="cleaned"), "2"),
    # Never subscribed again by a field sync, whatever is chosen for new records...
    (outgoing(email_consent="subscribed", email_consent_if_new="subscribed"), None),
    (outgoing(email_consent_if_new="subscribed"), None),
    # ...only by an explicit opt-in newer than the opt-out.
    (outgoing(email_consent="subscribed", explicit_opt_in=True, external_id="7"), "1"),
])
def test_a_contact_on_the_list_is_only_unsubscribed_or_explicitly_opted_in(record, status):
    assert _list_status_to_write(record, new_to_list=False) == status


def test_activecampaign_declares_what_its_list_status_can_hold():
    assert ActiveCampaignProvider.writable_consent_states == frozenset({"unsubscribed"})
    assert ActiveCampaignProvider.explicit_opt_in_state == "subscribed"
    assert ActiveCampaignProvider.new_record_consent_states == ("subscribed",)
    assert (ActiveCampaignProvider.max_batch, ActiveCampaignProvider.max_page) == (250, 100)
    assert ActiveCampaignProvider.rate_limit == (5, 1)


# The read's cursor

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return epoch_ms(moment)


def record(contact_id: int, modified: datetime | None) -> RemoteRecord:
    return RemoteRecord(external_id=str(contact_id), fields={}, modified_at=modified)


def test_a_full_read_pages_by_id_and_ends_at_the_newest_change_read():
    read = IdKeysetRead.open(None, now_ms=ms(T0))
    assert read.since is None and read.after is None
    read.page_done([record(3, T0 - timedelta(days=2)), record(9, T0 - timedelta(hours=1))], more=True)
    resumed = IdKeysetRead.open(read.cursor(), now_ms=ms(T0 + timedelta(minutes=5)))
    assert (resumed.since, resumed.after, resumed.started) == (None, "9", ms(T0))
    resumed.page_done([record(12, T0 - timedelta(days=9))], more=False)
    assert json.loads(resumed.cursor()) == {"v": 1, "since": ms(T0 - timedelta(hours=1))}


def test_the_watermark_is_never_later_than_when_the_read_began():
    # A contact edited behind the read's position is reached by the next read: its change
    # is later than the read's start, which the watermark does not pass.
    read = IdKeysetRead.open(None, now_ms=ms(T0))
    read.page_done([record(1, T0 + timedelta(seconds=40))], more=False)
    assert json.loads(read.cursor())["since"] == ms(T0)


def test_a_delta_that_finds_nothing_keeps_its_watermark_and_a_full_read_of_nothing_starts_from_its_start():
    delta = IdKeysetRead.open(json.dumps({"v": 1, "since": ms(T0)}), now_ms=ms(T0 + timedelta(hours=1)))
    delta.page_done([], more=False)
    assert json.loads(delta.cursor())["since"] == ms(T0)
    empty = IdKeysetRead.open(None, now_ms=ms(T0))
    empty.page_done([], more=False)
    assert json.loads(empty.cursor())["since"] == ms(T0)


def test_records_read_again_in_the_overlap_do_not_move_the_watermark_back():
    delta = IdKeysetRead.open(json.dumps({"v": 1, "since": ms(T0)}), now_ms=ms(T0 + timedelta(hours=1)))
    delta.page_done([record(5, T0 - timedelta(seconds=10))], more=False)
    assert json.loads(delta.cursor())["since"] == ms(T0)


def test_a_finished_read_moves_its_watermark_to_activecampaigns_clock_when_it_began():
    delta = IdKeysetRead.open(json.dumps({"v": 1, "since": ms(T0)}), now_ms=ms(T0 + timedelta(hours=1)))
    delta.began_by_provider(ms(T0 + timedelta(hours=1, seconds=2)))
    delta.page_done([record(5, T0 + timedelta(minutes=1))], more=False)
    assert json.loads(delta.cursor())["since"] == ms(T0 + timedelta(hours=1, seconds=2))


def test_a_read_resumed_after_an_id_keeps_its_watermark_bounded_by_when_it_first_began():
    resumed = IdKeysetRead.open(json.dumps({"v": 1, "since": ms(T0), "after": "9", "started": ms(T0),
                                            "newest": ms(T0)}), now_ms=ms(T0 + timedelta(hours=1)))
    resumed.began_by_provider(ms(T0 + timedelta(hours=1)))
    resumed.page_done([record(12, T0 - timedelta(minutes=1))], more=False)
    assert json.loads(resumed.cursor())["since"] == ms(T0)


def test_a_watermark_ahead_of_our_clock_is_never_moved_back():
    # Set by ActiveCampaign's clock, ahead of ours: going back would list again what was read.
    delta = IdKeysetRead.open(json.dumps({"v": 1, "since": ms(T0 + timedelta(minutes=5))}), now_ms=ms(T0))
    delta.page_done([], more=False)
    assert json.loads(delta.cursor())["since"] == ms(T0 + timedelta(minutes=5))


def test_a_page_that_does_not_move_past_the_last_id_is_stuck():
    read = IdKeysetRead.open(json.dumps({"v": 1, "since": None, "after": "9", "started": ms(T0), "newest": None}),
                             now_ms=ms(T0))
    with pytest.raises(CursorStuck):
        read.page_done([record(9, T0)], more=True)


@pytest.mark.parametrize("cursor", ["not json", json.dumps({"v": 2, "since": 1}),
                                    json.dumps({"v": 1, "since": "yesterday"}),
                                    json.dumps({"v": 1, "since": 1, "after": "x9", "started": 1})])
def test_a_cursor_it_cannot_read_asks_for_a_full_resync(cursor):
    with pytest.raises(InvalidCursor, match="full resync"):
        IdKeysetRead.open(cursor, now_ms=0)


class RecordingHttp:
    """Stands in for the HTTP client: answers each GET with the next canned reply, remembering its parameters."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.calls: list[tuple[str, str, dict]] = []

    def json(self, method, path, params=None, **kwargs):
        self.calls.append((method, path, dict(params or {})))
        return self.replies.pop(0)

    def json_dated(self, method, path, params=None, **kwargs):
        # Canned replies carry no Date header.
        return self.json(method, path, params=params, **kwargs), None


def contact(contact_id: int, udate: str) -> dict:
    return {"id": str(contact_id), "email": f"c{contact_id}@example.com", "firstName": "", "lastName": "",
            "phone": "", "udate": udate}


def test_a_delta_read_filters_from_the_watermark_less_the_overlap_and_pages_by_id():
    page = {"contacts": [contact(n, "2024-05-01T07:00:00-05:00") for n in range(101, 201)], "meta": {"total": "150"}}
    http = RecordingHttp(page, {"contacts": [contact(201, "2024-05-01T07:00:05-05:00")], "meta": {"total": "150"}})
    provider = ActiveCampaignProvider(config(overlap_seconds=30), http, clock=lambda: T0.timestamp() + 3600)
    pages = list(provider.read_changed(json.dumps({"v": 1, "since": ms(T0)})))
    first, second = (params for _, _, params in http.calls)
    assert first == {"limit": 100, "orders[id]": "ASC", "include": "contactLists,fieldValues,contactTags",
                     "filters[updated_after]": "2024-05-01T11:59:30+00:00"}
    assert second["id_greater"] == "200" and second["filters[updated_after]"] == first["filters[updated_after]"]
    assert [len(page.records) for page in pages] == [100, 1] and pages[0].total == 150
    assert json.loads(pages[-1].cursor) == {"v": 1, "since": ms(T0 + timedelta(seconds=5))}


def test_a_reply_without_side_loads_states_nothing_of_tags_status_or_custom_fields():
    http = RecordingHttp({"contacts": [contact(1, "2024-05-01T07:00:00-05:00")]})
    [record] = ActiveCampaignProvider(config(), http).read_by_ids(["1"])
    assert set(record.fields) == {"email", "firstName", "lastName", "phone"}
    assert http.calls == [("GET", "/contacts", {"ids": "1", "limit": 100,
                                                "include": "contactLists,fieldValues,contactTags"})]


def test_side_loads_give_the_list_status_the_custom_fields_and_the_tag_names():
    fields = {"fields": [{"id": "1", "title": "Company", "type": "text", "perstag": "COMPANY"},
                         {"id": "2", "title": "Birthday", "type": "date", "perstag": "BIRTHDAY"}],
              "meta": {"total": "2"}}
    page = {"contacts": [contact(1, "2024-05-01T07:00:00-05:00"), contact(2, "2024-05-01T07:00:00-05:00")],
            "contactLists": [{"contact": "1", "list": "1", "status": "2"},
                             {"contact": "2", "list": "9", "status": "1"}],
            "fieldValues": [{"contact": "1", "field": "1", "value": "Acme"}],
            "contactTags": [{"contact": "1", "tag": "5"}, {"contact": "1", "tag": "6"}]}
    tags = {"tags": [{"id": "5", "tag": "VIP"}, {"id": "6", "tag": "customer"}], "meta": {"total": "2"}}
    first, second = ActiveCampaignProvider(config(), RecordingHttp(page, fields, tags)).read_by_ids(["1", "2"])
    assert (first.fields["status"], first.fields["COMPANY"], first.fields["BIRTHDAY"]) == ("unsubscribed", "Acme", "")
    assert first.fields["tags"] == ["VIP", "customer"]
    # On another list only: no statement about this one.
    assert (second.fields["status"], second.fields["tags"]) == (None, [])


# Against the sandbox process


def activecampaign(sandbox, *, key=None, paced=False, **settings) -> ActiveCampaignProvider:
    """A client of the sandbox's account; unpaced (and the sandbox's limit off) unless `paced`."""
    if not paced:
        sandbox.limits(activecampaign_rate_limit=0)
    config = ProviderConfig(
        base_url=sandbox.base_url("activecampaign"), api_key=key or sandbox.credential("activecampaign"),
        settings={"list_id": "1", **settings}, budget_key=f"test-{uuid.uuid4()}",
        **({} if paced else {"rate_limit_requests": 1000, "rate_limit_window_seconds": 1}),
    )
    provider = build_provider("activecampaign", config)
    assert isinstance(provider, ActiveCampaignProvider)
    return provider


def stored(sandbox) -> dict[str, dict]:
    """The sandbox's contacts by email, with their list statuses, tags and field values."""
    return {item["email"]: item for item in sandbox.control("activecampaign", "contacts")["contacts"]}


def list_status(item: dict) -> int | None:
    return next((entry["status"] for entry in item["lists"] if entry["list"] == "1"), None)


def edit(sandbox, email: str, **changes) -> dict:
    """Change a contact as someone in ActiveCampaign's pages would."""
    return sandbox.control("activecampaign", "contacts", {"email": email, **changes})


def calls(sandbox, route: str) -> int:
    return sandbox.stats()["requests"].get("activecampaign", {}).get(route, 0)


def new_record(key, email, **values) -> OutgoingRecord:
    values.setdefault("email_consent_if_new", "subscribed")
    return OutgoingRecord(key=key, email=email, fields=values.pop("fields", {}), **values)


@pytest.mark.integration
def test_a_full_read_lists_every_contact_by_id_100_a_page(sandbox):
    sandbox.seed(activecampaign_contacts=250)
    pages = list(activecampaign(sandbox).read_changed(None))
    ids = [int(record.external_id) for page in pages for record in page.records]
    assert ids == sorted(ids) and len(set(ids)) == 250 == len(stored(sandbox))
    assert [len(page.records) for page in pages] == [100, 100, 50] and pages[0].total == 250
    assert calls(sandbox, "GET /contacts") == 3
    assert all(record.modified_at.tzinfo is not None for page in pages for record in page.records)


@pytest.mark.integration
def test_a_contact_edited_behind_the_read_is_delivered_by_the_next_one(sandbox):
    sandbox.seed(activecampaign_contacts=250)
    # No overlap: the watermark alone must reach it.
    provider = activecampaign(sandbox, overlap_seconds=0)
    reading = provider.read_changed(None)
    first = next(reading)
    last_id = max(int(item["id"]) for item in stored(sandbox).values())
    behind, ahead = first.records[5], provider.read_by_ids([str(last_id - 20)])[0]
    edit(sandbox, behind.fields["email"], firstName="Edited behind")
    edit(sandbox, ahead.fields["email"], firstName="Edited ahead")
    rest = list(reading)
    assert ahead.external_id in {record.external_id for page in rest for record in page.records}
    assert behind.external_id not in {record.external_id for page in rest for record in page.records}
    delta = [record for page in provider.read_changed(rest[-1].cursor) for record in page.records]
    assert {record.external_id: record.fields["firstName"] for record in delta} == {
        behind.external_id: "Edited behind", ahead.external_id: "Edited ahead"}


@pytest.mark.integration
def test_a_delta_read_filters_by_update_time_and_rereads_its_overlap(sandbox):
    sandbox.seed(activecampaign_contacts=120)
    provider = activecampaign(sandbox, overlap_seconds=30)
    began = datetime.now(UTC).replace(microsecond=0)
    pages = list(provider.read_changed(None))
    full, cursor = [record for page in pages for record in page.records], pages[-1].cursor
    # Nothing changed: the next read starts the overlap before ActiveCampaign's clock when
    # the first read began (not before the newest change it read), and lists only what
    # changed since then.
    again = [record for page in provider.read_changed(cursor) for record in page.records]
    assert all(record.modified_at >= began - timedelta(seconds=31) for record in again)
    assert len(again) < len(full)
    changed = edit(sandbox, full[0].fields["email"], lastName="Changed")
    delta = {record.external_id: record for page in provider.read_changed(cursor) for record in page.records}
    assert delta[changed["id"]].fields["lastName"] == "Changed"
    assert set(delta) == {changed["id"]} | {record.external_id for record in again}


@pytest.mark.integration
def test_a_bulk_write_read_back_once_is_not_listed_again_by_later_reads(sandbox):
    provider = activecampaign(sandbox, overlap_seconds=1)
    results = provider.upsert_batch([new_record(i, f"echo{i}@example.com", fields={"firstName": "E"})
                                     for i in range(250)])
    assert all(result.ok for result in results)
    time.sleep(2.5)
    pages = list(provider.read_changed(None))
    assert sum(len(page.records) for page in pages) == 250
    sandbox.reset_stats()
    again = [record for page in provider.read_changed(pages[-1].cursor) for record in page.records]
    assert again == []
    assert calls(sandbox, "GET /contacts") == 1


@pytest.mark.integration
def test_one_by_one_writes_create_then_update_by_id_and_by_address(sandbox):
    provider = activecampaign(sandbox)
    records = [new_record(1, " Ann@Example.com ", fields={"firstName": "Ann", "COMPANY": "Acme", "tags": ["VIP"]}),
               new_record(2, "bob@example.com", fields={"firstName": "Bob"})]
    created = provider.upsert_batch(records)
    assert [result.ok for result in created] == [True, True]
    assert [result.email_consent for result in created] == ["subscribed", "subscribed"]
    ann = stored(sandbox)["ann@example.com"]
    assert (ann["id"], ann["firstName"], ann["fieldValues"], ann["tags"], list_status(ann)) == (
        created[0].external_id, "Ann", {"COMPANY": "Acme"}, ["VIP"], 1)
    updated = provider.upsert_batch([
        OutgoingRecord(key=1, email="ann@example.com", external_id=created[0].external_id,
                       fields={"firstName": "Anna", "tags": ["VIP", "customer"]}),
        # Not linked, but there already: found by its address, not created twice.
        new_record(2, "BOB@example.com", fields={"lastName": "Builder"}),
    ])
    assert [(result.ok, result.external_id) for result in updated] == [
        (True, created[0].external_id), (True, created[1].external_id)]
    contacts = stored(sandbox)
    assert len(contacts) == 2
    assert (contacts["ann@example.com"]["firstName"], contacts["ann@example.com"]["tags"]) == ("Anna",
                                                                                               ["VIP", "customer"])
    assert (contacts["bob@example.com"]["firstName"], contacts["bob@example.com"]["lastName"]) == ("Bob", "Builder")


@pytest.mark.integration
def test_a_changed_address_follows_the_link(sandbox):
    provider = activecampaign(sandbox)
    [created] = provider.upsert_batch([new_record(1, "old@example.com")])
    [moved] = provider.upsert_batch([OutgoingRecord(key=1, email="new@example.com", external_id=created.external_id,
                                                    fields={"email": "new@example.com"})])
    assert moved.external_id == created.external_id
    assert set(stored(sandbox)) == {"new@example.com"}


@pytest.mark.integration
def test_a_contact_whose_consent_is_unknown_is_not_created_but_is_updated_where_it_exists(sandbox):
    provider = activecampaign(sandbox)
    edit(sandbox, "kept@example.com", firstName="Kept", lists={"1": 2})
    results = provider.upsert_batch([
        OutgoingRecord(key=1, email="unknown@example.com", fields={"firstName": "X"}),
        OutgoingRecord(key=2, email="kept@example.com", fields={"firstName": "Still kept"}),
    ])
    assert (results[0].ok, results[0].error_class) == (False, "not_created")
    assert (results[1].ok, results[1].email_consent) == (True, "unsubscribed")
    kept = stored(sandbox)["kept@example.com"]
    assert (kept["firstName"], list_status(kept)) == ("Still kept", 2)
    assert "unknown@example.com" not in stored(sandbox)


@pytest.mark.integration
def test_list_status_is_written_only_to_restrict_or_on_an_explicit_opt_in(sandbox):
    provider = activecampaign(sandbox)
    [ann] = provider.upsert_batch([new_record(1, "ann@example.com")])
    edit(sandbox, "bob@example.com", lists={"1": 2})
    bob_id = stored(sandbox)["bob@example.com"]["id"]
    results = provider.upsert_batch([
        OutgoingRecord(key=1, email="ann@example.com", external_id=ann.external_id, fields={},
                       email_consent="unsubscribed"),
        # Bob unsubscribed in ActiveCampaign: a sync that still says subscribed changes nothing.
        OutgoingRecord(key=2, email="bob@example.com", external_id=bob_id, fields={}, email_consent="subscribed",
                       email_consent_if_new="subscribed"),
    ])
    assert [result.email_consent for result in results] == ["unsubscribed", None]
    assert (list_status(stored(sandbox)["ann@example.com"]), list_status(stored(sandbox)["bob@example.com"])) == (2, 2)
    [again] = provider.upsert_batch([OutgoingRecord(key=2, email="bob@example.com", external_id=bob_id, fields={},
                                                    email_consent="subscribed", explicit_opt_in=True)])
    assert again.email_consent == "subscribed" and list_status(stored(sandbox)["bob@example.com"]) == 1


@pytest.mark.integration
def test_list_status_is_read_as_the_contacts_email_consent(sandbox):
    edit(sandbox, "on@example.com", lists={"1": 1})
    edit(sandbox, "off@example.com", lists={"1": 2})
    edit(sandbox, "none@example.com", firstName="Never on the list")
    records = [record for page in activecampaign(sandbox).read_changed(None) for record in page.records]
    assert {record.fields["email"]: record.fields.get("status", "absent") for record in records} == {
        "on@example.com": "subscribed", "off@example.com": "unsubscribed", "none@example.com": None}


@pytest.mark.integration
def test_custom_fields_are_discovered_and_written_by_their_tag(sandbox):
    provider = activecampaign(sandbox)
    fields = {field.name: field for field in provider.discover_fields()}
    assert (fields["COMPANY"].kind, fields["BIRTHDAY"].kind, fields["status"].kind) == ("text", "date", "consent")
    [written] = provider.upsert_batch([new_record(1, "ann@example.com", fields={"COMPANY": "Acme",
                                                                                 "BIRTHDAY": "1990-12-31"})])
    assert written.ok and stored(sandbox)["ann@example.com"]["fieldValues"] == {"COMPANY": "Acme",
                                                                                "BIRTHDAY": "1990-12-31"}


@pytest.mark.integration
def test_a_client_lists_the_custom_fields_once_for_its_reads_writes_and_discovery(sandbox):
    edit(sandbox, "ann@example.com", fieldValues={"COMPANY": "Acme"})
    provider = activecampaign(sandbox)
    sandbox.reset_stats()
    [record] = [record for page in provider.read_changed(None) for record in page.records]
    assert "COMPANY" in {field.name for field in provider.discover_fields()}
    provider.upsert_batch([new_record(1, "bob@example.com", fields={"COMPANY": "Initech"})])
    assert calls(sandbox, "GET /fields") == 1
    # Another client (another run, a refresh from the connection's page) asks again.
    activecampaign(sandbox).discover_fields()
    assert calls(sandbox, "GET /fields") == 2


@pytest.mark.integration
def test_a_created_field_is_related_to_every_list_and_takes_values(sandbox):
    provider = activecampaign(sandbox)
    created = provider.create_field(label="Shoe size", kind="number")
    assert (created.name, created.label, created.kind) == ("SHOE_SIZE", "Shoe size", "text")
    assert "SHOE_SIZE" in {field.name for field in provider.discover_fields()}
    provider.upsert_batch([new_record(1, "ann@example.com", fields={"SHOE_SIZE": 38})])
    assert stored(sandbox)["ann@example.com"]["fieldValues"] == {"SHOE_SIZE": "38"}


@pytest.mark.integration
def test_custom_field_values_are_read_with_the_contacts(sandbox):
    edit(sandbox, "ann@example.com", fieldValues={"COMPANY": "Acme"})
    [record] = [record for page in activecampaign(sandbox).read_changed(None) for record in page.records]
    assert (record.fields.get("COMPANY"), record.fields.get("BIRTHDAY")) == ("Acme", "")


@pytest.mark.integration
def test_a_field_the_account_lacks_fails_only_its_record(sandbox):
    results = activecampaign(sandbox).upsert_batch([new_record(1, "ann@example.com", fields={"GONE": "x"}),
                                                    new_record(2, "bob@example.com")])
    assert (results[0].ok, results[0].error_class) == (False, "UnknownField") and "GONE" in results[0].message
    assert results[1].ok and set(stored(sandbox)) == {"bob@example.com"}


@pytest.mark.integration
def test_tags_are_added_by_name_never_removed(sandbox):
    provider = activecampaign(sandbox)
    [ann] = provider.upsert_batch([new_record(1, "ann@example.com", fields={"tags": ["VIP", "Kunde"]})])
    provider.upsert_batch([OutgoingRecord(key=1, email="ann@example.com", external_id=ann.external_id,
                                          fields={"tags": ["vip", "webinar"]})])
    assert sorted(stored(sandbox)["ann@example.com"]["tags"]) == ["Kunde", "VIP", "webinar"]


@pytest.mark.integration
def test_tags_are_read_by_name(sandbox):
    provider = activecampaign(sandbox)
    [ann] = provider.upsert_batch([new_record(1, "ann@example.com", fields={"tags": ["VIP", "Kunde"]})])
    [record] = provider.read_by_ids([ann.external_id])
    assert record.fields.get("tags") == ["Kunde", "VIP"]


@pytest.mark.integration
def test_a_bulk_import_fails_exactly_the_contact_it_refused(sandbox):
    provider = activecampaign(sandbox)
    edit(sandbox, "existing@example.com", firstName="Old", lists={"1": 2})
    edit(sandbox, "offlist@example.com", firstName="Off the list")
    records = [new_record(n, f"person{n}@example.com", fields={"firstName": f"P{n}", "tags": ["imported"]})
               for n in range(20)]
    records[7] = new_record(7, "bad-date@example.com", fields={"BIRTHDAY": "2024-02-31"})
    records[8] = new_record(8, "existing@example.com", fields={"firstName": "New"})
    records[9] = new_record(9, "offlist@example.com", fields={"firstName": "On it now"})
    records[10] = new_record(10, "optout@example.com", email_consent="unsubscribed",
                             email_consent_if_new="unsubscribed")
    results = provider.upsert_batch(records)
    assert calls(sandbox, "POST /import/bulk_import") == 2
    assert [result.key for result in results if not result.ok] == [7]
    assert results[7].error_class == "import_refused" and "bad-date@example.com" in results[7].message
    contacts = stored(sandbox)
    assert "bad-date@example.com" not in contacts
    for result, record in zip(results, records, strict=True):
        if result.ok:
            assert contacts[record.email]["id"] == result.external_id
    assert contacts["person3@example.com"]["tags"] == ["imported"] and list_status(contacts["person3@example.com"]) == 1
    # Never re-subscribed by an import; given the status for new members where it had none.
    assert (contacts["existing@example.com"]["firstName"], list_status(contacts["existing@example.com"])) == ("New", 2)
    assert list_status(contacts["offlist@example.com"]) == 1 and list_status(contacts["optout@example.com"]) == 2
    assert [results[n].email_consent for n in (3, 8, 9, 10)] == ["subscribed", "unsubscribed", "subscribed",
                                                                 "unsubscribed"]


@pytest.mark.integration
def test_a_bulk_import_updates_linked_contacts_and_moves_a_changed_address_one_by_one(sandbox):
    provider = activecampaign(sandbox)
    first = provider.upsert_batch([new_record(n, f"p{n}@example.com") for n in range(12)])
    linked = [OutgoingRecord(key=n, email=f"p{n}@example.com", external_id=result.external_id,
                             fields={"lastName": "Linked"}) for n, result in enumerate(first)]
    linked[0] = OutgoingRecord(key=0, email="moved@example.com", external_id=first[0].external_id,
                               fields={"email": "moved@example.com"})
    linked[1] = OutgoingRecord(key=1, email="p1@example.com", external_id=first[1].external_id, fields={},
                               email_consent="unsubscribed")
    results = provider.upsert_batch(linked)
    assert [result.external_id for result in results] == [result.external_id for result in first]
    contacts = stored(sandbox)
    assert len(contacts) == 12 and "moved@example.com" in contacts and "p0@example.com" not in contacts
    assert contacts["p5@example.com"]["lastName"] == "Linked" and list_status(contacts["p1@example.com"]) == 2


@pytest.mark.integration
def test_a_429_is_waited_out_as_retry_after_says(sandbox):
    sandbox.seed(activecampaign_contacts=5)
    provider = activecampaign(sandbox)
    sandbox.limits(activecampaign_rate_limit=2)
    ids = [item["id"] for item in stored(sandbox).values()][:3]
    started = time.monotonic()
    for _ in range(6):
        assert len(provider.read_by_ids(ids)) == 3
    assert sandbox.stats()["statuses"]["activecampaign"].get("429", 0) >= 1
    assert time.monotonic() - started >= 1


@pytest.mark.integration
def test_the_published_rate_keeps_a_read_clear_of_429s(sandbox):
    sandbox.seed(activecampaign_contacts=30)
    provider = activecampaign(sandbox, paced=True)
    ids = [item["id"] for item in stored(sandbox).values()][:1]
    for _ in range(8):
        provider.read_by_ids(ids)
    assert "429" not in sandbox.stats()["statuses"]["activecampaign"]


@pytest.mark.integration
def test_a_wrong_key_is_an_authentication_error(sandbox):
    provider = activecampaign(sandbox, key="not-the-key")
    with pytest.raises(AuthenticationError):
        list(provider.read_changed(None))
    with pytest.raises(AuthenticationError):
        provider.upsert_batch([new_record(1, "ann@example.com")])


@pytest.mark.integration
def test_erase_and_archive_delete_the_contact_and_tolerate_one_gone(sandbox):
    provider = activecampaign(sandbox)
    ann, bob = provider.upsert_batch([new_record(1, "ann@example.com"), new_record(2, "bob@example.com")])
    assert provider.erase(ann.external_id) == {"request": "DELETE /contacts/{id}", "status": 200, "outcome": "erased"}
    assert provider.erase(ann.external_id)["outcome"] == "already_gone"
    provider.archive(bob.external_id)
    provider.archive(bob.external_id)
    assert stored(sandbox) == {}


@pytest.mark.integration
def test_a_person_is_found_by_address_and_by_phone(sandbox):
    provider = activecampaign(sandbox)
    edit(sandbox, "ann@example.com", phone="+1 415 555 0100")
    edit(sandbox, "bob@example.com", phone="(415) 555-0100")
    ann_id = stored(sandbox)["ann@example.com"]["id"]
    assert provider.find_person(email="ANN@example.com", phone=None) == [ann_id]
    assert provider.find_person(email=None, phone="+14155550100") == [ann_id]
    assert provider.find_person(email="nobody@example.com", phone=None) == []


@pytest.mark.parametrize("written", ["+33 6 12 34 56 78", "+33 6-12-34-56-78", "+33.6.12.34.56.78", "+33612345678",
                                     "+33 612 345 678"])
def test_a_phone_written_in_pairs_or_groups_is_found_for_a_deletion_request(sandbox, written):
    provider = activecampaign(sandbox)
    edit(sandbox, "cleo@example.com", phone=written)
    edit(sandbox, "dan@example.com", phone="+33 6 12 34 56 79")
    cleo_id = stored(sandbox)["cleo@example.com"]["id"]
    assert provider.find_person(email=None, phone="+33612345678") == [cleo_id]


def hostile_records(hostile_contacts) -> list[OutgoingRecord]:
    return [new_record(n, str(item.get("email") or ""), fields={
        name: item[key] for key, name in (("firstname", "firstName"), ("lastname", "lastName"), ("phone", "phone"))
        if key in item}) for n, item in enumerate(hostile_contacts)]


@pytest.mark.integration
@pytest.mark.parametrize("one_by_one", [True, False])
def test_every_hostile_record_is_written_or_refused_alone(sandbox, hostile_contacts, one_by_one):
    provider = activecampaign(sandbox)
    records = hostile_records(hostile_contacts)
    if one_by_one:
        results = [result for start in range(0, len(records), 10)
                   for result in provider.upsert_batch(records[start:start + 10])]
    else:
        results = provider.upsert_batch(records)
    assert [result.key for result in results] == [record.key for record in records]
    contacts = {email.lower(): item for email, item in stored(sandbox).items()}
    for result, record in zip(results, records, strict=True):
        if result.ok:
            assert contacts[record.email.strip().lower()]["id"] == result.external_id
        else:
            assert result.error_class and record.email.strip().lower() in result.message.lower()
    assert any(result.ok for result in results) and any(not result.ok for result in results)
