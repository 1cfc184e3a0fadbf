"""What the hub already knows about one page's records: one round of queries, no decisions.

The candidate contacts (linked to a record read, or sharing its email or phone), their
links to the system being read, and which contact each record is already linked to;
`identity_index` hands them to the engine's matcher (engine.identity) as plain data.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from connections.models import Connection
from connections.providers.base import RemoteRecord
from syncapp.engine.identity import IdentityIndex, KnownContact
from syncapp.models import Contact, DuplicatePair, RecordLink
from syncapp.services.incoming import Incoming


@dataclass(frozen=True)
class PageRows:
    # Candidate contacts by id.
    contacts: dict[int, Contact]
    # Their links to the system being read, by contact id.
    links: dict[int, RecordLink]
    # External id read -> the contact already linked to it (by external or stable id).
    linked: dict[str, int]


def page_rows_load(*, connection: Connection, incoming: list[Incoming], archived: list[RemoteRecord]) -> PageRows:
    """Load a page's candidate contacts, their links to `connection`, and the records already linked (two queries).

    The links of the records read are a subquery of the contacts' query; the links
    query that follows returns them among the candidates' links, so which contact each
    record is linked to is read from there. Each contact comes with `held_as_duplicate`:
    whether an open or dismissed same-email pair holds it back from every push
    (services.page_marks).
    """
    external_ids = [item.record.external_id for item in incoming] + [record.external_id for record in archived]
    stable_ids = {item.record.stable_id for item in incoming if item.record.stable_id}
    emails = {item.keys.email for item in incoming if item.keys.email}
    # A phone only matches where one side has no email (see engine.identity): asking
    # for no more keeps a switchboard number shared by thousands out of every page.
    phones_alone = {item.keys.phone for item in incoming if item.keys.phone and not item.keys.email}
    phones_with_email = {item.keys.phone for item in incoming if item.keys.phone and item.keys.email}
    by_id = Q(external_id__in=external_ids)
    if stable_ids:
        by_id |= Q(stable_id__in=stable_ids)
    linked_contacts = RecordLink.objects.filter(by_id, connection=connection).values("contact_id")
    candidates = (
        Q(pk__in=linked_contacts)
        | Q(email__in=emails)
        | Q(phone__in=phones_alone)
        | Q(phone__in=phones_with_email, email__isnull=True)
    )
    held = DuplicatePair.objects.filter(contact_b=OuterRef("pk"), reason=DuplicatePair.Reason.SAME_EMAIL,
                                        status__in=[DuplicatePair.Status.OPEN, DuplicatePair.Status.DISMISSED])
    contacts = {contact.pk: contact
                for contact in Contact.objects.filter(candidates).annotate(held_as_duplicate=Exists(held)).order_by()}
    links = {
        link.contact_id: link
        for link in RecordLink.objects.filter(connection=connection, contact_id__in=list(contacts))
    } if contacts else {}
    wanted = set(external_ids)
    linked = {link.external_id: link.contact_id for link in links.values() if link.external_id in wanted}
    by_stable = {link.stable_id: link.contact_id for link in links.values()
                 if link.stable_id and link.stable_id in stable_ids}
    for item in incoming:
        # An email changed in a system whose record id follows the email (Mailchimp):
        # the stable id finds the record's link, and the link takes the new id.
        stable_id = item.record.stable_id
        if item.record.external_id not in linked and stable_id in by_stable:
            linked[item.record.external_id] = by_stable[stable_id]
    return PageRows(contacts=contacts, links=links, linked=linked)


def identity_index(rows: PageRows) -> IdentityIndex:
    """The loaded rows as the matcher's plain data."""
    return IdentityIndex.build(
        links=rows.linked,
        contacts=[
            KnownContact(contact.pk, contact.email, contact.phone,
                         rows.links[contact.pk].external_id if contact.pk in rows.links else None)
            for contact in rows.contacts.values()
        ],
    )
