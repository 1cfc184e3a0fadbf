"""Development and test settings; production overrides live in `production.py`."""
from syncapp.settings.base import *  # noqa: F401,F403
