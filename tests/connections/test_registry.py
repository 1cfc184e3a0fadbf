"""The registry: provider names, and a ready client built from a Connection row."""
import base64

import pytest

from connections.models import Connection
from connections.providers.activecampaign import ActiveCampaignProvider
from connections.providers.base import AuthenticationError, ProviderConfig, ProviderError
from connections.providers.hubspot import HubSpotProvider
from connections.providers.mailchimp import MailchimpProvider
from connections.registry import (
    PROVIDERS,
    UnknownProvider,
    build_provider,
    config_for,
    provider_choices,
    provider_class,
    provider_for,
)

pytestmark = pytest.mark.django_db


def connection(**overrides) -> Connection:
    values = {"name": "CRM", "provider": "hubspot", "base_url": "http://127.0.0.1:9/hubspot", "api_key": "pat-secret-1"}
    return Connection.objects.create(**(values | overrides))


def test_both_providers_are_registered_under_their_names():
    assert PROVIDERS == {"hubspot": HubSpotProvider, "mailchimp": MailchimpProvider,
                         "activecampaign": ActiveCampaignProvider}
    assert provider_class("mailchimp") is MailchimpProvider
    assert provider_choices() == [("hubspot", "HubSpot"), ("mailchimp", "Mailchimp"),
                                  ("activecampaign", "ActiveCampaign")]


def test_an_unknown_provider_is_named_in_the_error():
    with pytest.raises(UnknownProvider, match="'klaviyo'; known: activecampaign, hubspot, mailchimp"):
        provider_class("klaviyo")


def test_a_hubspot_client_uses_the_connections_url_token_and_published_rate():
    provider = provider_for(connection(), fields=["email", "firstname"])
    assert isinstance(provider, HubSpotProvider)
    assert provider.http.base_url == "http://127.0.0.1:9/hubspot"
    assert provider.http.session.headers["Authorization"] == "Bearer pat-secret-1"
    assert provider.http.timeout == (5.0, 30.0)
    assert (provider.http.budget.requests, provider.http.budget.window_seconds) == (190, 10)
    assert provider.fields == ("email", "firstname")
    assert provider.http.secrets == ("pat-secret-1",)


def test_an_oauth_access_token_is_preferred_to_an_api_key():
    provider = provider_for(connection(access_token="oauth-access-2"))
    assert provider.http.session.headers["Authorization"] == "Bearer oauth-access-2"


def test_the_connections_own_rate_budget_overrides_the_published_one():
    row = connection(rate_limit_requests=100, rate_limit_window_seconds=10, max_concurrency=3)
    budget = provider_for(row).http.budget
    assert (budget.requests, budget.window_seconds, budget.max_concurrency) == (100, 10, 3)
    assert budget.key == f"connection-{row.pk}"


@pytest.mark.parametrize("kept", ["shared", "process", "none"])
def test_the_budget_is_kept_where_the_connection_says(kept):
    row = connection(rate_budget=kept)
    assert provider_for(row).http.budget.scope == kept


def test_the_budget_is_kept_in_the_shared_cache_unless_told_otherwise():
    assert provider_for(connection()).http.budget.scope == "shared"


def test_two_clients_for_one_connection_share_the_budget_but_not_the_session():
    row = connection()
    first, second = provider_for(row), provider_for(row)
    assert first.http.budget.key == second.http.budget.key
    assert first.http.session is not second.http.session


def test_a_mailchimp_client_finds_its_data_center_in_the_key():
    row = connection(provider="mailchimp", base_url="", api_key="0123abcd-us6", settings={"list_id": "L1"})
    provider = provider_for(row)
    assert provider.http.base_url == "https://us6.api.mailchimp.com/3.0"
    expected = base64.b64encode(b"syncapp:0123abcd-us6").decode()
    assert provider.http.session.headers["Authorization"] == f"Basic {expected}"
    assert provider.http.timeout == (5.0, 120.0)
    assert provider.http.budget.requests is None
    assert provider.http.budget.max_concurrency == 10


def test_a_mailchimp_key_without_a_data_center_needs_a_base_url():
    with pytest.raises(ProviderError, match="data center"):
        build_provider("mailchimp", ProviderConfig(base_url="", api_key="nodc"))


def test_a_connection_without_credentials_is_an_authentication_error():
    with pytest.raises(AuthenticationError, match="no access token"):
        build_provider("hubspot", ProviderConfig(base_url="https://api.hubapi.com"))
    with pytest.raises(AuthenticationError, match="no API key"):
        build_provider("mailchimp", ProviderConfig(base_url="https://us1.api.mailchimp.com/3.0"))


def test_the_config_carries_settings_and_empty_strings_for_missing_secrets():
    row = connection(api_key=None, access_token="tok", settings={"list_id": "abc"})
    config = config_for(row)
    assert config.api_key == ""
    assert config.access_token == "tok"
    assert config.settings == {"list_id": "abc"}
