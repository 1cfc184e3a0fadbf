"""A run with nothing changed costs each system at most two calls (issue 12, item 3).

Through the real sandbox process and database, over the demo's three systems: after the
first sync, and after a first sync that wrote every system in bulk (the run after it
reads the echoes back once), a run with nothing changed anywhere asks each system at
most two things. Each system's calls are read from the sandbox's per-route request stats,
as bench/sync_bench.py reads them.

The runs are spaced past each reader's overlap (made short here, a second, instead of
waiting out the defaults' 30 s): a delta read starts that much before the provider's
time of the previous read, and a scheduled run comes minutes later.
"""
import time

import pytest

from connections.models import Connection
from tests.integration.three_way import SYSTEMS, three_way_workspace
from tests.integration.two_way import hubspot_create, run, write_calls

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OVERLAP_SECONDS = 1
# Past the overlap, and past a whole second: Mailchimp and ActiveCampaign stamp changes to the second.
RUN_SPACING_SECONDS = 2.2


@pytest.fixture
def workspace(sandbox):
    workspace = three_way_workspace(sandbox)
    for connection in Connection.objects.all():
        connection.settings = {**connection.settings, "overlap_seconds": OVERLAP_SECONDS}
        connection.save(update_fields=["settings"])
    return workspace


def calls_by_system(sandbox) -> dict[str, dict[str, int]]:
    requests = sandbox.stats()["requests"]
    return {system: dict(requests.get(system, {})) for system in SYSTEMS}


def quiet_run(sandbox, workspace) -> dict[str, dict[str, int]]:
    """Wait past the overlap, run with nothing changed, and return each system's calls by route."""
    time.sleep(RUN_SPACING_SECONDS)
    sandbox.reset_stats()
    finished = run(workspace)
    assert write_calls(sandbox) == {}
    assert (finished.created_count, finished.updated_count, finished.pushed_count) == (0, 0, 0)
    return calls_by_system(sandbox)


def assert_at_most_two_calls_each(calls: dict[str, dict[str, int]]) -> None:
    for system, routes in calls.items():
        assert 1 <= sum(routes.values()) <= 2, (system, routes)


def test_after_the_first_sync_a_quiet_run_asks_each_system_at_most_twice(sandbox, workspace):
    for email, first in (("ann@example.com", "Ann"), ("bob@example.com", "Bob")):
        hubspot_create(sandbox, email=email, firstname=first, lastname="Lee")
    run(workspace)
    # The run after the first reads back what the first wrote.
    time.sleep(RUN_SPACING_SECONDS)
    run(workspace)

    assert_at_most_two_calls_each(quiet_run(sandbox, workspace))
    # And so does the one after it.
    assert_at_most_two_calls_each(quiet_run(sandbox, workspace))


def test_after_a_bulk_write_a_quiet_run_asks_each_system_at_most_twice(sandbox, workspace):
    # Enough for Mailchimp's batch subscribes and ActiveCampaign's bulk imports to carry many each.
    sandbox.seed(hubspot_contacts=600, activecampaign_contacts=300, random_seed=21)
    sandbox.reset_stats()
    first = run(workspace)
    written = write_calls(sandbox)
    assert written.get("mailchimp POST /lists/{list_id}", 0) >= 1, written
    assert written.get("activecampaign POST /import/bulk_import", 0) >= 1, written
    assert first.pushed_count >= 500
    time.sleep(RUN_SPACING_SECONDS)
    run(workspace)

    calls = quiet_run(sandbox, workspace)

    assert_at_most_two_calls_each(calls)
