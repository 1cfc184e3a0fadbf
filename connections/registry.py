"""The providers Syncapp knows, and how to build a ready client for a connection.

The only module that ties a `Connection` row to a provider client: engine, audit and
tasks ask here, and never import a particular provider's module.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from connections.http import HttpClient, TokenSource
from connections.models import Connection
from connections.providers.activecampaign import ActiveCampaignProvider
from connections.providers.base import Provider, ProviderConfig
from connections.providers.hubspot import HubSpotProvider
from connections.providers.mailchimp import MailchimpProvider
from connections.ratelimit import RateBudget

PROVIDERS: dict[str, type[Provider]] = {
    "hubspot": HubSpotProvider,
    "mailchimp": MailchimpProvider,
    "activecampaign": ActiveCampaignProvider,
}
CONNECT_TIMEOUT = 5.0


class UnknownProvider(ValueError):
    """A connection names a provider this installation does not have."""


def provider_class(name: str) -> type[Provider]:
    """Return the provider class registered under `name`."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(f"Unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}.") from None


def provider_choices() -> list[tuple[str, str]]:
    """Return (name, label) pairs for a form's choices."""
    return [(name, cls.label) for name, cls in PROVIDERS.items()]


def config_for(connection: Connection) -> ProviderConfig:
    """Return the plain config a provider client needs for this connection (secrets included)."""
    return ProviderConfig(
        base_url=connection.base_url or "",
        api_key=connection.api_key or "",
        access_token=connection.access_token or "",
        settings=dict(connection.settings or {}),
        rate_limit_requests=connection.rate_limit_requests,
        rate_limit_window_seconds=connection.rate_limit_window_seconds,
        max_concurrency=connection.max_concurrency,
        budget_key=f"connection-{connection.pk}",
        rate_budget=connection.rate_budget,
    )


def build_provider(
    name: str,
    config: ProviderConfig,
    *,
    fields: Sequence[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    tokens: TokenSource | None = None,
    max_retries: int | None = None,
) -> Provider:
    """Return a provider client with its own session and the account's shared rate budget.

    `max_retries` bounds the client's own retries of transient failures (None: the
    HTTP layer's default), for callers that retry later themselves.
    """
    cls = provider_class(name)
    requests, window = cls.rate_limit or (None, None)
    if config.rate_limit_requests and config.rate_limit_window_seconds:
        requests, window = config.rate_limit_requests, config.rate_limit_window_seconds
    base_url = cls.base_url_for(config)
    budget = RateBudget(
        config.budget_key or f"{name}:{base_url}",
        requests,
        window,
        config.max_concurrency or cls.max_concurrency,
        scope=config.rate_budget,
        # A slot outlives the longest request, so only a dead worker's slot expires.
        lease_seconds=CONNECT_TIMEOUT + cls.read_timeout + 30,
        sleep=sleep,
    )
    http = HttpClient(
        base_url,
        auth=cls.auth_headers(config),
        tokens=tokens,
        budget=budget,
        provider=cls.label,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=cls.read_timeout,
        secrets=(config.api_key, config.access_token),
        sleep=sleep,
        **({} if max_retries is None else {"max_retries": max_retries}),
    )
    return cls(config, http, fields=fields)


def provider_for(connection: Connection, *, fields: Sequence[str] = (), max_retries: int | None = None) -> Provider:
    """Return a ready client for `connection`; `fields` names the external fields to read.

    An OAuth connection's client takes a fresh access token before each request.
    `max_retries`: see build_provider.
    """
    tokens = None
    if (connection.settings or {}).get("oauth") is not None:
        from connections.tokens import ConnectionTokens  # tokens imports oauth, which imports this module

        tokens = ConnectionTokens(connection.pk)
    return build_provider(connection.provider, config_for(connection), fields=fields, tokens=tokens,
                          max_retries=max_retries)
