"""What this sync must push after a pull page: its pending marks on the systems it writes.

Every contact of the page is checked, changed or not: a system added to the sync later,
or a push lost to a crash, is caught up by the next read of the contact. The decision
for each system is the engine's (engine.push_decision); this module loads what it needs
in a fixed number of queries and writes the marks (services.pending).
"""
from __future__ import annotations

from functools import partial

from django.db.models import Exists, OuterRef

from syncapp.engine.push_decision import Verdict, push_verdict
from syncapp.models import Contact, PendingPush, RecordLink
from syncapp.services.page_changes import NewLink, PageChanges
from syncapp.services.pending import pending_clear, pending_mark
from syncapp.services.plan import EndpointPlan


def pending_marks_find(changes: PageChanges, touched: list[Contact]) -> None:
    """Mark for this sync the links of every system it writes that lacks a contact's current values.

    A contact is not sent where it lacks the keys the system keys its records by (not
    applicable: it waits), nor while its record here is archived, nor while it waits
    for a duplicate review. Fields held back by an open conflict are left out of the
    comparison.
    """
    writers = [writer.connection.pk for writer in changes.plan.writers]
    # Contacts this page created have no links yet but the page's own, no mark and no
    # duplicate pair saved (the page flags its pairs after its marks): only the others
    # are looked up, in one query, so a page of new contacts asks nothing here.
    created = {id(contact) for contact in changes.new_contacts}
    known = [contact for contact in touched if id(contact) not in created]
    existing: dict[tuple[int, int], RecordLink] = {}
    marked: set[int] = set()
    if writers and known:
        # Marked by another sync or none: this sync's mappings decide what it owes.
        # By the whole of the marks' unique index (sync, connection, link), not a range of it.
        mark = PendingPush.objects.filter(sync_id=changes.plan.sync.pk, connection_id=OuterRef("connection_id"),
                                          link_id=OuterRef("pk"))
        for link in (RecordLink.objects.filter(connection_id__in=writers, contact_id__in=[c.pk for c in known])
                     .annotate(marked=Exists(mark))):
            if link.connection_id != changes.connection.pk:
                existing[(link.connection_id, link.contact_id)] = link
            if link.marked:
                marked.add(link.pk)
    new_on_hold, saved_on_hold = _on_hold(changes, known)
    for contact in touched:
        reader_link = changes.reader_links[id(contact)]
        if reader_link.archived:
            continue
        held = changes.book.held(contact.pk)
        for writer in changes.plan.writers:
            if writer.connection.pk == changes.connection.pk:
                link = reader_link
            else:
                link = existing.get((writer.connection.pk, contact.pk))
            exists_there = link is not None and link.external_id is not None
            verdict = push_verdict(
                missing=writer.keys_missing(contact, exists_there=exists_there),
                linked=link is not None,
                archived=link is not None and link.archived,
                marked=link is not None and link.pk in marked,
                on_hold=id(contact) in new_on_hold or contact.pk in saved_on_hold,
                differs=partial(_differs, writer, contact, link, held),
            )
            if verdict is not Verdict.SEND:
                continue
            if link is None:
                # Not in that system yet: everything the contact holds is news there.
                link = NewLink(contact=contact, connection_id=writer.connection.pk)
                changes.new_links.append(link)
            changes.marking.append(link)


def _differs(writer: EndpointPlan, contact: Contact, link: RecordLink | NewLink, held: set[str]) -> bool:
    """Whether the system lacks something of the contact's, held fields left out (asked last: builds a payload)."""
    return writer.differs(writer.payload(contact, link, held=held), link)


def _on_hold(changes: PageChanges, known: list[Contact]) -> tuple[set[int], set[int]]:
    """The contacts not pushed anywhere while a same-email duplicate pair holds them.

    The later contact of a same-email pair is not pushed while the pair is open, nor
    after "not the same person": systems keyed by email would land it on the record of
    the first one. Only a merge ends the hold. Returned as the `id()` of the contacts
    new in this page, and the ids of `known` ones (contacts saved before the page,
    loaded with `held_as_duplicate` by services.page_load).
    """
    new = {id(contact) for contact, _ in changes.duplicates}
    return new, {contact.pk for contact in known if contact.held_as_duplicate}


def pending_marks_write(changes: PageChanges) -> None:
    """Write the page's marks once its links are written (new ones have no id before: the insert returns it).

    Marks an archiving cleared go first: a link archived and marked again for this
    sync keeps only this sync's mark (its push archives the record there).
    """
    pending_clear(link_ids=changes.unmarking)
    if not changes.marking:
        return
    pending_mark(links=RecordLink.objects.filter(pk__in=[link.pk for link in changes.marking]),
                 syncs=[changes.plan.sync.pk])
