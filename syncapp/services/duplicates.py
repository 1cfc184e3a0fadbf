"""Likely duplicate contacts: merging the two into one, or recording that they are two people.

A merge joins everything the hub holds about the two contacts (values, links, consent
ledger, conflicts, duplicate pairs) into the survivor and deletes the other. Where both
have a live record in the same system, that system holds the person twice: its two
records are merged there as well, or the other one archived where the system cannot
merge records.

A contact holding an email or a phone erased on request (audit.suppression) waits for
its deletion request to erase it: it is neither merged nor offered for review.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.models import Suppression
from audit.services import audit_event_build, audit_record, audit_record_many
from audit.suppression import EMAIL, identifier_form, suppressed_among
from connections.providers.base import MergeNotSupported, ProviderError
from connections.registry import provider_for
from syncapp.engine.consent import SUBSCRIBED, most_restrictive
from syncapp.engine.merge import is_empty
from syncapp.models import Conflict, ConsentEvent, Contact, DuplicatePair, RecordLink, Sync
from syncapp.models.hub import HUB_FIELDS
from syncapp.services.pending import pending_mark
from syncapp.services.plan import plain
from syncapp.services.runs import runs_request_for

CONSENT_CHANNELS = {"email_consent": ConsentEvent.Channel.EMAIL, "sms_consent": ConsentEvent.Channel.SMS}
VALUE_FIELDS = [name for name in HUB_FIELDS if name not in CONSENT_CHANNELS]
# The system named in the ledger for statements made in Syncapp (as consent_ledger does).
HUB_SYSTEM = "Syncapp"


class PairClosed(Exception):
    """The pair is no longer open: someone merged or dismissed it meanwhile."""


class RemoteMergeFailed(Exception):
    """A system refused to merge (or archive) its second record; the hub was left as it was."""


class PairChanged(Exception):
    """The two contacts' links changed while their records were being merged; try again."""


class PersonSuppressed(ValueError):
    """One of the two contacts holds an email or a phone erased on request."""


# Contacts whose identifiers are checked against the suppression list per query.
SUPPRESSION_CHECK_CHUNK = 500


def suppressed_contact_ids(contacts: Iterable[tuple[int, str | None, str | None]]) -> set[int]:
    """Return the ids among (id, email, phone) rows of the contacts holding an identifier erased on request."""
    rows = list(contacts)
    suppressed = suppressed_among([email for _, email, _ in rows if email], [phone for _, _, phone in rows if phone])
    if not suppressed:
        return set()
    return {pk for pk, email, phone in rows
            if (email and identifier_form(EMAIL, email) in suppressed) or (phone and phone in suppressed)}


def duplicate_pairs_to_review(pairs: QuerySet[DuplicatePair]) -> QuerySet[DuplicatePair]:
    """Return the open pairs among `pairs`, leaving out those holding a person erased on request.

    That includes a pair one of whose contacts an erasure deleted already (its side is empty).
    """
    open_pairs = pairs.filter(status=DuplicatePair.Status.OPEN, contact_a__isnull=False, contact_b__isnull=False)
    if not Suppression.objects.exists():
        return open_pairs
    contacts = (Contact.objects.filter(Q(pk__in=open_pairs.values("contact_a_id"))
                                       | Q(pk__in=open_pairs.values("contact_b_id")))
                .order_by("pk").values_list("pk", "email", "phone"))
    suppressed: set[int] = set()
    chunk: list[tuple[int, str | None, str | None]] = []
    for row in contacts.iterator(chunk_size=SUPPRESSION_CHECK_CHUNK):
        chunk.append(row)
        if len(chunk) == SUPPRESSION_CHECK_CHUNK:
            suppressed |= suppressed_contact_ids(chunk)
            chunk = []
    suppressed |= suppressed_contact_ids(chunk)
    return open_pairs.exclude(contact_a_id__in=suppressed).exclude(contact_b_id__in=suppressed)


def _refuse_suppressed(contact_ids: list[int]) -> None:
    if suppressed_contact_ids(Contact.objects.filter(pk__in=contact_ids).values_list("pk", "email", "phone")):
        # The message names neither the address nor the number: it is shown and may be logged.
        raise PersonSuppressed("One of the two contacts holds an email or a phone erased on request: it is not "
                               "merged into anyone, and its deletion request erases it from the hub.")


@dataclass(frozen=True)
class LinkPlan:
    """What becomes of each link of the two contacts."""

    # Links of the other contact to systems the survivor has no (live) record in.
    moved: list[RecordLink]
    # Links that go: the other's where the survivor keeps its own, or the survivor's
    # empty or archived link where the other has a live record.
    dropped: list[RecordLink]
    # (survivor's link, other's link) with a live record each in one system.
    both_live: list[tuple[RecordLink, RecordLink]]


@dataclass(frozen=True)
class RemoteMerge:
    connection_id: int
    connection_name: str
    kept_id: str
    merged_id: str
    how: str  # "merged", or "archived" where the system cannot merge

    def as_json(self) -> dict[str, str]:
        return {"connection": self.connection_name, "kept": self.kept_id, "merged": self.merged_id, "how": self.how}


def _is_live(link: RecordLink) -> bool:
    return bool(link.external_id) and not link.archived


def _link_plan(survivor_id: int, other_id: int) -> LinkPlan:
    links = (RecordLink.objects.filter(contact_id__in=[survivor_id, other_id])
             .select_related("connection").order_by("pk"))
    survivor_links = {link.connection_id: link for link in links if link.contact_id == survivor_id}
    moved, dropped, both_live = [], [], []
    for link in links:
        if link.contact_id != other_id:
            continue
        kept = survivor_links.get(link.connection_id)
        if kept is None:
            moved.append(link)
        elif _is_live(kept) and _is_live(link):
            both_live.append((kept, link))
        elif _is_live(link):
            moved.append(link)
            dropped.append(kept)
        else:
            dropped.append(link)
    return LinkPlan(moved=moved, dropped=dropped, both_live=both_live)


def _remote_records_merge(both_live: list[tuple[RecordLink, RecordLink]]) -> list[RemoteMerge]:
    """Merge each system's second record into the survivor's, or archive it where merging is not offered."""
    done = []
    for kept, merged in both_live:
        connection = kept.connection
        try:
            kept_id, how = _records_merge(provider_for(connection), kept.external_id, merged.external_id)
        except ProviderError as error:
            raise RemoteMergeFailed(f"{connection.name} refused to merge its records: {error}") from error
        done.append(RemoteMerge(connection.pk, connection.name, kept_id, merged.external_id, how))
    return done


def _records_merge(provider, kept_id: str, merged_id: str) -> tuple[str, str]:
    """Return (the survivor's record id, "merged" or "archived") once `merged_id` is gone from the system."""
    try:
        return str(provider.merge_records(kept_id, merged_id)), "merged"
    except MergeNotSupported:
        provider.archive(merged_id)
        return kept_id, "archived"
    except ProviderError as error:
        # An earlier attempt merged these records and then failed in another system,
        # leaving the hub as it was: the other record gone while the survivor's is there
        # is this merge done, and the retry goes on.
        if error.status == 404:
            found = {record.external_id for record in provider.read_by_ids([kept_id, merged_id])}
            if found == {kept_id}:
                return kept_id, "merged"
        raise


def _values_take(survivor: Contact, other: Contact) -> dict[str, list]:
    """Fill the survivor's empty hub values from the other's; return {field: [old, new]} taken."""
    taken = {}
    for name in VALUE_FIELDS:
        ours, theirs = getattr(survivor, name), getattr(other, name)
        if is_empty(ours) and not is_empty(theirs):
            taken[name] = [ours, theirs]
            setattr(survivor, name, theirs)
    attributes = dict(survivor.attributes or {})
    for key, theirs in (other.attributes or {}).items():
        if is_empty(attributes.get(key)) and not is_empty(theirs):
            taken[f"attributes.{key}"] = [attributes.get(key), theirs]
            attributes[key] = theirs
    survivor.attributes = attributes
    return taken


def _consent_join(survivor: Contact, other: Contact, *, user, now) -> dict[str, list]:
    """Give the survivor the most restrictive consent of the two, per channel, in its ledger."""
    changes = {}
    for column, channel in CONSENT_CHANNELS.items():
        ours, theirs = getattr(survivor, column), getattr(other, column)
        joined = most_restrictive(ours, theirs)
        if joined == ours:
            continue
        changes[column] = [ours, joined]
        setattr(survivor, column, joined)
        ConsentEvent.objects.create(
            contact=survivor, channel=channel, state=theirs, previous_state=ours, hub_state=joined,
            system=HUB_SYSTEM, evidence=ConsentEvent.Evidence.USER, occurred_at=now, actor=user,
            note=f"Merged with contact #{other.pk}, whose state this was.",
        )
    # An explicit opt-in stands behind a subscription only: the newest of the two is kept
    # when the merged state is subscribed, and a restriction either contact held ends it.
    opt_ins = [c.email_opt_in_at for c in (survivor, other) if c.email_consent == SUBSCRIBED and c.email_opt_in_at]
    survivor.email_opt_in_at = max(opt_ins, default=None) if survivor.email_consent == SUBSCRIBED else None
    return changes


def _conflicts_move(survivor: Contact, other: Contact, *, user, now) -> None:
    """Give the other's conflicts to the survivor, closing those the survivor already has open."""
    open_here = dict(
        ((sync_id, hub_field), pk)
        for pk, sync_id, hub_field in Conflict.objects.filter(contact=survivor, status=Conflict.Status.OPEN)
        .values_list("pk", "sync_id", "hub_field")
    )
    for conflict in Conflict.objects.filter(contact=other, status=Conflict.Status.OPEN):
        kept_pk = open_here.get((conflict.sync_id, conflict.hub_field))
        if kept_pk is None:
            continue
        # Two open conflicts on one field of one contact cannot stand (one_open_conflict_per_field):
        # the survivor's stays for the reviewer, this one is closed as its duplicate.
        conflict.status = Conflict.Status.SETTLED
        conflict.resolution = Conflict.Resolution.SETTLED
        conflict.reason = f"Contact #{other.pk} was merged into #{survivor.pk}, whose conflict #{kept_pk} stays open."
        conflict.resolved_by = user
        conflict.resolved_at = now
        conflict.save(update_fields=["status", "resolution", "reason", "resolved_by", "resolved_at", "updated_at"])
    # The conflicts that move now hold the survivor's field: "the hub's value" is its.
    for conflict in Conflict.objects.filter(contact=other):
        conflict.contact = survivor
        conflict.hub_value = plain(survivor.hub_value(conflict.hub_field))
        conflict.save(update_fields=["contact", "hub_value", "updated_at"])


def _pairs_move(survivor: Contact, other: Contact, *, merged_pair: DuplicatePair) -> None:
    """Re-point the other's pairs to the survivor, dropping those the survivor already has."""
    pairs = DuplicatePair.objects.filter(Q(contact_a=other) | Q(contact_b=other)).exclude(pk=merged_pair.pk)
    for pair in pairs:
        partner_id = pair.contact_b_id if pair.contact_a_id == other.pk else pair.contact_a_id
        contact_a_id, contact_b_id = sorted((partner_id, survivor.pk))
        if DuplicatePair.objects.filter(contact_a_id=contact_a_id, contact_b_id=contact_b_id).exists():
            pair.delete()
            continue
        pair.contact_a_id, pair.contact_b_id = contact_a_id, contact_b_id
        pair.save(update_fields=["contact_a", "contact_b"])


def contacts_merge(*, pair: DuplicatePair, survivor: Contact, user, reason: str = "") -> Contact:
    """Merge the pair's two contacts into `survivor` and return it.

    The survivor keeps its values and takes the other's where it has none; consent per
    channel becomes the most restrictive of the two; links, consent ledger, conflicts
    and pairs move to it; every link of it is marked pending for every sync writing its
    system, and a run of each of those syncs is requested, so each system gets the
    merged values; the other contact is deleted.

    Raises ValueError when `survivor` is not in the pair, PersonSuppressed (a ValueError)
    when either contact holds an email or a phone erased on request, PairClosed when the
    pair is no longer open, RemoteMergeFailed when a system refuses to merge its two
    records, and PairChanged when a run linked either contact anew meanwhile; the hub is
    then as it was.
    """
    if survivor.pk not in (pair.contact_a_id, pair.contact_b_id):
        raise ValueError(f"Contact #{survivor.pk} is not one of the pair's two contacts.")
    if not DuplicatePair.objects.filter(pk=pair.pk, status=DuplicatePair.Status.OPEN).exists():
        raise PairClosed
    other_id = pair.contact_b_id if survivor.pk == pair.contact_a_id else pair.contact_a_id
    # Before any system is asked to merge: the person's records there are to be erased.
    _refuse_suppressed([survivor.pk, other_id])
    # The systems' two records are merged first, before the transaction: a refusal then
    # leaves the hub as it was and the pair open, to be tried again, and no lock is held
    # while a remote API answers (on SQLite a write transaction locks the whole
    # database, and a sync run would wait on it). The other way round, a failure after
    # the commit would leave a system holding the person twice with one record unlinked.
    # With two such systems, the first may have merged when the second refuses: trying
    # again finds that merge done (_records_merge).
    remote = _remote_records_merge(_link_plan(survivor.pk, other_id).both_live)
    now = timezone.now()
    with transaction.atomic():
        pair = DuplicatePair.objects.select_for_update().get(pk=pair.pk)
        if pair.status != DuplicatePair.Status.OPEN:
            raise PairClosed
        contacts = {c.pk: c for c in Contact.objects.select_for_update().filter(pk__in=[survivor.pk, other_id])}
        survivor, other = contacts[survivor.pk], contacts[other_id]
        # A deletion request may have been filed while the systems merged.
        _refuse_suppressed([survivor.pk, other_id])
        plan = _link_plan(survivor.pk, other_id)
        # A run may have linked another record in between: its two records were not merged.
        if {(kept.connection_id, merged.external_id) for kept, merged in plan.both_live} != {
            (merge.connection_id, merge.merged_id) for merge in remote
        }:
            raise PairChanged
        changes = {**_values_take(survivor, other), **_consent_join(survivor, other, user=user, now=now)}
        survivor.save()

        gone = [link.pk for link in plan.dropped] + [merged.pk for _, merged in plan.both_live]
        RecordLink.objects.filter(pk__in=gone).delete()
        for merge in remote:
            # A system may give the merged record a new id.
            RecordLink.objects.filter(contact=survivor, connection_id=merge.connection_id).update(
                external_id=merge.kept_id
            )
        RecordLink.objects.filter(pk__in=[link.pk for link in plan.moved]).update(contact=survivor)
        # Archived records are left alone, as the engine does.
        pending_mark(links=RecordLink.objects.filter(contact=survivor, archived=False))
        ConsentEvent.objects.filter(contact=other).update(contact=survivor)
        _conflicts_move(survivor, other, user=user, now=now)
        _pairs_move(survivor, other, merged_pair=pair)

        pair.status = DuplicatePair.Status.MERGED
        pair.decided_by = user
        pair.decided_at = now
        pair.save(update_fields=["status", "decided_by", "decided_at"])
        # Built while the other contact still has its id; written after its deletion, last:
        # the chain's head stays locked until the commit (docs/security.md).
        merged = audit_event_build(
            action="contact.merged", obj=survivor, actor=user, contact_id=survivor.pk,
            changes={
                **changes,
                "merged_contact_id": [None, other.pk],
                "duplicate_pair_id": [None, pair.pk],
                "links_moved": [None, sorted(link.connection.name for link in plan.moved)],
                "records_merged": [None, [merge.as_json() for merge in remote]],
                "reason": [None, reason],
            },
        )
        other.delete()
        audit_record_many([merged])
    # The merged values reach every system now rather than at the next scheduled run.
    runs_request_for(syncs=Sync.objects.filter(
        endpoints__write=True, endpoints__connection__links__contact=survivor).distinct(), user=user)
    return survivor


def duplicate_dismiss(*, pair: DuplicatePair, user, reason: str = "") -> DuplicatePair:
    """Record that the pair's two contacts are different people; the pair stays, closed.

    The closed pair is what keeps the engine from proposing the same two contacts again.
    Raises PairClosed when the pair is no longer open.
    """
    with transaction.atomic():
        pair = DuplicatePair.objects.select_for_update().get(pk=pair.pk)
        if pair.status != DuplicatePair.Status.OPEN:
            raise PairClosed
        pair.status = DuplicatePair.Status.DISMISSED
        pair.decided_by = user
        pair.decided_at = timezone.now()
        pair.save(update_fields=["status", "decided_by", "decided_at"])
        # About two people: one event in the trail of each (person search and subject
        # access find events by their contact), each naming both.
        for contact_id in (pair.contact_a_id, pair.contact_b_id):
            audit_record(
                action="duplicate.dismissed", obj=pair, actor=user, contact_id=contact_id,
                changes={
                    "status": [DuplicatePair.Status.OPEN, DuplicatePair.Status.DISMISSED],
                    "contacts": [None, [pair.contact_a_id, pair.contact_b_id]],
                    "reason": [None, reason],
                },
            )
    return pair
