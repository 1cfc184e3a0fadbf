"""Chaos benchmark: a two-way sync of 20,000 people under 20% faults, its workers killed ten times.

The scenario of tests/integration/test_chaos.py, larger and timed (the harness is
tests/integration/chaos.py): a sandbox process seeded with HubSpot contacts and Mailchimp
members that overlap, the demo's two-way sync with its schedule off, `manage.py qcluster`
worker processes, and the sandbox injecting faults into a share of all requests (half
429s and 5xx, a quarter dropped connections, a quarter writes carried out whose reply is
lost). The worker is killed with SIGKILL at seeded random points, while the run reads and
while it writes, and started again at once; the workers' own watchdog must take the
killed run over. Once the sync has converged (a run without a write request, faults still
on), the faults are cleared and one more run must write nothing.

It prints what the systems hold at the end: people present in each, missing, duplicated,
the share of mapped fields equal across HubSpot, Mailchimp and the hub, consent
violations, runs whose write windows overlapped, and the recovery time of each kill (from
the kill to the next run making progress).

    python bench/chaos.py                           # SQLite and the ORM broker, a fresh database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syncapp_chaos REDIS_URL=redis://127.0.0.1:6379/5 \\
        python bench/chaos.py                       # an empty PostgreSQL database and Redis

Settings are the defaults (SYNC_RUN_STALE_SECONDS and the rest) unless set in the
environment or with --stale-seconds. `--json FILE` also writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from tests.integration.chaos import Consistency

TARGET_RECOVERY_SECONDS = 150


@dataclass
class ChaosFigures:
    database: str
    contacts: int
    kills: int
    kills_reading: int
    kills_writing: int
    kills_unrecovered: int
    fault_rate: float
    requests: int
    faults_injected: int
    stale_seconds: int
    seconds: float
    runs: int
    people: int
    present_hubspot: int
    present_mailchimp: int
    present_hub: int
    missing: int
    duplicates: int
    unlinked: int
    refused: int
    fields_compared: int
    field_consistency_percent: float
    consent_violations: int
    runs_overlapped: int
    recovery_p50_seconds: float | None
    recovery_max_seconds: float | None
    recovery_seconds: list[float | None]
    quiet_run_writes: int


def configure_django(work_dir: Path, stale_seconds: int | None) -> str:
    """Point Django at DATABASE_URL (a fresh SQLite file when unset) and set it up; return a label."""
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("SALT_KEY", secrets.token_urlsafe(16))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work_dir / 'chaos.sqlite3'}")
    os.environ.setdefault("CACHE_DIR", str(work_dir / "cache"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "syncapp.settings"
    if stale_seconds is not None:
        os.environ["SYNC_RUN_STALE_SECONDS"] = str(stale_seconds)
    import django

    django.setup()
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
    label = {"sqlite3": "SQLite", "postgresql": "PostgreSQL"}.get(engine, engine)
    return f"{label} + {'Redis' if settings.Q_CLUSTER.get('redis') else 'ORM'} broker"


def prepare_database() -> None:
    """Migrate; refuse a database that already holds a sync; empty the Redis queue."""
    from django.conf import settings
    from django.core.management import call_command
    from django_q.brokers import get_broker

    from syncapp.models import Sync

    call_command("migrate", verbosity=0)
    if Sync.objects.exists():
        sys.exit("DATABASE_URL must name an empty database (dropdb and createdb it): this one holds syncs.")
    if settings.Q_CLUSTER.get("redis"):
        get_broker().purge_queue()


def faults_injected(sandbox) -> int:
    plans = requests.get(f"{sandbox.url}/_sandbox/faults", timeout=30).json()["faults"]
    return sum(plan["injected"] for plan in plans.values())


def bench(options, database: str, log_dir: Path) -> tuple[ChaosFigures, Consistency]:
    from django.conf import settings

    from sandbox.launcher import SandboxProcess
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
        recovery_percentiles,
    )

    # Mailchimp's members overlap the second half of HubSpot's contacts; these shares
    # make `contacts` people in all, a third of them in both systems.
    plan = ChaosPlan(hubspot_contacts=options.contacts * 68 // 100, mailchimp_members=options.contacts * 66 // 100,
                     kills=options.kills, fault_rate=options.fault_rate, random_seed=options.seed)
    stale = settings.SYNC_RUN_STALE_SECONDS
    sandbox = SandboxProcess.start()
    workers = Workers(sandbox, log_dir)
    try:
        sandbox.seed(hubspot_contacts=plan.hubspot_contacts, mailchimp_members=plan.mailchimp_members,
                     random_seed=plan.random_seed)
        seeded = Seeded(hubspot=sandbox.hubspot_contacts(), mailchimp=sandbox.mailchimp_members())
        workspace = chaos_workspace(sandbox, lift_limits=options.lift_limits)
        sandbox.reset_stats()
        sandbox.faults(**plan.faults())
        started = time.monotonic()
        workers.start()
        driver = ChaosDriver(sandbox=sandbox, workspace=workspace, workers=workers, plan=plan,
                             recovery_timeout=stale + 300, run_timeout=3600)
        try:
            kills = driver.run_kills(rescue=True)
            driver.converge(max_runs=6)
            requests_made, injected = sandbox.stats()["total"], faults_injected(sandbox)
            _, quiet_writes = driver.quiet_run()
        finally:
            workers.stop()
        seconds = time.monotonic() - started
        report = consistency_check(seeded=seeded, sandbox=sandbox, workspace=workspace)
        overlapped = overlapped_runs(workspace.sync, workers.generations)
        runs = SyncRun.objects.filter(sync=workspace.sync).count()
    finally:
        sandbox.stop()
    p50, longest = recovery_percentiles(kills)
    return ChaosFigures(
        database=database,
        contacts=options.contacts,
        kills=len(kills),
        kills_reading=sum(kill.phase == READING for kill in kills),
        kills_writing=sum(kill.phase == WRITING for kill in kills),
        kills_unrecovered=sum(kill.recovered_at is None for kill in kills),
        fault_rate=plan.fault_rate,
        requests=requests_made,
        faults_injected=injected,
        stale_seconds=stale,
        seconds=round(seconds, 1),
        runs=runs,
        people=report.people,
        present_hubspot=report.people - len(report.missing.get("HubSpot", [])),
        present_mailchimp=report.people - len(report.missing.get("Mailchimp", [])),
        present_hub=report.people - len(report.missing.get("hub", [])),
        missing=report.missing_count,
        duplicates=report.duplicate_count,
        unlinked=sum(map(len, report.unlinked.values())),
        refused=sum(map(len, report.refused.values())),
        fields_compared=report.fields_compared,
        field_consistency_percent=round(report.consistent_percent, 3),
        consent_violations=len(report.consent_violations),
        runs_overlapped=len(overlapped),
        recovery_p50_seconds=None if p50 is None else round(p50, 1),
        recovery_max_seconds=None if longest is None else round(longest, 1),
        recovery_seconds=[None if kill.recovery_seconds is None else round(kill.recovery_seconds, 1) for kill in kills],
        quiet_run_writes=sum(quiet_writes.values()),
    ), report


def print_figures(figures: ChaosFigures, report: Consistency, *, log_dir: Path | None) -> None:
    print(f"wall time {figures.seconds} s, {figures.runs} runs, {figures.requests:,} provider requests, "
          f"{figures.faults_injected:,} faults injected, SYNC_RUN_STALE_SECONDS {figures.stale_seconds}")
    print(f"people {figures.people:,}: present in HubSpot {figures.present_hubspot:,}, in Mailchimp "
          f"{figures.present_mailchimp:,}, in the hub {figures.present_hub:,}")
    print(f"missing {figures.missing}, duplicates {figures.duplicates}, unlinked records {figures.unlinked}, "
          f"refused {figures.refused}")
    print(f"fields consistent {figures.field_consistency_percent}% of {figures.fields_compared:,}")
    print(f"consent violations {figures.consent_violations}")
    print(f"runs overlapped {figures.runs_overlapped}")
    print(f"kills {figures.kills} ({figures.kills_reading} reading, {figures.kills_writing} writing); recovery "
          f"p50 {figures.recovery_p50_seconds} s, max {figures.recovery_max_seconds} s "
          f"(target < {TARGET_RECOVERY_SECONDS} s): {figures.recovery_seconds}")
    if figures.kills_unrecovered:
        logs = f"the workers' logs are in {log_dir}" if log_dir else "keep the workers' logs with --log-dir"
        print(f"NOT RECOVERED by the watchdog: {figures.kills_unrecovered} kill(s); a run was requested instead "
              f"({logs})")
    print(f"quiet run writes {figures.quiet_run_writes}")
    for label, found in (("missing", report.missing), ("duplicated", report.duplicates),
                         ("unlinked", report.unlinked)):
        for system, items in found.items():
            print(f"  {label} in {system}: {items[:10]}")
    for line in (report.fields_differing[:10] + report.consent_violations[:10]):
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20_000, help="people in all (default 20,000)")
    parser.add_argument("--kills", type=int, default=10, help="worker kills (default 10)")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of requests faulted (default 0.2)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the data, the faults and the kill points")
    parser.add_argument("--stale-seconds", type=int,
                        help="SYNC_RUN_STALE_SECONDS for the workers (default: the setting's default)")
    parser.add_argument("--lift-limits", action="store_true", help="turn the providers' rate limits off")
    parser.add_argument("--log-dir", type=Path, help="keep the workers' logs here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    if options.kills < 2:
        parser.error("--kills must be at least 2: one while reading, one while writing")

    from bench.sync_bench import machine

    # Stopped from outside (timeout, kill): unwind, so the sandbox and the workers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))

    with tempfile.TemporaryDirectory(prefix="chaosbench-") as work:
        work_dir = Path(work)
        log_dir = options.log_dir or work_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        database = configure_django(work_dir, options.stale_seconds)
        prepare_database()
        load_before = Path("/proc/loadavg").read_text().strip()
        print("machine:", json.dumps(machine()))
        print(f"load average before: {load_before}")
        print(f"database: {database}; {options.contacts:,} people, {options.fault_rate:.0%} faults, "
              f"{options.kills} kills, seed {options.seed}, provider limits "
              f"{'lifted' if options.lift_limits else 'enforced'}")
        figures, report = bench(options, database, log_dir)
        load_after = Path("/proc/loadavg").read_text().strip()
        print(f"load average after: {load_after}")
        print_figures(figures, report, log_dir=options.log_dir)
    if options.json:
        options.json.write_text(json.dumps({"machine": machine(), "load_before": load_before,
                                            "load_after": load_after, "figures": asdict(figures)}, indent=2))


if __name__ == "__main__":
    main()
