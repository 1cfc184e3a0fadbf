"""End-to-end sync benchmark: HubSpot to Mailchimp through the sandbox, against a baseline.

For each size it starts a fresh sandbox and a fresh SQLite database, seeds HubSpot, builds
the demo workspace and times `manage.py runsync` in a child process (wall time, peak
resident memory of that process), then reads the API calls from the sandbox's stats and
compares them with the lower bound: the read pages needed plus the write batches needed.
A second run with nothing changed must make no write call.

The baseline, measured in the same run on the same sandbox, is the loop most teams write
first: page through HubSpot with the official `hubspot-api-client`, then upsert each
member with its own request through the official `mailchimp-marketing` SDK. A per-member
loop over 100,000 contacts would take many minutes, so it is timed over a sample and its
rate (contacts per second) is compared with ours.

    python bench/sync_bench.py                       # 10,000 and 100,000, provider limits on
    python bench/sync_bench.py --contacts 10000 --lift-limits
    python bench/sync_bench.py --three-way --contacts 10000 100000 [--lift-limits]
    python bench/sync_bench.py --contacts 10000 --lift-limits --database postgres

`--database postgres` gives each size a fresh PostgreSQL database instead of a SQLite
file (at `--postgres-url`, by default the local server as CI runs it), dropped after.

`--three-way` times the demo's own sync instead: two-way over HubSpot, Mailchimp and
ActiveCampaign, as `seed_demo` builds it (HubSpot seeded with N contacts, ActiveCampaign
with three fifths as many, half of those the same people, Mailchimp empty). It prints
the API calls of each system against that system's lower bound (its read pages plus its
write batches for the records the run wrote there), and no baseline: the SDK loop is
the one-way sync's.

`--two-way` times the demo's sync between HubSpot and Mailchimp alone with data on both
sides before the first run: half of N in each, a quarter of N the same people (their own
statuses in Mailchimp, some unsubscribed or cleaned). Its lower bound adds HubSpot's
batch unsubscribes (100 addresses a call) for the opt-outs the run carried there.

Beside the wall times of the three runs they print the CPU seconds of the app's process
(and the sandbox's during the second run, the one that reads back the first run's
writes, with how many of them it set aside as echoes): on a machine shared with other
work the CPU seconds vary far less than the wall times.

`--profile DIR` (with either) runs each of the three runs under cProfile and keeps the
profiles (`pstats`): where the settle run's time goes. cProfile sees the main thread
only: the read-ahead conversion and the push threads are not in it.

Both print the consistency check of the last run beside the figures (bench/consistency.py:
every valid address in every system or refused with a record error, the mapped fields
equal outside open conflicts, nobody who had opted out subscribed again, the third run
writing nothing); the figures are void when it fails.

Figures print as a table; `--json FILE` also writes them for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import consistency  # noqa: E402

from sandbox.launcher import SandboxProcess  # noqa: E402

SYNC_NAME = "HubSpot, Mailchimp and ActiveCampaign"
# Lifting the client's limits: the account budget of every connection, and HubSpot's
# search rate (5 a second, kept apart: `search_rate_limit` 0 keeps none), which would
# otherwise still pace every delta read.
LIFT_CLIENT_BUDGET = (
    "from connections.models import Connection; "
    "Connection.objects.update(rate_limit_requests=1_000_000, rate_limit_window_seconds=10); "
    "[Connection.objects.filter(pk=c.pk).update(settings={**c.settings, 'search_rate_limit': 0}) "
    "for c in Connection.objects.filter(provider='hubspot')]"
)
# Issue 2's benchmark is the one-way sync: HubSpot read, Mailchimp written. The demo's
# sync is two-way over three systems; this takes ActiveCampaign out of it (with its
# mappings) and turns its Mailchimp side to write-only.
WITHOUT_ACTIVECAMPAIGN = (
    "from mappings.models import FieldMapping; from syncapp.models import SyncConnection; "
    f"FieldMapping.objects.filter(sync__name={SYNC_NAME!r}, connection__provider='activecampaign').delete(); "
    f"SyncConnection.objects.filter(sync__name={SYNC_NAME!r}, connection__provider='activecampaign').delete(); "
)
ONE_WAY = WITHOUT_ACTIVECAMPAIGN + (
    f"SyncConnection.objects.filter(sync__name={SYNC_NAME!r}, connection__provider='mailchimp').update(read=False)"
)
THREE_WAY_SYSTEMS = ("hubspot", "mailchimp", "activecampaign")
TWO_WAY_SYSTEMS = ("hubspot", "mailchimp")
# Seconds between the runs of a multi-system bench: a delta read starts its overlap before
# the provider's time of the previous read (ActiveCampaign 30 s, HubSpot 10 s, Mailchimp
# 5 s), so the echoes of a push are read back once, by the next run, and no later run
# lists them again once this much has passed. Scheduled runs are minutes apart.
RUN_SPACING_SECONDS = 31
# Addresses per HubSpot batch unsubscribe (communication preferences, unconfirmed limit).
UNSUBSCRIBE_BATCH = 100
# What the consistency check needs from the app: the fields under review and the
# addresses a system refused (unresolved record errors).
CHECK_INPUTS = (
    "import json; from syncapp.models import Conflict, RecordError; print(json.dumps({"
    "'held': [[c.contact.email, c.hub_field] for c in "
    "Conflict.objects.filter(status='open').select_related('contact') if c.contact.email], "
    "'errors': [[e.connection.provider, e.contact.email] for e in RecordError.objects.filter("
    "resolved=False, contact__isnull=False).select_related('connection', 'contact') if e.contact.email]}))"
)
# Page and batch sizes the lower bound is counted with: HubSpot's list endpoint pages
# 100 contacts (a full read), Mailchimp's batch subscribe takes 500 members.
HUBSPOT_PAGE = 100
MAILCHIMP_BATCH = 500
# The three-way lower bound, per system: (read page, write batch). HubSpot creates 100
# contacts a batch; Mailchimp's audience starts empty (one page read); ActiveCampaign
# pages 100 contacts and imports 250 a bulk import.
PAGES_AND_BATCHES = {"hubspot": (100, 100), "mailchimp": (1000, 500), "activecampaign": (100, 250)}
# What each system holds before the run and what the run wrote there (links pushed).
HELD_AND_WRITTEN = (
    "import json; from syncapp.models import RecordLink; "
    "print(json.dumps({p: RecordLink.objects.filter(connection__provider=p, last_pushed_at__isnull=False).count() "
    "for p in ('hubspot', 'mailchimp', 'activecampaign')}))"
)


@dataclass
class SyncFigures:
    contacts: int
    limits: str
    seconds: float
    contacts_per_second: float
    read: int
    pushed: int
    failed: int
    api_calls: int
    lower_bound: int
    calls_over_bound_percent: float
    peak_rss_mb: float
    second_run_write_calls: int
    status: str


@dataclass
class SystemCalls:
    system: str
    held: int
    written: int
    api_calls: int
    lower_bound: int
    calls_over_bound_percent: float
    # The routes called most, with their counts: where calls over the bound go.
    top_routes: dict[str, int]


@dataclass
class ThreeWayFigures:
    contacts: int
    limits: str
    seconds: float
    contacts_per_second: float
    read: int
    pushed: int
    failed: int
    conflicts: int
    systems: list[SystemCalls]
    peak_rss_mb: float
    second_run_write_calls: int
    third_run_write_calls: int
    status: str
    # The run after the first (it reads back what the first wrote: the echoes) and the
    # one after it, with nothing changed: their time and all their API calls.
    second_run_seconds: float = 0.0
    # CPU seconds of each run's own process (see timed_runsync).
    cpu_seconds: float = 0.0
    second_run_cpu_seconds: float = 0.0
    third_run_cpu_seconds: float = 0.0
    # The sandbox's CPU seconds while the second run ran: the emulated providers' share.
    second_run_sandbox_cpu_seconds: float = 0.0
    second_run_calls: int = 0
    third_run_seconds: float = 0.0
    third_run_calls: int = 0
    # Records the settle run read, and how many of them it recognized as echoes of the
    # first run's writes (services.echoes).
    second_run_read: int = 0
    second_run_echoes: int = 0
    second_run_routes: dict[str, int] = field(default_factory=dict)
    third_run_routes: dict[str, int] = field(default_factory=dict)
    # The consistency check after the third run (bench/consistency.py): the figures are
    # void when it fails.
    consistency: str = ""
    consistent: bool = False
    mismatch_samples: list[str] = field(default_factory=list)


@dataclass
class BaselineFigures:
    sample: int
    seconds: float
    contacts_per_second: float
    api_calls: int
    refused: int


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory_kb / 1024 / 1024:.0f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(),
    }


# Where `--database postgres` creates its databases, one per size, dropped after.
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432"
# Set by main(): None for SQLite, else the server's URL without a database name.
POSTGRES_SERVER: str | None = None


@contextmanager
def fresh_database(work_dir: Path) -> Iterator[str]:
    """Yield the URL of an empty database for one size: a SQLite file, or a PostgreSQL database dropped after."""
    if POSTGRES_SERVER is None:
        yield f"sqlite:///{work_dir / 'bench.sqlite3'}"
        return
    import psycopg

    name = f"syncbench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as server:
        server.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as server:
            server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def app_environment(work_dir: Path, sandbox: SandboxProcess, database_url: str) -> dict[str, str]:
    """A fresh database and cache for the app, with keys made for this run."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CACHE_DIR": str(work_dir / "cache"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SALT_KEY": secrets.token_urlsafe(16),
        "SANDBOX_URL": sandbox.url,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "manage.py"), *args], env=env, cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def timed_runsync(env: dict[str, str], *, profile_to: Path | None = None) -> tuple[float, float, float]:
    """Run the sync in a child process; return (seconds, peak resident MB, CPU seconds of that child).

    The CPU seconds (user and system) count the app's own work only, not the sandbox's
    nor the waits: on a machine shared with other work they vary less than the wall time.

    `profile_to`: run it under cProfile, writing the profile there (the time then
    includes the profiler's cost: compare such runs only with each other).
    """
    profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *profiler, str(REPO / "manage.py"), "runsync", SYNC_NAME], env=env,
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives this child's own resource usage, not that of every child so far.
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"runsync failed: {child.stderr.read().decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def sandbox_cpu_seconds(sandbox: SandboxProcess) -> float:
    """The CPU seconds (user and system, all threads) the sandbox process has used so far (Linux)."""
    fields = Path(f"/proc/{sandbox.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_run(env: dict[str, str]) -> dict:
    code = (
        "import json; from syncapp.models import SyncRun; r = SyncRun.objects.latest('id'); "
        "print(json.dumps({'status': r.status, 'read': r.read_count, 'pushed': r.pushed_count, "
        "'failed': r.failed_count, 'created': r.created_count, 'echoes': getattr(r, 'echo_count', 0)}))"
    )
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])


def calls(stats: dict) -> tuple[int, int]:
    """Return (all provider requests, write requests) from the sandbox's stats."""
    return stats["total"], stats["writes"]


def sandbox_start(*, lift_limits: bool) -> SandboxProcess:
    sandbox = SandboxProcess.start()
    if lift_limits:
        sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0, mailchimp_max_connections=0,
                       activecampaign_rate_limit=0, activecampaign_bulk_import_rate_limit=0,
                       activecampaign_bulk_import_single_rate_limit=0)
    return sandbox


def network_delay(sandbox: SandboxProcess, latency_ms: int) -> None:
    """Delay every provider reply, standing for the round trip to a real data centre."""
    if latency_ms:
        sandbox.faults(provider="all", rate=0, latency_ms=latency_ms)


def demo_workspace(work: Path, sandbox: SandboxProcess, contacts: int, *, lift_limits: bool,
                   one_way: bool, two_way: bool = False, database_url: str) -> dict[str, str]:
    """Migrate a fresh database, seed the demo over `contacts`; return the app's environment."""
    env = app_environment(work, sandbox, database_url)
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "seed_demo", "--sandbox-url", sandbox.url, "--contacts", str(contacts), "--no-hostile",
           "--conflicts", "0", "--logins-file", str(work / "logins.txt"))
    if one_way:
        manage(env, "shell", "-c", ONE_WAY)
    elif two_way:
        manage(env, "shell", "-c", WITHOUT_ACTIVECAMPAIGN)
    if lift_limits:
        # The app keeps each provider's published budget on its side too (it must never
        # be the one to break it): lifting the sandbox's limits alone would still pace the
        # run at HubSpot's 190 requests per 10 s.
        manage(env, "shell", "-c", LIFT_CLIENT_BUDGET)
    return env


def bench_sync(contacts: int, *, lift_limits: bool, latency_ms: int) -> SyncFigures:
    sandbox = sandbox_start(lift_limits=lift_limits)
    try:
        with tempfile.TemporaryDirectory(prefix="syncbench-") as work, fresh_database(Path(work)) as database:
            env = demo_workspace(Path(work), sandbox, contacts, lift_limits=lift_limits, one_way=True,
                                 database_url=database)
            sandbox.reset_stats()
            network_delay(sandbox, latency_ms)
            seconds, peak_mb, _ = timed_runsync(env)
            api_calls, _ = calls(sandbox.stats())
            run = last_run(env)

            sandbox.reset_stats()
            timed_runsync(env)
            _, second_writes = calls(sandbox.stats())
    finally:
        sandbox.stop()
    lower_bound = math.ceil(run["read"] / HUBSPOT_PAGE) + math.ceil(run["pushed"] / MAILCHIMP_BATCH)
    return SyncFigures(
        contacts=contacts,
        limits="lifted" if lift_limits else "HubSpot 190/10 s, search 5/s; Mailchimp 10 connections",
        seconds=round(seconds, 2),
        contacts_per_second=round(run["read"] / seconds),
        read=run["read"],
        pushed=run["pushed"],
        failed=run["failed"],
        api_calls=api_calls,
        lower_bound=lower_bound,
        calls_over_bound_percent=round(100 * (api_calls - lower_bound) / lower_bound, 1),
        peak_rss_mb=round(peak_mb, 1),
        second_run_write_calls=second_writes,
        status=run["status"],
    )


def bench_multi(contacts: int, *, two_way: bool, lift_limits: bool, latency_ms: int,
                profile_dir: Path | None = None) -> ThreeWayFigures:
    """Time the demo's own sync over its systems, three runs, with the consistency check.

    `two_way`: HubSpot and Mailchimp alone, with data on both sides before the first
    run: half of `contacts` in each, a quarter of them the same people (the sandbox's
    seeder overlaps each system's people with half of the one before). Otherwise the
    demo's three systems, as `seed_demo` seeds them (Mailchimp empty). `profile_dir`:
    each run is profiled (cProfile) into `<contacts>-run<1|2|3>.prof` there.
    """
    systems = TWO_WAY_SYSTEMS if two_way else THREE_WAY_SYSTEMS
    sandbox = sandbox_start(lift_limits=lift_limits)
    try:
        with tempfile.TemporaryDirectory(prefix="syncbench-") as work, fresh_database(Path(work)) as database:
            if two_way:
                sandbox.seed(hubspot_contacts=contacts // 2, mailchimp_members=contacts // 2, random_seed=12)
            env = demo_workspace(Path(work), sandbox, contacts // 2 if two_way else contacts,
                                 lift_limits=lift_limits, one_way=False, two_way=two_way, database_url=database)
            held = {"hubspot": len(sandbox.hubspot_contacts()), "mailchimp": len(sandbox.mailchimp_members()),
                    "activecampaign": len(sandbox.control("activecampaign", "contacts")["contacts"])}
            before = consistency.snapshot(sandbox, systems)
            sandbox.reset_stats()
            network_delay(sandbox, latency_ms)
            seconds, peak_mb, cpu_seconds = timed_runsync(env, profile_to=_profile_path(profile_dir, contacts, 1))
            stats = sandbox.stats()
            run = last_run(env)
            written = json.loads(manage(env, "shell", "-c", HELD_AND_WRITTEN).strip().splitlines()[-1])
            conflicts = int(manage(env, "shell", "-c", "from syncapp.models import Conflict; "
                                   "print(Conflict.objects.count())").strip().splitlines()[-1])
            after_first = consistency.snapshot(sandbox, ("hubspot",))

            # What the first run learns from replies (a status a write reply tells) goes
            # out in the second; the third must write nothing.
            later_writes, later_calls, later_seconds, later_cpu, later_routes, later_runs = [], [], [], [], [], []
            later_sandbox_cpu = []
            for number in (2, 3):
                # Scheduled runs are minutes apart: wait out the longest overlap, as they would.
                time.sleep(RUN_SPACING_SECONDS)
                sandbox.reset_stats()
                sandbox_before = sandbox_cpu_seconds(sandbox)
                wall, _, cpu = timed_runsync(env, profile_to=_profile_path(profile_dir, contacts, number))
                later_seconds.append(wall)
                later_cpu.append(cpu)
                later_sandbox_cpu.append(sandbox_cpu_seconds(sandbox) - sandbox_before)
                later_runs.append(last_run(env))
                later_calls.append(calls(sandbox.stats())[0])
                later_writes.append(calls(sandbox.stats())[1])
                later_routes.append({f"{system} {route}": count
                                     for system, routes in sandbox.stats()["requests"].items()
                                     for route, count in routes.items()})
            after = consistency.snapshot(sandbox, systems)
            inputs = json.loads(manage(env, "shell", "-c", CHECK_INPUTS).strip().splitlines()[-1])
            checked = consistency.check(before, after, held_fields={tuple(pair) for pair in inputs["held"]},
                                        errors={tuple(pair) for pair in inputs["errors"]})
    finally:
        sandbox.stop()
    # HubSpot takes opt-outs apart from the contacts: its batch unsubscribe holds 100 addresses.
    opted_out = {system: 0 for system in systems}
    opted_out["hubspot"] = sum(1 for email, person in after_first["hubspot"].items()
                               if person.consent and not before["hubspot"].get(email, person).consent)
    figures = []
    for system in systems:
        page, batch = PAGES_AND_BATCHES[system]
        routes = stats["requests"].get(system, {})
        api_calls = sum(routes.values())
        top_routes = dict(sorted(routes.items(), key=lambda item: -item[1])[:3])
        bound = (max(1, math.ceil(held[system] / page)) + math.ceil(written[system] / batch)
                 + math.ceil(opted_out[system] / UNSUBSCRIBE_BATCH))
        figures.append(SystemCalls(system=system, held=held[system], written=written[system], api_calls=api_calls,
                                   lower_bound=bound,
                                   calls_over_bound_percent=round(100 * (api_calls - bound) / bound, 1),
                                   top_routes=top_routes))
    return ThreeWayFigures(
        contacts=contacts, limits="lifted" if lift_limits else "enforced", seconds=round(seconds, 2),
        contacts_per_second=round(run["read"] / seconds), read=run["read"], pushed=run["pushed"],
        failed=run["failed"], conflicts=conflicts, systems=figures, peak_rss_mb=round(peak_mb, 1),
        second_run_write_calls=later_writes[0], third_run_write_calls=later_writes[1], status=run["status"],
        cpu_seconds=round(cpu_seconds, 2), second_run_cpu_seconds=round(later_cpu[0], 2),
        third_run_cpu_seconds=round(later_cpu[1], 2), second_run_sandbox_cpu_seconds=round(later_sandbox_cpu[0], 2),
        second_run_seconds=round(later_seconds[0], 2), second_run_calls=later_calls[0],
        third_run_seconds=round(later_seconds[1], 2), third_run_calls=later_calls[1],
        second_run_read=later_runs[0]["read"], second_run_echoes=later_runs[0]["echoes"],
        second_run_routes=later_routes[0], third_run_routes=later_routes[1],
        consistency=checked.summary(), consistent=checked.passed and later_writes[1] == 0,
        mismatch_samples=checked.samples,
    )


def _profile_path(profile_dir: Path | None, contacts: int, run: int) -> Path | None:
    return profile_dir / f"{contacts}-run{run}.prof" if profile_dir else None


def main_multi(options: argparse.Namespace) -> None:
    results = []
    for contacts in options.contacts:
        figures = bench_multi(contacts, two_way=options.two_way, lift_limits=options.lift_limits,
                              latency_ms=options.latency_ms, profile_dir=options.profile)
        results.append(figures)
        seeded = (f"{contacts // 2:,} in HubSpot and {contacts // 2:,} in Mailchimp, {contacts // 4:,} shared"
                  if options.two_way else f"{figures.contacts:,} HubSpot contacts")
        print(f"{seeded}: {figures.seconds} s, {figures.contacts_per_second:,} "
              f"records read/s, read {figures.read:,}, pushed {figures.pushed:,}, refused {figures.failed:,}, "
              f"{figures.conflicts:,} conflicts, peak {figures.peak_rss_mb} MB, "
              f"write calls in the second run {figures.second_run_write_calls}, in the third "
              f"{figures.third_run_write_calls}; {figures.status}")
        print(f"  {'system':<15} {'held':>8} {'written':>8} {'calls':>7} {'bound':>7} {'over':>7}")
        for system in figures.systems:
            print(f"  {system.system:<15} {system.held:>8,} {system.written:>8,} {system.api_calls:>7,} "
                  f"{system.lower_bound:>7,} {system.calls_over_bound_percent:>6}%  "
                  + ", ".join(f"{route} {count:,}" for route, count in system.top_routes.items()))
        print(f"  CPU seconds of the app's process: first run {figures.cpu_seconds}, second "
              f"{figures.second_run_cpu_seconds} ({100 * figures.second_run_cpu_seconds / figures.cpu_seconds:.0f}% of "
              f"the first), third {figures.third_run_cpu_seconds}; the sandbox's during the second "
              f"{figures.second_run_sandbox_cpu_seconds}")
        print(f"  second run: {figures.second_run_seconds} s "
              f"({100 * figures.second_run_seconds / figures.seconds:.0f}% of the first), "
              f"{figures.second_run_calls:,} calls, read {figures.second_run_read:,} "
              f"({figures.second_run_echoes:,} echoes); third run (nothing changed): {figures.third_run_seconds} s, "
              f"{figures.third_run_calls} calls")
        for label, routes in (("second", figures.second_run_routes), ("third", figures.third_run_routes)):
            print(f"    {label} run's calls: " + ", ".join(f"{route} {count}" for route, count in routes.items()))
        total, bound = sum(s.api_calls for s in figures.systems), sum(s.lower_bound for s in figures.systems)
        print(f"  all systems: {total:,} calls against a lower bound of {bound:,} ({total / bound:.2f}x)")
        print(f"  {figures.consistency}" + ("" if figures.consistent else " -- VOID"))
        for sample in figures.mismatch_samples:
            print(f"    {sample}")
    if options.json:
        key = "two_way" if options.two_way else "three_way"
        options.json.write_text(json.dumps({"machine": machine(), key: [asdict(f) for f in results]}, indent=2))


def bench_baseline(sample: int, *, lift_limits: bool, latency_ms: int) -> BaselineFigures:
    """Time the per-member loop through the official SDKs over `sample` contacts."""
    import mailchimp_marketing
    from hubspot import HubSpot

    sandbox = sandbox_start(lift_limits=lift_limits)
    try:
        sandbox.seed(hubspot_contacts=sample, hostile=False)
        sandbox.reset_stats()
        network_delay(sandbox, latency_ms)
        hubspot = HubSpot(access_token=sandbox.hubspot_token, host=sandbox.hubspot_url)
        mailchimp = mailchimp_marketing.Client()
        mailchimp.set_config({"api_key": sandbox.mailchimp_key, "server": "us1"})
        mailchimp.api_client.host = sandbox.mailchimp_url
        started = time.perf_counter()
        refused = 0
        after = None
        while True:
            page = hubspot.crm.contacts.basic_api.get_page(limit=HUBSPOT_PAGE, after=after,
                                                           properties=["email", "firstname", "lastname", "phone"])
            for contact in page.results:
                email = (contact.properties.get("email") or "").strip()
                body = {
                    "email_address": email,
                    "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": contact.properties.get("firstname") or "",
                                     "LNAME": contact.properties.get("lastname") or ""},
                }
                try:
                    mailchimp.lists.set_list_member(
                        sandbox.list_id, hashlib.md5(email.lower().encode()).hexdigest(), body
                    )
                except mailchimp_marketing.api_client.ApiClientError:
                    # The naive loop goes on past what Mailchimp refuses; counted, not hidden.
                    refused += 1
            if not page.paging or not page.paging.next:
                break
            after = page.paging.next.after
        seconds = time.perf_counter() - started
        api_calls = sandbox.stats()["total"]
    finally:
        sandbox.stop()
    return BaselineFigures(sample=sample, seconds=round(seconds, 2),
                           contacts_per_second=round(sample / seconds), api_calls=api_calls, refused=refused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--baseline-sample", type=int, default=2_000,
                        help="contacts the per-member baseline loop is timed over (default 2,000)")
    parser.add_argument("--lift-limits", action="store_true",
                        help="turn the sandbox's provider rate limits off, to measure Syncapp alone")
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="delay every provider reply by this much, for both Syncapp and the baseline (default 0)")
    parser.add_argument("--three-way", action="store_true",
                        help="time the demo's two-way sync over HubSpot, Mailchimp and ActiveCampaign instead")
    parser.add_argument("--two-way", action="store_true",
                        help="time the demo's sync between HubSpot and Mailchimp with data on both sides instead "
                             "(half the contacts in each, a quarter shared)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="the app's database: a fresh SQLite file (default) or a fresh PostgreSQL database")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL,
                        help=f"the PostgreSQL server for --database postgres (default {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="with --two-way or --three-way: profile each run (cProfile) into DIR; "
                             "the times then include the profiler's cost")
    options = parser.parse_args()
    global POSTGRES_SERVER
    POSTGRES_SERVER = options.postgres_url.rstrip("/") if options.database == "postgres" else None
    # The sandbox is started through manage.py, which needs keys; these are throwaway.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("SALT_KEY", secrets.token_urlsafe(16))

    print("machine:", json.dumps(machine()))
    if POSTGRES_SERVER is None:
        print(f"database: SQLite {sqlite3.sqlite_version}")
    else:
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/postgres") as server:
            print(f"database: PostgreSQL {server.execute('SHOW server_version').fetchone()[0]}")
    print(f"provider limits: {'lifted' if options.lift_limits else 'enforced'}; "
          f"added latency per request: {options.latency_ms} ms")
    if options.three_way or options.two_way:
        main_multi(options)
        return
    baseline = bench_baseline(options.baseline_sample, lift_limits=options.lift_limits,
                              latency_ms=options.latency_ms)
    print(f"baseline (official SDKs, one request per member): {baseline.contacts_per_second} contacts/s "
          f"over {baseline.sample} contacts, {baseline.seconds} s, {baseline.api_calls} API calls, "
          f"{baseline.refused} refused")
    results = []
    header = f"{'contacts':>9} {'seconds':>8} {'c/s':>7} {'x base':>7} {'calls':>6} {'bound':>6} {'over':>6} " \
             f"{'peak MB':>8} {'2nd run writes':>14}  status"
    print(header)
    for contacts in options.contacts:
        figures = bench_sync(contacts, lift_limits=options.lift_limits, latency_ms=options.latency_ms)
        results.append(figures)
        speedup = figures.contacts_per_second / baseline.contacts_per_second
        print(f"{figures.contacts:>9,} {figures.seconds:>8} {figures.contacts_per_second:>7,} {speedup:>6.1f}x "
              f"{figures.api_calls:>6} {figures.lower_bound:>6} {figures.calls_over_bound_percent:>5}% "
              f"{figures.peak_rss_mb:>8} {figures.second_run_write_calls:>14}  {figures.status} "
              f"(read {figures.read:,}, pushed {figures.pushed:,}, refused {figures.failed:,})")
    if options.json:
        options.json.write_text(json.dumps({
            "machine": machine(), "baseline": asdict(baseline), "syncs": [asdict(figure) for figure in results],
        }, indent=2))


if __name__ == "__main__":
    main()
