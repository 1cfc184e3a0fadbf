"""Chaos: a two-way sync of 5,000 people under 20% faults, its worker killed three times.

Real parts throughout (tests/integration/chaos.py): the sandbox process, the database,
and `manage.py qcluster` worker processes, killed with SIGKILL while the run reads and
while it writes. Nothing but the workers' own watchdog resumes a killed run. Faults stay
on until the sync has converged: a run that ends without a write request. Then, with
the faults cleared, one more run must write nothing, and:
- every valid address is held once in HubSpot, in Mailchimp and in the hub;
- every field without an open conflict holds one value in both systems and the hub;
- nobody whose last word was an opt-out is subscribed anywhere;
- no two runs of the sync wrote at the same time.

The plan (records, faults, where each kill falls) is seeded; when the kills land to the
millisecond is not, and the assertions do not depend on it.
"""
import pytest

from syncapp.models import SyncRun
from tests.integration.chaos import (
    READING,
    WRITING,
    ChaosDriver,
    ChaosPlan,
    Seeded,
    Workers,
    chaos_workspace,
    consistency_check,
    overlapped_runs,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Mailchimp's members overlap the second half of HubSpot's contacts: 5,000 people, 1,700
# of them in both systems.
PLAN = ChaosPlan(hubspot_contacts=3400, mailchimp_members=3300, kills=3, fault_rate=0.2, random_seed=8)
# Short, so that a killed run's lease expires within seconds: the watchdog's one-minute
# tick is then most of each recovery (the default lease is 90 s).
STALE_SECONDS = 10
RECOVERY_TIMEOUT = STALE_SECONDS + 150
RUN_TIMEOUT = 300


def test_killed_workers_and_faults_lose_nothing_duplicate_nothing_and_leave_nothing_to_write(
        sandbox, settings, tmp_path):
    settings.SYNC_RUN_STALE_SECONDS = STALE_SECONDS
    sandbox.seed(hubspot_contacts=PLAN.hubspot_contacts, mailchimp_members=PLAN.mailchimp_members,
                 random_seed=PLAN.random_seed)
    seeded = Seeded(hubspot=sandbox.hubspot_contacts(), mailchimp=sandbox.mailchimp_members())
    workspace = chaos_workspace(sandbox, lift_limits=True)
    sandbox.faults(**PLAN.faults())
    workers = Workers(sandbox, tmp_path)
    workers.start()
    driver = ChaosDriver(sandbox=sandbox, workspace=workspace, workers=workers, plan=PLAN,
                         recovery_timeout=RECOVERY_TIMEOUT, run_timeout=RUN_TIMEOUT)
    try:
        kills = driver.run_kills()
        driver.converge(max_runs=6)
        quiet, quiet_writes = driver.quiet_run()
    finally:
        workers.stop()

    assert {kill.phase for kill in kills} == {READING, WRITING}
    assert all(kill.recovered_at is not None for kill in kills)
    assert overlapped_runs(workspace.sync, workers.generations) == []
    report = consistency_check(seeded=seeded, sandbox=sandbox, workspace=workspace)
    assert report.people > 4500
    assert dict(report.missing) == {}
    assert dict(report.duplicates) == {}
    assert dict(report.unlinked) == {}
    # Nothing in this seed is refused by either system (its records are valid there).
    assert dict(report.refused) == {}
    assert report.fields_compared > 10_000
    assert report.fields_differing == []
    assert report.consent_violations == []
    assert quiet.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), quiet.error
    assert quiet_writes == {}
