"""Records a system reports deleted (archived), and records that come back, in one pull page.

By the sync's delete handling (ignore, archive, mirror), a delete in one system is kept
there only, or archives the contact's records in the systems the sync writes; under
"mirror", a record coming back brings the others back too. Nothing is sent from here:
links are marked archived or pending for this sync, and its push does the rest.
"""
from __future__ import annotations

from connections.providers.base import RemoteRecord
from syncapp.models import RecordLink
from syncapp.services.page_changes import PageChanges
from syncapp.services.page_load import PageRows


def archived_take(changes: PageChanges, archived: list[RemoteRecord], rows: PageRows) -> None:
    """Take in the records the system reports archived: never new contacts.

    A linked record's link is marked archived (nothing is sent there any more). By
    the sync's delete handling, the contact's records in the other systems are then
    left alone (ignore) or archived too (archive, mirror): their links are marked
    archived and pending for this sync, and its push archives them there. An archived
    link keeps no other mark: no other sync is to send or archive anything there.
    """
    handling = changes.plan.sync.delete_handling
    spreading = handling != changes.plan.sync.DeleteHandling.IGNORE
    gone: list[int] = []
    for record in archived:
        contact_id = rows.linked.get(record.external_id)
        link = rows.links.get(contact_id) if contact_id is not None else None
        if link is None or link.archived:
            continue
        link.archived = True
        changes.link_changed(link, {"archived"})
        changes.unmarking.append(link.pk)
        changes.audits.append((rows.contacts[contact_id], "contact.archived",
                               {"system": [None, changes.connection.name], "delete_handling": [None, handling]}))
        gone.append(contact_id)
    if not (spreading and gone):
        return
    for other in RecordLink.objects.filter(contact_id__in=gone, connection_id__in=changes.other_writers(),
                                           archived=False):
        other.archived = True
        changes.link_changed(other, {"archived"})
        changes.unmarking.append(other.pk)
        if other.external_id is not None:
            changes.marking.append(other)


def restored_take(changes: PageChanges) -> None:
    """Under "mirror" delete handling, bring back the records a delete had archived elsewhere.

    The records are created again (a provider cannot be trusted to un-archive in
    place); the consent they are created with is never looser than what each system
    held before (EndpointPlan.payload).
    """
    if not changes.restored or changes.plan.sync.delete_handling != changes.plan.sync.DeleteHandling.MIRROR:
        return
    for other in RecordLink.objects.filter(contact_id__in=changes.restored, connection_id__in=changes.other_writers(),
                                           archived=True):
        other.archived = False
        other.external_id = None
        changes.link_changed(other, {"archived", "external_id"})
        changes.marking.append(other)
