"""Merging two contacts into one, and dismissing a pair, against a real database.

Remote merges go through a recording stand-in for the providers here (the calls and
their failures are what these tests look at); tests/integration/test_duplicates.py
merges real records in the sandbox.
"""
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from audit.people import EMAIL, Person
from audit.subject_access import subject_access_document
from audit.suppression import suppress
from connections.models import Connection
from connections.providers.base import MergeNotSupported, ProviderError, RemoteRecord, TransientError
from syncapp.models import Conflict, ConsentEvent, Contact, DuplicatePair, PendingPush, RecordLink, Sync, SyncRun
from syncapp.roles import REVIEWER
from syncapp.services.duplicates import (
    PairClosed,
    PersonSuppressed,
    RemoteMergeFailed,
    contacts_merge,
    duplicate_dismiss,
    duplicate_pairs_to_review,
)
from tests.audit_order import statements_after_the_head
from tests.workspace import user_with_role, workspace_make

pytestmark = pytest.mark.django_db


class Remote:
    """Stands in for every provider: HubSpot merges records, Mailchimp cannot.

    `calls` lists what was asked; `fail` makes every call raise, `fail_archive` only
    archiving; `new_id` is the id
    HubSpot gives the merged record (its primary's id when None); `gone` holds the ids
    of records merged away, which HubSpot answers with a 404.
    """

    def __init__(self):
        self.calls: list[tuple] = []
        self.fail: Exception | None = None
        self.fail_archive: Exception | None = None
        self.new_id: str | None = None
        self.gone: set[str] = set()

    def provider_for(self, connection, fields=()):
        return RemoteProvider(self, can_merge=connection.provider == "hubspot")


class RemoteProvider:
    def __init__(self, remote: Remote, *, can_merge: bool):
        self.remote, self.can_merge = remote, can_merge

    def merge_records(self, primary_id: str, other_id: str) -> str:
        self.remote.calls.append(("merge", primary_id, other_id))
        if self.remote.fail:
            raise self.remote.fail
        if not self.can_merge:
            raise MergeNotSupported("This system cannot merge records.")
        if {primary_id, other_id} & self.remote.gone:
            raise ProviderError("HubSpot answered 404: resource not found.", status=404)
        self.remote.gone.add(other_id)
        return self.remote.new_id or primary_id

    def read_by_ids(self, external_ids):
        self.remote.calls.append(("read", *external_ids))
        return [RemoteRecord(external_id, {}) for external_id in external_ids if external_id not in self.remote.gone]

    def archive(self, external_id: str) -> None:
        self.remote.calls.append(("archive", external_id))
        if self.remote.fail or self.remote.fail_archive:
            raise self.remote.fail or self.remote.fail_archive


@pytest.fixture
def remote(monkeypatch):
    remote = Remote()
    monkeypatch.setattr("syncapp.services.duplicates.provider_for", remote.provider_for)
    return remote


@pytest.fixture
def sync():
    return workspace_make()


@pytest.fixture
def hubspot(sync):
    return Connection.objects.get(name="HubSpot")


@pytest.fixture
def mailchimp(sync):
    return Connection.objects.get(name="Mailchimp")


@pytest.fixture
def reviewer():
    return user_with_role("rita", REVIEWER)


def pair_of(first: Contact, second: Contact, reason=DuplicatePair.Reason.SAME_PHONE) -> DuplicatePair:
    low, high = sorted((first, second), key=lambda contact: contact.pk)
    return DuplicatePair.objects.create(contact_a=low, contact_b=high, reason=reason, detail="Phone +14155550100")


def link(contact: Contact, connection: Connection, external_id: str | None, **fields) -> RecordLink:
    return RecordLink.objects.create(contact=contact, connection=connection, external_id=external_id, **fields)


def merged_event() -> AuditEvent:
    return AuditEvent.objects.get(action="contact.merged")


# Hub values


def test_the_survivor_keeps_its_values_and_takes_the_others_where_it_has_none(remote, reviewer):
    survivor = Contact.objects.create(email="ada@example.com", phone="+14155550100", first_name="Ada",
                                      attributes={"plan": "pro", "city": ""})
    other = Contact.objects.create(email="ada.l@example.com", phone="+14155550100", first_name="Augusta",
                                   last_name="Lovelace", company="Analytical Engines",
                                   attributes={"plan": "free", "city": "London", "shoe": "38"})

    result = contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer, reason="Same phone")

    result.refresh_from_db()
    assert (result.email, result.first_name, result.last_name, result.company) == (
        "ada@example.com", "Ada", "Lovelace", "Analytical Engines")
    assert result.attributes == {"plan": "pro", "city": "London", "shoe": "38"}
    assert not Contact.objects.filter(pk=other.pk).exists()
    event = merged_event()
    assert event.actor == reviewer and event.contact_id == survivor.pk
    assert event.changes["merged_contact_id"] == [None, other.pk]
    assert event.changes["reason"] == [None, "Same phone"]
    assert event.changes["last_name"] == ["", "Lovelace"]
    assert event.changes["attributes.city"] == ["", "London"]
    assert "email" not in event.changes and "first_name" not in event.changes
    assert remote.calls == []


def test_either_contact_of_the_pair_may_survive(remote, reviewer):
    first = Contact.objects.create(email="one@example.com")
    second = Contact.objects.create(email="two@example.com", first_name="Two")

    contacts_merge(pair=pair_of(first, second), survivor=second, user=reviewer)

    assert list(Contact.objects.values_list("pk", "email", "first_name")) == [(second.pk, "two@example.com", "Two")]


def test_a_survivor_without_an_email_takes_the_others(remote, reviewer):
    survivor = Contact.objects.create(email=None, phone="+14155550100")
    other = Contact.objects.create(email="found@example.com", phone="+14155550100")

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    survivor.refresh_from_db()
    assert survivor.email == "found@example.com"
    assert merged_event().changes["email"] == [None, "found@example.com"]


# Consent


@pytest.mark.parametrize(("ours", "theirs", "joined"), [
    ("subscribed", "unsubscribed", "unsubscribed"),
    ("unsubscribed", "subscribed", "unsubscribed"),
    ("unknown", "subscribed", "subscribed"),
    ("cleaned", "unsubscribed", "cleaned"),
    ("pending", "transactional", "transactional"),
])
def test_consent_per_channel_becomes_the_most_restrictive_of_the_two(remote, reviewer, ours, theirs, joined):
    survivor = Contact.objects.create(email="a@example.com", email_consent=ours, sms_consent=theirs)
    other = Contact.objects.create(email="b@example.com", email_consent=theirs, sms_consent=ours)

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    survivor.refresh_from_db()
    assert (survivor.email_consent, survivor.sms_consent) == (joined, joined)


def test_the_ledgers_are_joined_and_a_consent_change_by_the_merge_is_stated_in_it(remote, reviewer):
    survivor = Contact.objects.create(email="a@example.com", email_consent="subscribed")
    other = Contact.objects.create(email="b@example.com", email_consent="unsubscribed")
    opt_out = ConsentEvent.objects.create(
        contact=other, channel="email", state="unsubscribed", previous_state="subscribed", hub_state="unsubscribed",
        system="Mailchimp", evidence="webhook", occurred_at=timezone.now() - timedelta(days=2),
    )
    earlier = ConsentEvent.objects.create(
        contact=survivor, channel="email", state="subscribed", previous_state="unknown", hub_state="subscribed",
        system="HubSpot", evidence="api_read", occurred_at=timezone.now() - timedelta(days=9),
    )

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    ledger = list(ConsentEvent.objects.filter(contact=survivor))
    assert ledger[1:] == [opt_out, earlier]  # newest first; the merge's own statement on top
    stated = ledger[0]
    assert (stated.channel, stated.state, stated.previous_state, stated.hub_state) == (
        "email", "unsubscribed", "subscribed", "unsubscribed")
    assert (stated.evidence, stated.actor, stated.system) == ("user", reviewer, "Syncapp")
    assert f"#{other.pk}" in stated.note
    assert merged_event().changes["email_consent"] == ["subscribed", "unsubscribed"]


def test_an_explicit_opt_in_does_not_outlive_a_restriction_the_merge_brings(remote, reviewer):
    survivor = Contact.objects.create(email="a@example.com", email_consent="subscribed",
                                      email_opt_in_at=timezone.now() - timedelta(days=1))
    other = Contact.objects.create(email="b@example.com", email_consent="unsubscribed")

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    survivor.refresh_from_db()
    assert survivor.email_consent == "unsubscribed" and survivor.email_opt_in_at is None


def test_a_subscription_both_hold_keeps_the_newest_explicit_opt_in(remote, reviewer):
    newest = timezone.now() - timedelta(hours=1)
    survivor = Contact.objects.create(email="a@example.com", email_consent="subscribed")
    other = Contact.objects.create(email="b@example.com", email_consent="subscribed", email_opt_in_at=newest)

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    survivor.refresh_from_db()
    assert survivor.email_opt_in_at == newest
    assert not ConsentEvent.objects.exists()  # nothing changed, nothing to state


# Links


def test_links_to_systems_the_survivor_lacks_move_to_it_and_every_link_is_marked_for_a_push(
    remote, reviewer, sync, hubspot, mailchimp
):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    kept = link(survivor, hubspot, "101", merge_base={"email": "a@example.com"})
    moved = link(other, mailchimp, "md5-of-b", stable_id="mc-77", merge_base={"email_address": "b@example.com"})

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    links = {row.pk: row for row in RecordLink.objects.all()}
    assert set(links) == {kept.pk, moved.pk}
    assert all(row.contact_id == survivor.pk for row in links.values())
    # Marked for every sync writing the link's system; the sync only reads HubSpot.
    assert set(PendingPush.objects.values_list("sync_id", "link_id")) == {(sync.pk, moved.pk)}
    # The moved link keeps what that system last agreed: the next run sees no false change.
    assert links[moved.pk].merge_base == {"email_address": "b@example.com"}
    assert links[moved.pk].stable_id == "mc-77"
    assert merged_event().changes["links_moved"] == [None, ["Mailchimp"]]
    assert remote.calls == []


def test_a_run_of_each_sync_writing_to_the_survivors_systems_is_requested(remote, reviewer, sync, mailchimp):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    link(other, mailchimp, "md5-of-b")
    unrelated = Sync.objects.create(name="Elsewhere", schedule_minutes=0)

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    run = SyncRun.objects.get()
    assert (run.sync, run.status, run.requested_by) == (sync, SyncRun.Status.QUEUED, reviewer)
    assert not unrelated.runs.exists()


def test_two_records_in_a_system_that_merges_are_merged_there_into_the_survivors(remote, reviewer, hubspot):
    survivor = Contact.objects.create(email="same@example.com")
    other = Contact.objects.create(email="same@example.com")
    kept = link(survivor, hubspot, "101")
    link(other, hubspot, "202")

    contacts_merge(pair=pair_of(survivor, other, DuplicatePair.Reason.SAME_EMAIL), survivor=survivor, user=reviewer)

    assert remote.calls == [("merge", "101", "202")]
    assert list(RecordLink.objects.values_list("pk", "contact_id", "external_id")) == [(kept.pk, survivor.pk, "101")]
    assert merged_event().changes["records_merged"] == [
        None, [{"connection": "HubSpot", "kept": "101", "merged": "202", "how": "merged"}]]


def test_a_merged_record_that_gets_a_new_id_there_is_linked_by_it(remote, reviewer, hubspot):
    remote.new_id = "303"
    survivor = Contact.objects.create(email="same@example.com")
    other = Contact.objects.create(email="same@example.com")
    link(survivor, hubspot, "101")
    link(other, hubspot, "202")

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    assert RecordLink.objects.get(contact=survivor, connection=hubspot).external_id == "303"


def test_a_system_that_cannot_merge_has_the_others_record_archived(remote, reviewer, mailchimp):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    kept = link(survivor, mailchimp, "md5-a")
    link(other, mailchimp, "md5-b")

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    assert remote.calls == [("merge", "md5-a", "md5-b"), ("archive", "md5-b")]
    assert list(RecordLink.objects.values_list("pk", flat=True)) == [kept.pk]
    assert merged_event().changes["records_merged"][1][0]["how"] == "archived"


def test_where_only_the_other_has_a_live_record_its_link_replaces_the_survivors(remote, reviewer, sync, hubspot,
                                                                               mailchimp):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    waiting = link(survivor, mailchimp, None)  # waiting for its first push
    PendingPush.objects.create(sync=sync, connection=mailchimp, link=waiting)
    link(survivor, hubspot, "101", archived=True)
    live_member = link(other, mailchimp, "md5-b")
    live_record = link(other, hubspot, "202")

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    assert set(RecordLink.objects.values_list("pk", "contact_id")) == {
        (live_member.pk, survivor.pk), (live_record.pk, survivor.pk)}
    # The waiting link's mark went with it; the member that replaced it is marked instead.
    assert list(PendingPush.objects.values_list("link_id", flat=True)) == [live_member.pk]
    assert remote.calls == []


def test_a_system_refusing_the_merge_leaves_the_hub_as_it_was(remote, reviewer, hubspot):
    remote.fail = TransientError("HubSpot answered 503 three times.", status=503)
    survivor = Contact.objects.create(email="same@example.com", first_name="")
    other = Contact.objects.create(email="same@example.com", first_name="Ada")
    link(survivor, hubspot, "101")
    link(other, hubspot, "202")
    pair = pair_of(survivor, other)

    with pytest.raises(RemoteMergeFailed, match="HubSpot refused to merge its records: HubSpot answered 503"):
        contacts_merge(pair=pair, survivor=survivor, user=reviewer)

    assert Contact.objects.count() == 2 and RecordLink.objects.count() == 2
    assert Contact.objects.get(pk=survivor.pk).first_name == ""
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN
    assert not AuditEvent.objects.filter(action="contact.merged").exists()


def test_a_merge_retried_after_another_system_refused_finds_the_first_merge_done(remote, reviewer, hubspot, mailchimp):
    survivor = Contact.objects.create(email="a@example.com", phone="+14155550100")
    other = Contact.objects.create(email="b@example.com", phone="+14155550100")
    link(survivor, hubspot, "101")
    link(other, hubspot, "202")
    link(survivor, mailchimp, "md5-a")
    link(other, mailchimp, "md5-b")
    pair = pair_of(survivor, other)
    remote.fail_archive = TransientError("Mailchimp answered 503.")

    with pytest.raises(RemoteMergeFailed, match="Mailchimp refused"):
        contacts_merge(pair=pair, survivor=survivor, user=reviewer)
    assert remote.gone == {"202"} and Contact.objects.count() == 2

    remote.fail_archive = None
    first_attempt = len(remote.calls)
    contacts_merge(pair=pair, survivor=survivor, user=reviewer)

    assert remote.calls[first_attempt:] == [
        ("merge", "101", "202"), ("read", "101", "202"),  # HubSpot: 404, and 202 is gone: done before
        ("merge", "md5-a", "md5-b"), ("archive", "md5-b"),
    ]
    assert set(RecordLink.objects.values_list("contact_id", "external_id")) == {(survivor.pk, "101"),
                                                                               (survivor.pk, "md5-a")}


def test_a_record_missing_for_another_reason_still_stops_the_merge(remote, reviewer, hubspot):
    remote.gone = {"101"}  # the survivor's own record is gone
    survivor = Contact.objects.create(email="same@example.com")
    other = Contact.objects.create(email="same@example.com")
    link(survivor, hubspot, "101")
    link(other, hubspot, "202")

    with pytest.raises(RemoteMergeFailed, match="404"):
        contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)
    assert Contact.objects.count() == 2


# Conflicts and pairs


def test_conflicts_move_and_a_second_open_one_on_the_same_field_is_closed(remote, reviewer, sync):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    kept = Conflict.objects.create(sync=sync, contact=survivor, hub_field="first_name", hub_value="Ada")
    twin = Conflict.objects.create(sync=sync, contact=other, hub_field="first_name", hub_value="Augusta")
    moved = Conflict.objects.create(sync=sync, contact=other, hub_field="last_name", hub_value="King")
    closed = Conflict.objects.create(sync=sync, contact=other, hub_field="company", status=Conflict.Status.RESOLVED)

    contacts_merge(pair=pair_of(survivor, other), survivor=survivor, user=reviewer)

    conflicts = {conflict.pk: conflict for conflict in Conflict.objects.all()}
    assert all(conflict.contact_id == survivor.pk for conflict in conflicts.values())
    assert conflicts[kept.pk].status == conflicts[moved.pk].status == Conflict.Status.OPEN
    assert conflicts[closed.pk].status == Conflict.Status.RESOLVED
    assert conflicts[twin.pk].status == Conflict.Status.SETTLED
    assert conflicts[twin.pk].resolved_by == reviewer
    assert f"#{kept.pk}" in conflicts[twin.pk].reason


def test_the_others_pairs_follow_it_to_the_survivor(remote, reviewer):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    third = Contact.objects.create(email="c@example.com")
    fourth = Contact.objects.create(email="d@example.com")
    pair = pair_of(survivor, other)
    follows = pair_of(other, third)
    repeats = pair_of(other, fourth)
    already = pair_of(survivor, fourth, DuplicatePair.Reason.SAME_EMAIL)

    contacts_merge(pair=pair, survivor=survivor, user=reviewer, reason="One person")

    pairs = {p.pk: p for p in DuplicatePair.objects.all()}
    assert (pairs[follows.pk].contact_a_id, pairs[follows.pk].contact_b_id) == (survivor.pk, third.pk)
    assert repeats.pk not in pairs  # the survivor and the fourth are paired already
    assert pairs[already.pk].reason == DuplicatePair.Reason.SAME_EMAIL
    assert merged_event().changes["duplicate_pair_id"] == [None, pair.pk]


def test_a_merge_audits_after_every_row_it_locks_changes_or_deletes(remote, reviewer, sync, hubspot, mailchimp,
                                                                   monkeypatch):
    # The runs it requests are transactions of their own, after the merge's commit.
    requested = []
    monkeypatch.setattr("syncapp.services.duplicates.runs_request_for", lambda **kwargs: requested.append(kwargs))
    survivor = Contact.objects.create(email="ada@example.com", first_name="Ada")
    other = Contact.objects.create(email="ada.l@example.com", last_name="Lovelace", email_consent="unsubscribed")
    link(survivor, hubspot, "101")
    link(other, mailchimp, "md5-of-b")
    Conflict.objects.create(sync=sync, contact=other, hub_field="last_name", hub_value="King")
    third = Contact.objects.create(email="c@example.com")
    pair = pair_of(survivor, other)
    pair_of(other, third)

    with CaptureQueriesContext(db_connection) as queries:
        contacts_merge(pair=pair, survivor=survivor, user=reviewer, reason="One person")

    assert statements_after_the_head(queries) == []
    assert not Contact.objects.filter(pk=other.pk).exists()
    assert set(RecordLink.objects.values_list("contact_id", flat=True)) == {survivor.pk}
    assert Conflict.objects.get().contact_id == survivor.pk
    event = merged_event()
    assert (event.contact_id, event.changes["merged_contact_id"]) == (survivor.pk, [None, other.pk])
    assert event.changes["email_consent"] == ["unknown", "unsubscribed"]
    assert len(requested) == 1


def test_the_merged_pair_is_kept_closed_with_who_decided(remote, reviewer):
    survivor = Contact.objects.create(email="a@example.com")
    other = Contact.objects.create(email="b@example.com")
    pair = pair_of(survivor, other)

    contacts_merge(pair=pair, survivor=survivor, user=reviewer)

    decided = DuplicatePair.objects.filter(pk=pair.pk).first()
    assert decided is not None, "the merged pair went with the merged contact"
    assert (decided.status, decided.decided_by) == (DuplicatePair.Status.MERGED, reviewer)
    assert decided.decided_at is not None


def test_a_pair_already_decided_is_not_merged_again(remote, reviewer):
    first = Contact.objects.create(email="a@example.com")
    second = Contact.objects.create(email="b@example.com")
    pair = pair_of(first, second)
    duplicate_dismiss(pair=pair, user=reviewer)

    with pytest.raises(PairClosed):
        contacts_merge(pair=pair, survivor=first, user=reviewer)
    assert Contact.objects.count() == 2


def test_the_survivor_must_be_one_of_the_pair(remote, reviewer):
    first = Contact.objects.create(email="a@example.com")
    second = Contact.objects.create(email="b@example.com")
    stranger = Contact.objects.create(email="c@example.com")

    with pytest.raises(ValueError, match="not one of the pair"):
        contacts_merge(pair=pair_of(first, second), survivor=stranger, user=reviewer)
    assert Contact.objects.count() == 3


# Dismissing


def test_dismissing_closes_the_pair_with_who_and_why_and_keeps_both_contacts(reviewer):
    first = Contact.objects.create(email="a@example.com")
    second = Contact.objects.create(email="b@example.com")
    pair = pair_of(first, second)

    duplicate_dismiss(pair=pair, user=reviewer, reason="Twins sharing a phone")

    pair.refresh_from_db()
    assert (pair.status, pair.decided_by) == (DuplicatePair.Status.DISMISSED, reviewer)
    assert pair.decided_at is not None
    assert Contact.objects.count() == 2
    for event in AuditEvent.objects.filter(action="duplicate.dismissed"):
        assert event.actor == reviewer and event.object_id == str(pair.pk)
        assert event.changes["reason"] == [None, "Twins sharing a phone"]
        assert event.changes["contacts"] == [None, [first.pk, second.pk]]
    with pytest.raises(PairClosed):
        duplicate_dismiss(pair=pair, user=reviewer)


def test_a_dismissal_is_in_the_trail_of_each_of_the_two_people(reviewer):
    first = Contact.objects.create(email="a@example.com")
    second = Contact.objects.create(email="b@example.com")
    pair = pair_of(first, second)

    duplicate_dismiss(pair=pair, user=reviewer)

    events = AuditEvent.objects.filter(action="duplicate.dismissed").order_by("contact_id")
    assert [event.contact_id for event in events] == [first.pk, second.pk]
    for address in ("a@example.com", "b@example.com"):
        found = subject_access_document(person=Person(EMAIL, address))["events"]
        assert [event["action"] for event in found] == ["duplicate.dismissed"]


# People erased on request


@pytest.mark.parametrize("erased", [
    {"email": "ada.l@example.com", "phone": None},
    {"email": None, "phone": "+14155550100"},
    {"email": "ada@example.com", "phone": None},
])
def test_a_pair_holding_a_person_erased_on_request_is_never_merged(remote, reviewer, hubspot, erased):
    survivor = Contact.objects.create(email="ada@example.com")
    other = Contact.objects.create(email="ada.l@example.com", phone="+14155550100", first_name="Augusta")
    link(survivor, hubspot, "101")
    link(other, hubspot, "202")
    pair = pair_of(survivor, other)
    suppress(**erased)

    with pytest.raises(PersonSuppressed, match="erased on request") as refused:
        contacts_merge(pair=pair, survivor=survivor, user=reviewer)

    assert isinstance(refused.value, ValueError)
    assert "ada" not in str(refused.value) and "4155550100" not in str(refused.value)
    assert remote.calls == []
    assert Contact.objects.count() == 2 and Contact.objects.get(pk=survivor.pk).first_name == ""
    pair.refresh_from_db()
    assert pair.status == DuplicatePair.Status.OPEN
    assert not AuditEvent.objects.filter(action="contact.merged").exists()


def test_pairs_holding_a_person_erased_on_request_are_left_out_of_review():
    kept = pair_of(Contact.objects.create(email="a@example.com"), Contact.objects.create(email="b@example.com"))
    pair_of(Contact.objects.create(email="c@example.com"), Contact.objects.create(email="d@example.com"))
    pair_of(Contact.objects.create(email="e@example.com", phone="+14155550100"),
            Contact.objects.create(email="f@example.com"))
    decided = pair_of(Contact.objects.create(email="g@example.com"), Contact.objects.create(email="h@example.com"))
    DuplicatePair.objects.filter(pk=decided.pk).update(status=DuplicatePair.Status.DISMISSED)
    erased = pair_of(Contact.objects.create(email="i@example.com"), Contact.objects.create(email="j@example.com"))
    suppress(email="D@example.com", phone=None)
    suppress(email=None, phone="+14155550100")
    suppress(email="j@example.com", phone=None)
    # Its deletion request has completed: the contact is gone, the pair's side empty.
    Contact.objects.filter(pk=erased.contact_b_id).delete()

    assert list(duplicate_pairs_to_review(DuplicatePair.objects.all())) == [kept]
