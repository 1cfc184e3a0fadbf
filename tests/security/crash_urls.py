"""The project's URLs, plus a view that fails while a secret is in scope (for error pages)."""
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from connections.models import Connection
from connections.providers.base import ProviderError
from syncapp.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def fail_with_a_secret_in_scope(request, name: str):
    connection = Connection.objects.get(name=name)
    token = connection.access_token
    headers = {"Authorization": f"Bearer {token}"}
    # As a careless client might: the provider's reply echoed the request's headers.
    raise ProviderError(f"The provider refused the call and echoed its headers: {headers}")


urlpatterns = [*project_urlpatterns, path("fail/<str:name>/", fail_with_a_secret_in_scope)]
