"""Pending-push marks per sync: who gets marked, what is cleared, and how the push reads them."""
import pytest
from django.db import connection, transaction

from syncapp.models import Contact, PendingPush, RecordLink, Sync, SyncConnection
from syncapp.services.pending import pending_clear, pending_links, pending_mark, pending_marks
from tests.workspace import connection_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def systems():
    """A CRM and an audience; "Names" reads the CRM and writes the audience, "Both ways" writes both."""
    crm = connection_make("CRM", "hubspot")
    audience = connection_make("Audience", "mailchimp")
    names = Sync.objects.create(name="Names")
    SyncConnection.objects.create(sync=names, connection=crm, write=False)
    SyncConnection.objects.create(sync=names, connection=audience, read=False)
    both = Sync.objects.create(name="Both ways")
    SyncConnection.objects.create(sync=both, connection=crm)
    SyncConnection.objects.create(sync=both, connection=audience)
    return {"crm": crm, "audience": audience, "names": names, "both": both}


def links_of(systems, *emails):
    """Create a contact per email, linked to both systems; return the links."""
    links = []
    for email in emails:
        contact = Contact.objects.create(email=email)
        links += [RecordLink.objects.create(contact=contact, connection=systems[name]) for name in ("crm", "audience")]
    return links


def marks() -> set[tuple[str, str, str]]:
    return set(PendingPush.objects.values_list("sync__name", "connection__name", "link__contact__email"))


def test_a_change_outside_a_run_marks_every_sync_writing_each_links_system(systems):
    links_of(systems, "ann@example.com")
    pending_mark(links=RecordLink.objects.all())
    # "Names" only reads the CRM: no mark there for it.
    assert marks() == {("Names", "Audience", "ann@example.com"), ("Both ways", "Audience", "ann@example.com"),
                       ("Both ways", "CRM", "ann@example.com")}


def test_a_run_marks_for_its_own_sync_and_only_where_it_writes(systems):
    links_of(systems, "ann@example.com")
    pending_mark(links=RecordLink.objects.all(), syncs=[systems["names"].pk])
    assert marks() == {("Names", "Audience", "ann@example.com")}


def test_marking_again_keeps_one_mark_per_sync_and_link(systems):
    links_of(systems, "ann@example.com")
    pending_mark(links=RecordLink.objects.all())
    pending_mark(links=RecordLink.objects.all())
    pending_mark(links=RecordLink.objects.filter(pk__in=[]))
    pending_mark(links=RecordLink.objects.all(), syncs=[])
    assert PendingPush.objects.count() == 3


def test_a_sync_clears_its_own_marks_and_leaves_the_others(systems):
    crm_link, audience_link = links_of(systems, "ann@example.com")
    pending_mark(links=RecordLink.objects.all())
    pending_clear(link_ids=[audience_link.pk], sync_id=systems["names"].pk)
    assert marks() == {("Both ways", "Audience", "ann@example.com"), ("Both ways", "CRM", "ann@example.com")}
    # Nothing is to be sent there any more (the record was archived): every sync's mark goes.
    pending_clear(link_ids=[crm_link.pk, audience_link.pk])
    assert marks() == set()


def test_the_push_reads_one_sync_and_system_in_link_order_after_the_last_id(systems):
    links = links_of(systems, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
    pending_mark(links=RecordLink.objects.all())
    audience = [link.pk for link in links if link.connection_id == systems["audience"].pk]
    both, names = systems["both"].pk, systems["names"].pk
    pending_clear(link_ids=[audience[2]], sync_id=names)
    assert pending_marks(sync_id=both, connection_id=systems["audience"].pk, after=audience[0]).count() == 3
    page = pending_links(sync_id=names, connection_id=systems["audience"].pk, after=audience[0], limit=2)
    assert list(page.values_list("pk", flat=True)) == [audience[1], audience[3]]


def explained(queryset) -> str:
    """Return the database's plan for `queryset`; on PostgreSQL, whether an index can serve it at all
    (with a few rows a sequential scan is cheaper, and is chosen)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


def test_the_push_counts_a_range_of_the_marks_unique_index(systems):
    links_of(systems, "a@example.com", "b@example.com")
    pending_mark(links=RecordLink.objects.all())
    plan = explained(pending_marks(sync_id=systems["both"].pk, connection_id=systems["audience"].pk, after=0))
    if connection.vendor == "sqlite":
        # The unique constraint's index, which SQLite names itself, read in its order (no sort).
        assert "SEARCH syncapp_pendingpush USING COVERING INDEX sqlite_autoindex_syncapp_pendingpush" in plan
        assert "(sync_id=? AND connection_id=? AND link_id>?)" in plan
        assert "TEMP B-TREE" not in plan
    else:
        assert "using one_pending_push_per_sync_and_link" in plan
        assert "Sort" not in plan


def test_a_push_page_takes_its_link_ids_from_the_index_then_reads_the_links_by_key(systems):
    links_of(systems, "a@example.com", "b@example.com")
    pending_mark(links=RecordLink.objects.all())
    page = pending_links(sync_id=systems["both"].pk, connection_id=systems["audience"].pk, after=0, limit=1000)
    plan = explained(page.values_list("pk", "external_id", "contact__email"))
    if connection.vendor == "sqlite":
        # The subquery's marks (aliased U0), then each link and contact by primary key.
        assert "USING COVERING INDEX sqlite_autoindex_syncapp_pendingpush" in plan
        assert "(sync_id=? AND connection_id=? AND link_id>?)" in plan
        assert "SEARCH syncapp_recordlink USING INTEGER PRIMARY KEY" in plan
        assert "SCAN syncapp_recordlink" not in plan
    else:
        assert "on syncapp_pendingpush" in plan and "Index Cond: (id = " in plan
        assert "Seq Scan" not in plan
