"""The suppression list: keyed hashes only, found whatever the letter case, surviving key rotation."""
from datetime import date

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import DeletionRequest, Suppression
from audit.suppression import (
    identifier_key,
    identifier_keys,
    is_suppressed,
    suppress,
    suppressed_among,
    suppression_key_usage,
    suppression_keys,
)

pytestmark = pytest.mark.django_db

OLD_KEY = "k1:" + "o" * 40
NEW_KEY = "k2:" + "n" * 40


@pytest.fixture(autouse=True)
def one_key(settings):
    settings.SUPPRESSION_KEYS = [OLD_KEY]


def test_identifiers_are_kept_as_keyed_hashes_only():
    suppress(email="Ada@Example.com", phone="+14155550100")
    rows = list(Suppression.objects.values_list("kind", "key_hash", "key_id"))
    assert sorted(kind for kind, _, _ in rows) == ["email", "phone"]
    stored = " ".join(digest for _, digest, _ in rows)
    # Hex digests may hold the letters "ada"; the address would bring its "@".
    assert "ada@" not in stored.lower() and "4155550100" not in stored
    assert {key_id for _, _, key_id in rows} == {"k1"}
    assert all(len(digest) == 64 for _, digest, _ in rows)


def test_an_email_is_found_in_any_letter_case_and_a_phone_by_its_e164_form():
    suppress(email=" Ada@Example.COM ", phone="+14155550100", request=None)
    assert is_suppressed(email="ada@example.com")
    assert is_suppressed(phone="+14155550100")
    assert not is_suppressed(email="grace@example.com", phone="+14155550199")
    assert suppressed_among(["ADA@example.com", "grace@example.com"], ["+14155550100", "+442079460000"]) == {
        "ada@example.com", "+14155550100"}


def test_an_email_and_a_phone_never_share_a_hash():
    assert identifier_keys("email", "123") != identifier_keys("phone", "123")


def test_suppressing_twice_adds_nothing():
    assert len(suppress(email="ada@example.com", phone=None)) == 1
    assert suppress(email="ADA@example.com", phone=None) == []
    assert Suppression.objects.count() == 1


def test_a_page_is_checked_in_one_query():
    suppress(email="ada@example.com", phone=None)
    emails = [f"person{n}@example.com" for n in range(500)] + ["ada@example.com"]
    phones = [f"+1415555{n:04d}" for n in range(500)]
    with CaptureQueriesContext(connection) as queries:
        assert suppressed_among(emails, phones) == {"ada@example.com"}
    assert len(queries) == 1


def test_nothing_asked_costs_no_query():
    with CaptureQueriesContext(connection) as queries:
        assert suppressed_among([], [None, ""]) == set()
    assert len(queries) == 0


def test_suppression_survives_key_rotation_and_moves_to_the_new_key_when_seen(settings):
    suppress(email="ada@example.com", phone="+14155550100")
    suppress(email="grace@example.com", phone=None)
    settings.SUPPRESSION_KEYS = [NEW_KEY, OLD_KEY]
    assert suppression_keys()[0].key_id == "k2"
    assert is_suppressed(email="ada@example.com")
    # Seen under the old key only: re-made under the new one, the old row gone.
    assert suppression_key_usage() == {"k2": 1, "k1": 2}
    assert suppressed_among(["grace@example.com"], ["+14155550100"]) == {"grace@example.com", "+14155550100"}
    assert suppression_key_usage() == {"k2": 3, "k1": 0}
    # Once the old key holds nothing, it can go: everyone is still found.
    settings.SUPPRESSION_KEYS = [NEW_KEY]
    assert suppressed_among(["ada@example.com", "grace@example.com"], ["+14155550100"]) == {
        "ada@example.com", "grace@example.com", "+14155550100"}


def test_rotation_keeps_the_request_each_row_came_from(settings):
    request = DeletionRequest.objects.create(regulation="gdpr", reference="T-1", due_date=date(2030, 1, 1))
    suppress(email="ada@example.com", phone=None, request=request)
    settings.SUPPRESSION_KEYS = [NEW_KEY, OLD_KEY]
    assert is_suppressed(email="ada@example.com")
    row = Suppression.objects.get()
    assert (row.key_id, row.key_hash, row.request) == ("k2", identifier_key("email", "ada@example.com"), request)


def test_a_key_dropped_too_early_forgets_its_rows(settings):
    # Why docs/security.md says to wait for the old key's rows to reach zero.
    suppress(email="ada@example.com", phone=None)
    settings.SUPPRESSION_KEYS = [NEW_KEY]
    assert not is_suppressed(email="ada@example.com")
    assert suppression_key_usage() == {"k2": 0, "k1": 1}


@pytest.mark.parametrize("keys", [[], ["no-secret"], [":secret"], ["k1:"], ["k1:a", "k1:b"]])
def test_malformed_keys_are_refused_with_the_expected_form(settings, keys):
    settings.SUPPRESSION_KEYS = keys
    with pytest.raises(ImproperlyConfigured):
        suppression_keys()


def test_the_system_checks_refuse_unusable_keys(settings):
    from audit.checks import check_compliance_keys

    assert check_compliance_keys(None) == []
    settings.SUPPRESSION_KEYS = ["no-secret"]
    settings.RECEIPT_SIGNING_KEY = " "
    assert [error.id for error in check_compliance_keys(None)] == ["audit.E001", "audit.E002"]
