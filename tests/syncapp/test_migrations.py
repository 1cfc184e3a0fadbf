"""Data migrations: run as functions over today's models, or migrated forward and back on the test database."""
import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from syncapp.models import Sync, SyncConnection
from tests.workspace import connection_make

pytestmark = pytest.mark.django_db

forget = importlib.import_module("syncapp.migrations.0010_forget_invented_legal_basis")
CARRIED_OVER = "Carried over from the connection's status_if_new setting"


def test_0010_unchooses_the_statuses_0008_gave_a_legal_basis_nobody_recorded():
    mailchimp = connection_make("Mailchimp", "mailchimp", settings={"status_if_new": "subscribed"})
    carried = SyncConnection.objects.create(sync=Sync.objects.create(name="Carried"), connection=mailchimp,
                                            new_member_status="subscribed", new_member_legal_basis=CARRIED_OVER)
    chosen = SyncConnection.objects.create(sync=Sync.objects.create(name="Chosen"), connection=mailchimp,
                                           new_member_status="subscribed",
                                           new_member_legal_basis="Consent collected on the signup form")
    pending = SyncConnection.objects.create(sync=Sync.objects.create(name="Pending"), connection=mailchimp,
                                            new_member_status="pending")

    forget.forget_invented_legal_basis(apps, None)

    carried.refresh_from_db()
    assert (carried.new_member_status, carried.new_member_legal_basis) == ("", "")
    chosen.refresh_from_db()
    assert (chosen.new_member_status, chosen.new_member_legal_basis) == (
        "subscribed", "Consent collected on the signup form")
    pending.refresh_from_db()
    assert pending.new_member_status == "pending"


@pytest.mark.django_db(transaction=True)
def test_0012_gives_each_pending_link_a_mark_for_every_sync_writing_its_system_and_back():
    before, after = ("syncapp", "0011_run_suppressed_count"), ("syncapp", "0012_pending_push_per_sync")
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        old = executor.loader.project_state([before]).apps
        Connection = old.get_model("connections", "Connection")
        Sync = old.get_model("syncapp", "Sync")
        SyncConnection = old.get_model("syncapp", "SyncConnection")
        Contact = old.get_model("syncapp", "Contact")
        RecordLink = old.get_model("syncapp", "RecordLink")
        crm, audience, sms = (Connection.objects.create(name=name, provider=provider, base_url="http://127.0.0.1:9/")
                              for name, provider in (("CRM", "hubspot"), ("Audience", "mailchimp"), ("SMS", "sms")))
        names, both, reading = (Sync.objects.create(name=name) for name in ("Names", "Both ways", "Reading"))
        for sync, system, write in ((names, crm, False), (names, audience, True), (both, crm, True),
                                         (both, audience, True), (reading, audience, False), (reading, sms, False)):
            SyncConnection.objects.create(sync=sync, connection=system, write=write)
        ann, bob = Contact.objects.create(email="ann@example.com"), Contact.objects.create(email="bob@example.com")
        RecordLink.objects.create(contact=ann, connection=crm, pending_push=True)
        RecordLink.objects.create(contact=ann, connection=audience, pending_push=True)
        RecordLink.objects.create(contact=bob, connection=audience, pending_push=False)
        # Pending where no sync writes: nobody would ever push it.
        RecordLink.objects.create(contact=bob, connection=sms, pending_push=True)

        executor = MigrationExecutor(connection)
        executor.migrate([after])
        PendingPush = executor.loader.project_state([after]).apps.get_model("syncapp", "PendingPush")
        assert set(PendingPush.objects.values_list("sync__name", "connection__name", "link__contact__email")) == {
            ("Names", "Audience", "ann@example.com"), ("Both ways", "Audience", "ann@example.com"),
            ("Both ways", "CRM", "ann@example.com"),
        }

        executor = MigrationExecutor(connection)
        executor.migrate([before])
        RecordLink = executor.loader.project_state([before]).apps.get_model("syncapp", "RecordLink")
        assert set(RecordLink.objects.values_list("contact__email", "connection__name", "pending_push")) == {
            ("ann@example.com", "CRM", True), ("ann@example.com", "Audience", True),
            ("bob@example.com", "Audience", False), ("bob@example.com", "SMS", False),
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
