"""The emulated HubSpot's calculated property: described as such, computed, never written."""
import pytest

pytestmark = pytest.mark.integration

CONTACTS = "/crm/v3/objects/contacts"


def test_the_email_domain_is_calculated_read_only_and_follows_the_email(hubspot):
    described = hubspot.get("/crm/v3/properties/contacts/hs_email_domain").json()
    assert described["calculated"] is True
    assert described["modificationMetadata"]["readOnlyValue"] is True
    assert hubspot.get("/crm/v3/properties/contacts/email").json()["calculated"] is False

    created = hubspot.post(CONTACTS, json={"properties": {"email": "Ann@Example.COM"}}).json()
    read = hubspot.get(f"{CONTACTS}/{created['id']}", params={"properties": "hs_email_domain"}).json()
    assert read["properties"]["hs_email_domain"] == "example.com"

    refused = hubspot.patch(f"{CONTACTS}/{created['id']}", json={"properties": {"hs_email_domain": "x.org"}})
    assert refused.status_code == 400
    assert "READ_ONLY_VALUE" in refused.text
