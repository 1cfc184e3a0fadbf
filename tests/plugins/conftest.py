"""The Textline fixtures (`tests.plugins.fixtures`) for the tests of this package."""
from tests.plugins.fixtures import (  # noqa: F401
    textline_connection,
    textline_registered,
    textline_sandbox,
    textline_sandbox_process,
)
