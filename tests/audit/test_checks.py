"""System checks on the compliance keys: a key that still holds suppressed people may not be dropped."""
import pytest

from audit.checks import check_suppression_keys_in_use
from audit.suppression import suppress
from tests.test_settings import manage

OLD_KEY = "k1:" + "o" * 40
NEW_KEY = "k2:" + "n" * 40


@pytest.mark.django_db
def test_a_key_dropped_while_it_still_holds_suppressed_people_is_an_error(settings):
    settings.SUPPRESSION_KEYS = [OLD_KEY]
    suppress(email="ada@example.com", phone=None)
    settings.SUPPRESSION_KEYS = [NEW_KEY, OLD_KEY]
    assert check_suppression_keys_in_use(None) == []

    settings.SUPPRESSION_KEYS = [NEW_KEY]
    (error,) = check_suppression_keys_in_use(None)

    assert error.id == "audit.E003"
    assert "k1 holds 1 suppressed identifier" in error.msg
    assert "o" * 40 not in error.msg + (error.hint or "")


@pytest.mark.django_db
def test_no_key_in_use_is_needed_while_the_list_is_empty(settings):
    settings.SUPPRESSION_KEYS = [NEW_KEY]
    assert check_suppression_keys_in_use(None) == []


@pytest.mark.django_db
def test_malformed_keys_are_left_to_their_own_check(settings):
    settings.SUPPRESSION_KEYS = ["no-secret"]
    assert check_suppression_keys_in_use(None) == []


def test_the_check_passes_on_a_database_not_migrated_yet(tmp_path):
    result = manage("check", DATABASE_URL=f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
