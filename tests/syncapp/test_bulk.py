"""Bulk writes: one statement per table, and the same refusals as a plain INSERT or UPDATE."""
import pytest
from django.db import DataError, transaction
from django.db import connection as database

from connections.models import Connection
from syncapp.models import Contact, RecordLink
from syncapp.services.bulk import bulk_insert_rows, bulk_update_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def connection():
    return Connection.objects.create(name="CRM", provider="hubspot", base_url="https://api.hubapi.com",
                                     access_token="token-for-bulk-tests")


def test_rows_are_inserted_and_updated_with_their_values(connection):
    contacts = [Contact(email=f"bulk{number}@example.com", first_name=f"B{number}") for number in range(3)]
    bulk_insert_rows(contacts, set_ids=True)
    links = [RecordLink(contact=contact, connection=connection, external_id=str(100 + number),
                        merge_base={"firstname": contact.first_name, "note": None})
             for number, contact in enumerate(contacts)]
    bulk_insert_rows(links, model=RecordLink)
    for link in RecordLink.objects.all():
        link.merge_base = {**link.merge_base, "lastname": "Ünïcode ✓"}
        link.archived = True
        bulk_update_rows(RecordLink, [link], ["merge_base", "archived"])
    stored = sorted(RecordLink.objects.values_list("external_id", "merge_base", "archived"))
    assert stored == [(str(100 + n), {"firstname": f"B{n}", "note": None, "lastname": "Ünïcode ✓"}, True)
                      for n in range(3)]


def test_a_value_longer_than_its_column_is_refused_not_cut(connection):
    # On PostgreSQL the rows travel as arrays cast to the columns' types; a cast to
    # varchar(200) would cut the 201st character off silently, and a cut external id
    # could link another record. SQLite keeps what it is given (it has no lengths).
    contact = Contact.objects.create(email="long@example.com")
    link = RecordLink(contact=contact, connection=connection, external_id="9" * 201)
    if database.vendor != "postgresql":
        bulk_insert_rows([link], model=RecordLink)
        assert RecordLink.objects.get().external_id == "9" * 201
        return
    with pytest.raises(DataError), transaction.atomic():
        bulk_insert_rows([link], model=RecordLink)
    assert not RecordLink.objects.exists()
    link = RecordLink.objects.create(contact=contact, connection=connection, external_id="1")
    link.external_id = "8" * 201
    with pytest.raises(DataError), transaction.atomic():
        bulk_update_rows(RecordLink, [link], ["external_id"])
    assert RecordLink.objects.get().external_id == "1"
