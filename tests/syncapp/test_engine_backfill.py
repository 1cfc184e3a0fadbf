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


def test_a_key_names_the_system_and_the_way_whose_mapping_changed():
    from syncapp.engine.backfill import backfill_key, backfill_key_split

    assert backfill_key("first_name") == "first_name"
    assert backfill_key("first_name", 3) == "first_name@3"
    assert backfill_key("first_name", 3, "out") == "first_name@3:out"
    assert backfill_key_split("first_name@3:out") == ("first_name", 3, "out")
    assert backfill_key_split("attributes.job_title@12") == ("attributes.job_title", 12, "both")
    assert backfill_key_split("first_name") == ("first_name", None, "both")


def test_only_the_changed_system_and_way_are_compared_afresh():
    from syncapp.engine.backfill import afresh_for

    keys = ["first_name@1:in", "phone@2:out", "company@2", "last_name"]
    assert afresh_for(keys, 1, "in") == {"first_name", "last_name"}
    assert afresh_for(keys, 1, "out") == {"last_name"}
    assert afresh_for(keys, 2, "in") == {"company", "last_name"}
    assert afresh_for(keys, 2, "out") == {"phone", "company", "last_name"}


def test_systems_to_read_are_chosen_by_the_keys_hub_fields():
    assert endpoints_to_read_fully(reads={1: ["first_name"], 2: ["phone"]}, backfill_fields=["first_name@2:out"]) == {1}
