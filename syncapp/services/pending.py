"""Pending-push marks: which links each sync still has to push (PendingPush).

A connection can be in several syncs, each with its own mappings, so a mark names the
sync that owes the push: a run pushes only its own sync's marks, with its own mappings,
and clears only those. A run's pull marks for its own sync; a change made outside any
run (a consent statement or restriction, a reviewer's resolution, a merge) marks for
every sync that writes the link's system, and a sync with nothing of its own to send
there settles its mark without a call.

Every function here is one statement, whatever the number of links.
"""
from __future__ import annotations

from collections.abc import Collection

from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from django.db.models import QuerySet
from django.db.models.constants import OnConflict

from connections.models import Connection
from connections.registry import UnknownProvider, provider_class
from syncapp.engine.push_decision import keys_missing, keys_needed, not_applicable_reason
from syncapp.models import Contact, PendingPush, RecordLink


def pending_mark(*, links: QuerySet[RecordLink], syncs: Collection[int] | None = None) -> None:
    """Mark `links` pending for the syncs with ids `syncs`, or for every sync writing each link's system.

    Only a sync that writes a link's system gets a mark for it; marks already there
    are kept. One INSERT ... SELECT, in link order (two transactions marking the same
    links wait for each other in one order, never crosswise).
    """
    writing: dict[str, object] = {"connection__endpoints__write": True}
    if syncs is not None:
        if not syncs:
            return
        # In the same filter() as `write`: both are about one endpoint row.
        writing["connection__endpoints__sync__in"] = list(syncs)
    marks = (links.filter(**writing).order_by("pk")
             .values_list("connection__endpoints__sync_id", "connection_id", "pk"))
    alias = router.db_for_write(PendingPush)
    connection = connections[alias]
    try:
        select, params = marks.query.get_compiler(using=alias).as_sql()
    except EmptyResultSet:
        return  # no link to mark (an empty `pk__in`)
    quote = connection.ops.quote_name
    meta = PendingPush._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in ("sync", "connection", "link"))
    # INSERT OR IGNORE on SQLite, ON CONFLICT DO NOTHING on PostgreSQL.
    insert = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE)
    ignore = connection.ops.on_conflict_suffix_sql([], OnConflict.IGNORE, [], [])
    with connection.cursor() as cursor:
        cursor.execute(f"{insert} {quote(meta.db_table)} ({columns}) {select} {ignore}", params)


def pending_clear(*, link_ids: Collection[int], sync_id: int | None = None) -> None:
    """Remove the marks of these links: the sync's with `sync_id`, or every sync's (nothing is to be sent there)."""
    if not link_ids:
        return
    marks = PendingPush.objects.filter(link_id__in=list(link_ids))
    if sync_id is not None:
        marks = marks.filter(sync_id=sync_id)
    marks.delete()


def pending_marks(*, sync_id: int, connection_id: int, after: int = 0) -> QuerySet[PendingPush]:
    """Return a sync's marks for one system's links with ids above `after`, in link order.

    One range of the marks' unique index (sync, connection, link), whatever other syncs
    and systems hold: the push's counts read nothing else.
    """
    return (PendingPush.objects.filter(sync_id=sync_id, connection_id=connection_id, link_id__gt=after)
            .order_by("link_id"))


def pending_links(*, sync_id: int, connection_id: int, after: int, limit: int) -> QuerySet[RecordLink]:
    """Return the next `limit` links a sync marked for one system after link id `after`, in id order: a keyset page.

    The page's link ids are taken from the marks' index first (a LIMIT in a subquery),
    then the links are read by primary key. Joined directly, PostgreSQL may merge the
    marks with every link up to `after`, as it cannot carry `link_id > after` over to
    the links' own ids.
    """
    page = pending_marks(sync_id=sync_id, connection_id=connection_id, after=after).values("link_id")[:limit]
    return RecordLink.objects.filter(pk__in=page).order_by("pk")


def systems_not_applicable(contact: Contact) -> list[tuple[Connection, str]]:
    """Return the systems some sync writes that cannot hold this contact, each with the reason.

    A system keys its records by an email, a phone or its own id (RecordKeys); a contact
    lacking the key is never marked for it (engine.push_decision) and waits there, without
    an error, until a read of one of its records gives it the key. Two queries.
    """
    linked = {link.connection_id: link for link in contact.links.all()}
    written = Connection.objects.filter(endpoints__write=True).distinct().order_by("name")
    waiting = []
    for connection in written:
        link = linked.get(connection.pk)
        if link is not None and link.archived:
            continue
        try:
            keys = provider_class(connection.provider).keys
        except UnknownProvider:
            continue  # its syncs fail with that reason; nothing is sent there anyway
        exists_there = link is not None and link.external_id is not None
        needed = keys_needed(exists_there=exists_there, to_create=keys.to_create, to_update=keys.to_update)
        missing = keys_missing(needed, email=contact.email, phone=contact.phone)
        if missing:
            waiting.append((connection, not_applicable_reason(connection.name, missing)))
    return waiting
