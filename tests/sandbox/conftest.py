"""HTTP clients for the emulated providers, authenticated as the sandbox expects."""
import pytest
import requests


class ProviderClient:
    """A requests session bound to one emulated API's base URL."""

    def __init__(self, base_url: str, session: requests.Session):
        self.base_url = base_url
        self.session = session

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def hubspot(sandbox):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sandbox.hubspot_token}"
    yield ProviderClient(sandbox.hubspot_url, session)
    session.close()


@pytest.fixture
def mailchimp(sandbox):
    session = requests.Session()
    session.auth = ("anystring", sandbox.mailchimp_key)
    yield ProviderClient(sandbox.mailchimp_url, session)
    session.close()


@pytest.fixture
def activecampaign(sandbox):
    session = requests.Session()
    session.headers["Api-Token"] = sandbox.credential("activecampaign")
    yield ProviderClient(sandbox.base_url("activecampaign"), session)
    session.close()
