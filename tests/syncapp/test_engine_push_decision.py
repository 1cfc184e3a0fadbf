"""What to push: which systems a contact is sent to, and when a payload is news there.

No database: the engine is pure. A system declares the identity keys it needs to create
a record and to write one again (connections.providers.base.RecordKeys); a contact
without them is not applicable there, and waits without an error.
"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.engine.push_decision import (
    Verdict,
    keys_missing,
    keys_needed,
    not_applicable_reason,
    payload_differs,
    push_verdict,
)

EMAIL_KEYED = {"to_create": ("email",), "to_update": ("email",)}  # Mailchimp
ID_KEYED = {"to_create": ("email",), "to_update": ()}  # HubSpot: new contacts upserted by email
PHONE_KEYED = {"to_create": ("phone",), "to_update": ("phone",)}  # an SMS platform


def never_asked():
    raise AssertionError("the payload need not be built")


class TestKeys:
    @pytest.mark.parametrize(
        ("system", "exists_there", "email", "phone", "missing"),
        [
            (EMAIL_KEYED, False, "ann@example.com", None, ()),
            (EMAIL_KEYED, False, None, "+14155550100", ("email",)),
            (EMAIL_KEYED, True, None, "+14155550100", ("email",)),
            # Known there by its id: written without an email; created only with one.
            (ID_KEYED, True, None, "+14155550100", ()),
            (ID_KEYED, False, None, "+14155550100", ("email",)),
            (PHONE_KEYED, False, None, "+14155550100", ()),
            (PHONE_KEYED, False, "ann@example.com", None, ("phone",)),
            (PHONE_KEYED, True, "ann@example.com", "", ("phone",)),
        ],
    )
    def test_the_keys_a_contact_lacks_for_a_system(self, system, exists_there, email, phone, missing):
        needed = keys_needed(exists_there=exists_there, **system)
        assert keys_missing(needed, email=email, phone=phone) == missing

    def test_the_reason_names_the_system_and_the_key(self):
        assert not_applicable_reason("Mailchimp", ("email",)) == (
            "Mailchimp keys its records by an email address, which this contact does not have."
        )


class TestVerdict:
    @pytest.mark.parametrize(
        ("options", "verdict"),
        [
            ({"missing": ("email",), "linked": False}, Verdict.NOT_APPLICABLE),
            ({"missing": (), "linked": False}, Verdict.SEND),
            ({"missing": (), "linked": True, "archived": True}, Verdict.ARCHIVED),
            ({"missing": (), "linked": True, "marked": True}, Verdict.MARKED),
            ({"missing": (), "linked": False, "on_hold": True}, Verdict.ON_HOLD),
            # A duplicate under review is held whatever else holds.
            ({"missing": ("email",), "linked": True, "on_hold": True}, Verdict.ON_HOLD),
        ],
    )
    def test_what_decides_without_building_a_payload(self, options, verdict):
        assert push_verdict(differs=never_asked, **options) is verdict

    @pytest.mark.parametrize(("differs", "verdict"), [(True, Verdict.SEND), (False, Verdict.UP_TO_DATE)])
    def test_a_linked_contact_is_sent_only_what_the_system_lacks(self, differs, verdict):
        assert push_verdict(missing=(), linked=True, differs=lambda: differs) is verdict


def same_ignoring_case(name, held, value):
    return str(held).lower() == str(value).lower()


def differs(fields, held, **options):
    defaults = {"exists_there": True, "email_consent": None, "email_consent_held": "",
                "same_in_hub_form": same_ignoring_case}
    return payload_differs(fields, held, **{**defaults, **options})


class TestPayloadDiffers:
    def test_a_record_not_there_yet_always_differs(self):
        assert differs({}, {}, exists_there=False)

    def test_the_same_values_do_not(self):
        assert not differs({"FNAME": "Ann"}, {"FNAME": "Ann", "LNAME": "Lee"})

    def test_a_field_the_system_never_held_does(self):
        assert differs({"FNAME": "Ann"}, {})

    def test_another_spelling_of_the_same_hub_value_is_not_rewritten(self):
        assert not differs({"EMAIL": "ann@x.com"}, {"EMAIL": "ANN@X.COM"})

    def test_unless_a_backfill_changed_how_the_field_is_written(self):
        assert differs({"EMAIL": "ann@x.com"}, {"EMAIL": "ANN@X.COM"}, exact={"EMAIL"})

    def test_a_consent_state_the_system_does_not_hold_differs(self):
        assert differs({}, {}, email_consent="unsubscribed", email_consent_held="subscribed")
        assert not differs({}, {}, email_consent="unsubscribed", email_consent_held="unsubscribed")
        assert not differs({}, {}, email_consent=None, email_consent_held="subscribed")


texts = st.sampled_from(["", "Ann", "ANN", "Lee"])


@given(fields=st.dictionaries(st.sampled_from(["A", "B"]), texts))
def test_property_a_payload_never_differs_from_what_it_wrote(fields):
    """After a write the base is the payload sent: the next comparison sends nothing (no loop)."""
    assert not differs(fields, dict(fields))
