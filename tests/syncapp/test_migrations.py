"""Data migrations, run as functions over today's models."""
import importlib

import pytest
from django.apps import apps

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
