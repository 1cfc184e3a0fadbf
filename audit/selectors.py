"""Reads of the audit trail: who reads which events, the filters' choices, keyset pages and chunks.

The trail is read newest first by id, a page at a time after the last id seen (keyset
pagination): every page costs the same however deep, and nothing ever counts the table.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.db.models import BigIntegerField, F, Q, QuerySet
from django.db.models.lookups import In

from audit.models import AuditEvent
from syncapp.models import Sync, SyncRun
from syncapp.pagination import distinct_values
from syncapp.roles import COMPLIANCE, user_has_role
from syncapp.search import NotIndexed

PAGE_SIZE = 50
# Rows read per query by the exports: big enough to amortize the query, small enough
# to keep the memory of a million-row export flat.
CHUNK_SIZE = 2000

# What the syncs' own events are about, besides their runs and contacts.
SYNC_OBJECT_TYPES = ("sync", "syncconnection", "fieldmapping", "connection", "conflict", "duplicatepair", "contact")
# Compliance's own work: deletion requests and the contacts they erase, the suppression
# list, retention purges, exports of the trail and subject access exports. Some of these
# events name a contact; marketers and reviewers still never see them.
COMPLIANCE_ACTION_PREFIXES = ("audit.", "deletion.", "contact.erased", "suppression.", "retention.")


def trail_events(*, user) -> QuerySet[AuditEvent]:
    """Return the events `user` may read, newest first.

    Compliance staff (and superusers) read the whole trail. Marketers and reviewers read
    the events of their syncs; every sync is every marketer's in Syncapp, so these are
    the events tied to a run, to a contact or to what a sync is made of (syncs, their
    connections and mappings, conflicts, duplicates), except compliance's own work
    (COMPLIANCE_ACTION_PREFIXES). Everything else stays compliance's: the security log
    (failed logins name people by their username and address), key rotations, and any
    kind of event added later until it is placed here.
    Users without the view permission read nothing.
    """
    events = AuditEvent.objects.order_by("-id")
    if user_has_role(user, COMPLIANCE):
        return events
    if not user.has_perm("audit.view_auditevent"):
        return events.none()
    tied_to_a_sync = Q(run_id__isnull=False) | Q(contact_id__isnull=False) | Q(object_type__in=SYNC_OBJECT_TYPES)
    return events.filter(tied_to_a_sync).exclude(_compliance_actions())


def action_is_compliance_only(action: str) -> bool:
    return action.startswith(COMPLIANCE_ACTION_PREFIXES)


def _compliance_actions() -> Q:
    condition = Q()
    for prefix in COMPLIANCE_ACTION_PREFIXES:
        condition |= Q(action__startswith=prefix)
    return condition


def audit_actions() -> list[str]:
    """Return every action the trail holds, sorted."""
    return _distinct_values("action")


def audit_systems() -> list[str]:
    """Return every system named by the trail (connections, "hub", "Syncapp"), sorted."""
    return [system for system in _distinct_values("system") if system]


def _distinct_values(column: str) -> list[str]:
    """Return a column's distinct values by skipping through its (column, id) index."""
    return distinct_values(AuditEvent, column)


def sync_events(events: QuerySet[AuditEvent], sync: Sync) -> QuerySet[AuditEvent]:
    """Return the events about the sync itself or written by one of its runs."""
    runs = SyncRun.objects.filter(sync=sync).values("pk")
    about_the_sync = Q(object_type="sync", object_id=str(sync.pk))
    if connections[events.db].vendor != "sqlite":
        # PostgreSQL walks the primary key backwards, the runs in a hashed subplan, and
        # stops after a page (it has the statistics to choose).
        return events.filter(about_the_sync | Q(run_id__in=runs))
    # Without statistics SQLite plans `... OR run_id IN (runs)` as a MULTI-INDEX OR: every
    # event of every run of the sync through audit_run_id_idx, then a sort of them all
    # before the first page is kept (591 ms p95 for a sync of a million events). With the
    # run term kept off its index the OR cannot use indexes, and SQLite walks the primary
    # key backwards (the trail's order), testing each row, and stops after the page: the
    # cost is the distance walked to find a page, small for a sync whose events are dense
    # in the trail. The rows matched are the same: `+run_id` is run_id.
    not_indexed = NotIndexed(F("run_id"), output_field=BigIntegerField())
    return events.filter(about_the_sync | Q(In(not_indexed, runs)))


def first_id_from(moment: datetime, *, using: str) -> int | None:
    """Return the id of the first event written at or after `moment`, or None when there is none.

    One probe of the created_at index (ordered by created_at, then id, as every index
    ends with the row's key): the smallest id among the first events at or after it.

    The trail's time filters rely on created_at never falling as the id rises: an event
    at or after `moment` then has an id at or above this one, an event before it an id
    below. It holds because audit.services.audit_events_append, the only writer of
    events (AuditEvent.save calls it, and the row's created_at is the `now` it sets,
    whatever the event held), takes the chain's head lock, then reads the clock, then
    inserts, so ids are assigned under the lock in the order the clock was read; the
    rows of one append share one time. It assumes one clock that does not step back:
    writers whose clocks disagree, or a clock set back, would make the filter miss or
    add the few events written across the step.
    """
    row = (AuditEvent.objects.using(using).filter(created_at__gte=moment)
           .order_by("created_at", "id").values_list("id", flat=True)[:1])
    return next(iter(row), None)


def events_between(events: QuerySet[AuditEvent], *, since: datetime | None = None,
                   until: datetime | None = None) -> QuerySet[AuditEvent]:
    """Return the events written at or after `since` and before `until`, as bounds on the id.

    A range on created_at alone is served by no index together with the trail's order by
    id: SQLite sorted every event of the range (six months: 861 ms p95 on a million
    rows), PostgreSQL walked the ids back from the newest, skipping every event newer
    than the range. Turned into ids (see first_id_from for why the two are the same
    rows), the range is one walk of the primary key, or of the (column, id) index of
    another filter, stopping after a page like every other page of the trail.
    """
    if since is not None:
        first = first_id_from(since, using=events.db)
        if first is None:
            return events.none()
        events = events.filter(id__gte=first)
    if until is not None:
        beyond = first_id_from(until, using=events.db)
        if beyond is not None:
            events = events.filter(id__lt=beyond)
    return events


@dataclass(frozen=True)
class TrailPage:
    """One page of events, newest first, and the ids its "Newer" and "Older" links go from."""

    events: Sequence[AuditEvent]
    newer_than: int | None  # the page of events newer than this id, when there are any
    older_than: int | None  # the page of events older than this id, when there are any


def trail_page(events: QuerySet[AuditEvent], *, after: int | None = None, before: int | None = None,
               size: int = PAGE_SIZE) -> TrailPage:
    """Return the page of `events` following id `after` (older ones), or preceding id `before` (newer ones).

    Without either, the newest page. One more row than shown is read to know whether
    another page follows.
    """
    events = events.select_related("actor")
    if before is not None:
        rows = list(events.filter(id__gt=before).order_by("id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return TrailPage(rows, newer_than=rows[0].pk if more_newer else None,
                         older_than=rows[-1].pk if rows else before + 1)
    if after is not None:
        events = events.filter(id__lt=after)
    rows = list(events.order_by("-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    newer_than = None
    if after is not None:
        newer_than = rows[0].pk if rows else after - 1
    return TrailPage(rows, newer_than=newer_than, older_than=rows[-1].pk if more_older else None)


def events_in_chunks(events: QuerySet[AuditEvent], *, fields: Sequence[str], below: int | None = None,
                     size: int = CHUNK_SIZE) -> Iterator[list[tuple]]:
    """Yield `events` as lists of value tuples of `fields`, newest first, `size` rows per query.

    Each query starts below the last id of the one before (keyset), so the cost of a
    chunk does not grow with the depth, and only one chunk is held at a time. `fields`
    must start with "id". `below`: only events older than this id.
    """
    events = events.order_by("-id")
    while True:
        page = events.filter(id__lt=below) if below is not None else events
        rows = list(page.values_list(*fields)[:size])
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        below = rows[-1][0]
