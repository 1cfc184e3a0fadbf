"""Which systems a full resync or a backfill reads again (engine.backfill)."""
from syncapp.engine.backfill import endpoints_to_read_fully

HUBSPOT, MAILCHIMP, SHOP = 1, 2, 3


def test_a_full_resync_reads_every_reading_system():
    reads = {HUBSPOT: ["email", "first_name"], MAILCHIMP: ["email"]}
    assert endpoints_to_read_fully(reads=reads, backfill_fields=[]) == {HUBSPOT, MAILCHIMP}


def test_a_backfill_reads_only_the_systems_that_read_the_field():
    reads = {HUBSPOT: ["email", "attributes.jobtitle"], MAILCHIMP: ["email", "first_name"]}
    assert endpoints_to_read_fully(reads=reads, backfill_fields=["attributes.jobtitle"]) == {HUBSPOT}


def test_every_system_reading_the_field_is_read_owner_or_not():
    reads = {HUBSPOT: ["attributes.jobtitle"], MAILCHIMP: ["attributes.jobtitle"], SHOP: ["phone"]}
    assert endpoints_to_read_fully(reads=reads, backfill_fields=["attributes.jobtitle"]) == {HUBSPOT, MAILCHIMP}


def test_a_field_no_system_reads_reads_every_system_to_reach_every_linked_contact():
    reads = {HUBSPOT: ["email"], MAILCHIMP: ["email"]}
    assert endpoints_to_read_fully(reads=reads, backfill_fields=["company"]) == {HUBSPOT, MAILCHIMP}


def test_several_fields_read_every_system_that_reads_any_of_them():
    reads = {HUBSPOT: ["company"], MAILCHIMP: ["phone"], SHOP: ["email"]}
    assert endpoints_to_read_fully(reads=reads, backfill_fields=["company", "phone"]) == {HUBSPOT, MAILCHIMP}


def test_without_reading_systems_nothing_is_read():
    assert endpoints_to_read_fully(reads={}, backfill_fields=["company"]) == set()
