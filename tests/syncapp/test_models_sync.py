"""A sync's endpoint stores only a new-member status its system offers, with a legal basis for subscribing."""
import pytest
from django.core.exceptions import ValidationError

from syncapp.models import Sync, SyncConnection
from syncapp.models.sync import new_member_choice_errors
from tests.workspace import connection_make

pytestmark = pytest.mark.django_db

MAILCHIMP_STATES = ("pending", "transactional", "subscribed")
BASIS = "Consent collected on the signup form"


@pytest.mark.parametrize(("written", "status", "basis"), [
    (True, "", ""),
    (False, "", ""),
    (True, "pending", ""),
    (True, "transactional", ""),
    (True, "subscribed", BASIS),
])
def test_what_an_endpoint_may_store(written, status, basis):
    assert new_member_choice_errors(system="Mailchimp", offered=MAILCHIMP_STATES, written=written, status=status,
                                    legal_basis=basis) == {}


@pytest.mark.parametrize(("offered", "written", "status", "basis", "field", "message"), [
    (MAILCHIMP_STATES, True, "cleaned", "", "new_member_status",
     "Mailchimp offers pending, transactional, subscribed for new members; choose one of those."),
    ((), True, "pending", "", "new_member_status",
     "Mailchimp has no subscription status to give new records: leave the new-member status empty."),
    (MAILCHIMP_STATES, False, "pending", "", "new_member_status",
     "This sync does not write to Mailchimp, so it creates no members there: clear the new-member status, "
     "or let the sync write to Mailchimp."),
    (MAILCHIMP_STATES, True, "subscribed", "", "new_member_legal_basis",
     "needs a legal basis: record it (for example “Consent collected on the signup form”), or choose pending "
     "or transactional."),
    (MAILCHIMP_STATES, True, "subscribed", " \n\t", "new_member_legal_basis", "needs a legal basis"),
    (("subscribed",), True, "subscribed", "", "new_member_legal_basis", "signup form”)."),
    (MAILCHIMP_STATES, True, "", BASIS, "new_member_legal_basis",
     "no status is chosen: choose subscribed, or clear the legal basis."),
    (MAILCHIMP_STATES, True, "pending", BASIS, "new_member_legal_basis",
     "not for pending: clear it, or choose subscribed."),
])
def test_what_an_endpoint_refuses_and_what_to_change(offered, written, status, basis, field, message):
    errors = new_member_choice_errors(system="Mailchimp", offered=offered, written=written, status=status,
                                      legal_basis=basis)
    assert list(errors) == [field]
    assert message in errors[field]


@pytest.fixture
def sync():
    return Sync.objects.create(name="Nightly")


def endpoint(sync, provider: str, **fields) -> SyncConnection:
    name = {"mailchimp": "Mailchimp", "hubspot": "HubSpot"}.get(provider, provider)
    return SyncConnection(sync=sync, connection=connection_make(name, provider), **fields)


class TestClean:
    def test_the_states_offered_are_the_providers_own(self, sync):
        with pytest.raises(ValidationError) as refused:
            endpoint(sync, "mailchimp", new_member_status="cleaned").full_clean()
        assert refused.value.message_dict == {"new_member_status": [
            "Mailchimp offers pending, transactional, subscribed for new members; choose one of those."]}
        hubspot = endpoint(sync, "hubspot", read=True, write=True)
        hubspot.full_clean()
        hubspot.new_member_status, hubspot.new_member_legal_basis = "subscribed", BASIS
        with pytest.raises(ValidationError, match="HubSpot has no subscription status"):
            hubspot.full_clean()

    def test_a_provider_this_installation_lacks_offers_nothing(self, sync):
        with pytest.raises(ValidationError, match="Brevo has no subscription status"):
            endpoint(sync, "Brevo", new_member_status="pending").full_clean()

    def test_subscribing_needs_a_legal_basis(self, sync):
        with pytest.raises(ValidationError) as refused:
            endpoint(sync, "mailchimp", new_member_status="subscribed", new_member_legal_basis="  ").full_clean()
        assert list(refused.value.message_dict) == ["new_member_legal_basis"]

    def test_a_legal_basis_without_a_status_is_refused(self, sync):
        with pytest.raises(ValidationError) as refused:
            endpoint(sync, "mailchimp", new_member_legal_basis=BASIS).full_clean()
        assert "no status is chosen" in refused.value.message_dict["new_member_legal_basis"][0]

    def test_a_status_where_the_sync_does_not_write_is_refused(self, sync):
        with pytest.raises(ValidationError, match="This sync does not write to Mailchimp"):
            endpoint(sync, "mailchimp", read=True, write=False, new_member_status="pending").full_clean()

    def test_a_valid_choice_is_stored_trimmed(self, sync):
        chosen = endpoint(sync, "mailchimp", new_member_status=" subscribed ", new_member_legal_basis=f"\n{BASIS}  ")
        chosen.full_clean()
        chosen.save()
        chosen.refresh_from_db()
        assert (chosen.new_member_status, chosen.new_member_legal_basis) == ("subscribed", BASIS)
