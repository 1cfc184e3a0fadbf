"""The emulated providers the sandbox serves, in the order they are seeded, listed and documented.

Adding a provider means one emulator module under sandbox/ (an `EmulatedAPI` subclass,
see `sandbox.provider`) and one entry here; nothing else in the sandbox names it.
"""
from __future__ import annotations

from .activecampaign import ActiveCampaignAPI
from .hubspot import HubSpotAPI
from .mailchimp import MailchimpAPI
from .provider import EmulatedAPI

EMULATORS: tuple[type[EmulatedAPI], ...] = (HubSpotAPI, MailchimpAPI, ActiveCampaignAPI)
