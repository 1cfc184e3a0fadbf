"""Development and test settings; production overrides live in `production.py`."""
from syncapp.settings.base import *  # noqa: F401,F403
from syncapp.settings.base import env

# The demo's sandbox (`make demo` passes its SANDBOX_URL to the web server and worker;
# the tests set their session's), and the OAuth app the sandbox has built in
# (sandbox.oauth's defaults): public, like the sandbox, and good for nothing else.
SANDBOX_URL = env.str("SANDBOX_URL", default="http://127.0.0.1:8765")
OAUTH_SANDBOX_CLIENT = {
    "client_id": env.str("SANDBOX_OAUTH_CLIENT_ID", default="syncapp-sandbox-client"),
    "client_secret": env.str("SANDBOX_OAUTH_CLIENT_SECRET", default="syncapp-sandbox-secret"),
}
