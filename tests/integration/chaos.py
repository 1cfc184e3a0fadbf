"""Chaos: the demo's two-way sync under injected faults, its workers killed at random points.

Shared by tests/integration/test_chaos.py and bench/chaos.py. Every part is the real one:
the sandbox process, the database, and `manage.py qcluster` worker processes sharing it.
The sandbox injects the faults (429s, 5xx, dropped connections, and writes carried out
whose reply is lost). A kill is a SIGKILL of the worker's whole process group, so no
cleanup runs, as when a machine dies; a seeded plan aims each one at a moment the run is
reading or writing. A new worker process starts at once after each kill, as a supervisor
(systemd, Kubernetes) would start one; nothing else is done for the killed run: resuming
it is the workers' own watchdog's job.

What the report says is read from the systems themselves: the records the sandbox
holds, its request counts, and the hub's rows.
"""
from __future__ import annotations

import random
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from django.contrib.auth.models import User

from connections.models import Connection
from syncapp.demo import DemoWorkspace, demo_workspace_build
from syncapp.engine.identity import InvalidEmail, InvalidPhone, normalize_email, normalize_phone
from syncapp.engine.text import clean_text
from syncapp.models import Conflict, Contact, RecordError, RecordLink, SyncRun
from syncapp.services.runs import run_request
from syncapp.services.syncs import sync_save
from tests.integration.two_way import without_activecampaign, write_calls
from tests.integration.workspace import kill_hard, manage, stop

READING, WRITING = "reading", "writing"
# Mailchimp states that forbid marketing email for good; "archived" members get none either.
OPTED_OUT = frozenset({"unsubscribed", "cleaned"})
NOT_SUBSCRIBED = OPTED_OUT | {"archived"}
POLL_SECONDS = 0.05


class ChaosError(AssertionError):
    """The sync did not get where the scenario needs it within the time allowed."""


@dataclass(frozen=True)
class ChaosPlan:
    """A scenario: how many records each system starts with, the fault rate, the kills.

    Mailchimp's members overlap the second half of HubSpot's contacts (sandbox.seed):
    people in both systems, in HubSpot only and in Mailchimp only.
    """

    hubspot_contacts: int
    mailchimp_members: int
    kills: int
    fault_rate: float = 0.2
    random_seed: int = 0

    def faults(self) -> dict[str, Any]:
        """The sandbox fault plan: half error replies (429, 5xx), a quarter dropped
        connections, a quarter writes carried out whose reply is lost."""
        return {"provider": "all", "rate": self.fault_rate / 2, "statuses": [429, 500, 502, 503],
                "reset_rate": self.fault_rate / 4, "lost_reply_rate": self.fault_rate / 4,
                "random_seed": self.random_seed}

    def kill_points(self) -> list[KillPoint]:
        """Where each kill falls: both phases at least once, in a seeded random order."""
        rng = random.Random(self.random_seed)
        phases = [READING, WRITING][:self.kills] + [rng.choice((READING, WRITING)) for _ in range(self.kills - 2)]
        rng.shuffle(phases)
        # How far into the phase: records read since the run was first seen, or write
        # requests the sandbox counted meanwhile (a run makes about one per four records
        # read), spread so that the kills fall all along the first sync.
        records = (self.hubspot_contacts + self.mailchimp_members) // self.kills
        return [KillPoint(phase, rng.randrange(1, records) if phase == READING else rng.randrange(1, records // 8 + 2))
                for phase in phases]


@dataclass(frozen=True)
class KillPoint:
    phase: str
    after: int


@dataclass
class Kill:
    """One worker killed: what its run was doing, and when a run made progress again."""

    phase: str
    run_id: int
    at: float
    progress_at_kill: int
    recovered_at: float | None = None

    @property
    def recovery_seconds(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at


@dataclass
class Generation:
    """One worker process's life: started, and killed or stopped (wall-clock seconds)."""

    number: int
    started: float
    ended: float | None = None


def run_progress(run: SyncRun) -> int:
    return run.read_count + run.pushed_count + run.progress_done


class Workers:
    """The `manage.py qcluster` worker process: started, killed, started again."""

    def __init__(self, sandbox, log_dir: Path):
        self.sandbox = sandbox
        self.log_dir = log_dir
        self.generations: list[Generation] = []
        self.process = None

    def start(self) -> None:
        number = len(self.generations) + 1
        self.process = manage(self.sandbox, self.log_dir / f"qcluster-{number}.log", "qcluster")
        self.generations.append(Generation(number, time.time()))

    def kill(self) -> float:
        kill_hard(self.process)
        self.generations[-1].ended = time.time()
        return self.generations[-1].ended

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)
            self.generations[-1].ended = time.time()

    def log_tail(self, characters: int = 4000) -> str:
        if not self.generations:
            return ""
        return (self.log_dir / f"qcluster-{len(self.generations)}.log").read_text(errors="replace")[-characters:]


def chaos_workspace(sandbox, *, lift_limits: bool) -> DemoWorkspace:
    """Build the demo's two-way sync against `sandbox` between HubSpot and Mailchimp, with its schedule off.

    With no schedule, nothing but the workers' watchdog can resume a killed run.
    """
    if lift_limits:
        sandbox.limits(hubspot_rate_limit=0, hubspot_search_rate_limit=0)
    root = User.objects.filter(username="chaos").first() or User.objects.create_superuser(
        "chaos", "chaos@example.com", None)
    workspace = demo_workspace_build(sandbox_url=sandbox.url, list_id=sandbox.list_id, user=root)
    without_activecampaign(workspace, user=root)
    if lift_limits:
        Connection.objects.filter(pk=workspace.hubspot.pk).update(settings={"search_rate_limit": 0})
        Connection.objects.update(rate_limit_requests=1_000_000, rate_limit_window_seconds=10)
    workspace.sync.schedule_minutes = 0
    sync_save(sync=workspace.sync, user=root)
    return workspace


@dataclass
class Seeded:
    """What each system held before the first run."""

    hubspot: list[dict]
    mailchimp: list[dict]


class ChaosDriver:
    """Drive one scenario: request the first run, kill the worker where the plan says,
    wait for the watchdog's recovery, then let the sync converge."""

    def __init__(self, *, sandbox, workspace: DemoWorkspace, workers: Workers, plan: ChaosPlan,
                 recovery_timeout: float, run_timeout: float):
        self.sandbox = sandbox
        self.workspace = workspace
        self.sync = workspace.sync
        self.workers = workers
        self.plan = plan
        self.recovery_timeout = recovery_timeout
        self.run_timeout = run_timeout
        self.kills: list[Kill] = []
        self.rng = random.Random(plan.random_seed)
        self.outside_edits = 0

    def _writes(self) -> int:
        return self.sandbox.stats()["writes"]

    def _running(self) -> SyncRun | None:
        return SyncRun.objects.filter(sync=self.sync, status=SyncRun.Status.RUNNING).first()

    def _idle(self) -> bool:
        return not SyncRun.objects.filter(sync=self.sync, status__in=SyncRun.ACTIVE).exists()

    def request_run(self) -> SyncRun:
        """Ask for a run, as the Run button does: a worker picks it up from the queue."""
        run, _ = run_request(sync=self.sync, trigger=SyncRun.Trigger.MANUAL)
        return run

    def run_kills(self, *, rescue: bool = False) -> list[Kill]:
        """Request the first run, then kill the worker at each point of the plan.

        A kill no run recovers from in time raises ChaosError; with `rescue` (the
        benchmark, which reports it) a run is requested instead, as a person pressing
        "Run now" would, and the kill is left without a recovery time.
        """
        self.request_run()
        for point in self.plan.kill_points():
            kill = self.kill_at(point)
            if not self.wait_recovered(kill):
                if not rescue:
                    raise ChaosError(self._unrecovered(kill))
                self.request_run()
        return self.kills

    def kill_at(self, point: KillPoint) -> Kill:
        """Kill the worker once the runs got `point.after` into the planned phase.

        Progress counts from the call on, across runs. When a run ends before the point
        came, the next one (given work by an outside edit) is killed at its first moment
        in the planned phase: once it saved a page, or while it writes.
        """
        deadline = time.monotonic() + self.run_timeout
        reads_seen: dict[int, int] = {}
        read, written, overdue = 0, 0, False
        last_writes = self._writes()
        while time.monotonic() < deadline:
            run = self._running()
            writes = self._writes()
            writing = writes > last_writes
            written += writes - last_writes
            last_writes = writes
            if run is None:
                if self._idle():
                    overdue = True
                    self._edit_outside()
                    self.request_run()
            else:
                read += run.read_count - reads_seen.get(run.pk, run.read_count)
                reads_seen[run.pk] = run.read_count
                # Reading means a page already saved: a kill before the first one would
                # lose nothing, and a run of such kills is what the watchdog gives up on.
                reading = not writing and run.phase.startswith("Reading") and run.read_count > 0
                in_phase = writing if point.phase == WRITING else reading
                progress = written if point.phase == WRITING else read
                if in_phase and (overdue or progress >= point.after):
                    at = self.workers.kill()
                    run.refresh_from_db()
                    kill = Kill(point.phase, run.pk, at, run_progress(run))
                    self.kills.append(kill)
                    self.workers.start()
                    return kill
            time.sleep(POLL_SECONDS)
        raise ChaosError(f"kill {len(self.kills) + 1} ({point}) never came within {self.run_timeout} s; "
                         f"worker log:\n{self.workers.log_tail()}")

    def wait_recovered(self, kill: Kill) -> bool:
        """Wait for a run to make progress after the kill (the watchdog's doing); return whether one did."""
        deadline = time.monotonic() + self.recovery_timeout
        while time.monotonic() < deadline:
            later = SyncRun.objects.filter(sync=self.sync, pk__gte=kill.run_id).order_by("pk")
            for run in later:
                if run.pk == kill.run_id:
                    progressed = run.status in SyncRun.ACTIVE and run_progress(run) > kill.progress_at_kill
                else:
                    progressed = run_progress(run) > 0 or run.status not in SyncRun.ACTIVE
                if progressed:
                    kill.recovered_at = time.time()
                    return True
            time.sleep(POLL_SECONDS * 4)
        return False

    def _unrecovered(self, kill: Kill) -> str:
        killed = SyncRun.objects.get(pk=kill.run_id)
        return (f"no run made progress within {self.recovery_timeout} s of killing the worker of run {kill.run_id} "
                f"(now {killed.status}: {killed.error or 'no error'}); nothing resumed it. Worker log:\n"
                f"{self.workers.log_tail()}")

    def _edit_outside(self) -> None:
        """Change the last name of one HubSpot contact in twenty at once (a colleague's bulk edit)."""
        self.outside_edits += 1
        live = [contact["id"] for contact in self.sandbox.hubspot_contacts() if not contact["archived"]]
        ids = self.rng.sample(live, min(len(live), max(200, len(live) // 20)))
        response = requests.post(f"{self.sandbox.url}/_sandbox/hubspot/bulk-edit", timeout=60,
                                 json={"ids": ids, "properties": {"lastname": f"Edited {self.outside_edits}"}})
        response.raise_for_status()

    def run_to_end(self) -> SyncRun:
        """Once no run is active, request one and wait until it ends.

        Never while a run is active: a request would abandon a run whose heartbeat
        looks stale, and taking runs over is the watchdog's business, not the test's.
        """
        deadline = time.monotonic() + self.run_timeout
        while not self._idle():
            if time.monotonic() > deadline:
                raise ChaosError(f"the active run did not end within {self.run_timeout} s; "
                                 f"worker log:\n{self.workers.log_tail()}")
            time.sleep(POLL_SECONDS * 4)
        run = self.request_run()
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status not in SyncRun.ACTIVE:
                return run
            time.sleep(POLL_SECONDS * 4)
        raise ChaosError(f"run {run.pk} did not end within {self.run_timeout} s ({run.status}, {run.phase}); "
                         f"worker log:\n{self.workers.log_tail()}")

    def converge(self, *, max_runs: int) -> list[SyncRun]:
        """Run until a run ends without a write request, faults still on; return the runs."""
        runs = []
        for _ in range(max_runs):
            before = self._writes()
            runs.append(self.run_to_end())
            if runs[-1].status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL) and self._writes() == before:
                return runs
        raise ChaosError(f"no quiet run in {max_runs}: {[(run.pk, run.status, run.error[:200]) for run in runs]}")

    def quiet_run(self) -> tuple[SyncRun, dict[str, int]]:
        """With the faults cleared, run once more; return the run and its write requests by route."""
        self.sandbox.clear_faults()
        self.sandbox.reset_stats()
        run = self.run_to_end()
        return run, write_calls(self.sandbox)


def recovery_percentiles(kills: list[Kill]) -> tuple[float | None, float | None]:
    """Return the median and the longest recovery, in seconds."""
    seconds = [kill.recovery_seconds for kill in kills if kill.recovery_seconds is not None]
    if not seconds:
        return None, None
    return statistics.median(seconds), max(seconds)


def overlapped_runs(sync, generations: list[Generation]) -> list[tuple[int, int]]:
    """Return the pairs of runs of `sync` whose write windows overlapped.

    A run may write from its start until it ends by itself. A run declared abandoned
    may write until its worker process died, when that came first; if its worker was
    still alive, until that worker was killed or stopped: the rows cannot say when such
    a run noticed it had lost its run, so it counts as writing all that while.
    """
    windows = []
    for run in SyncRun.objects.filter(sync=sync).exclude(started_at=None).order_by("started_at"):
        start = run.started_at.timestamp()
        end = run.finished_at.timestamp() if run.finished_at else time.time()
        if run.status == SyncRun.Status.ABANDONED:
            worker = next((generation for generation in reversed(generations) if generation.started <= start), None)
            end = worker.ended if worker and worker.ended else time.time()
        windows.append((run.pk, start, end))
    return [(first, second) for index, (first, _, end) in enumerate(windows)
            for second, start, _ in windows[index + 1:] if start < end]


# The consistency of what the systems hold at the end.


def _email(value: Any) -> str | None:
    try:
        return normalize_email(clean_text(value or ""))
    except InvalidEmail:
        return None


def _text(value: Any) -> str:
    return clean_text(value or "").strip()


def _phone(value: Any, region: str) -> str:
    try:
        return normalize_phone(clean_text(value or ""), region) if value else ""
    except InvalidPhone:
        return ""


@dataclass
class Consistency:
    """What the systems and the hub hold at the end, against what they must."""

    people: int = 0
    missing: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    duplicates: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unlinked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    refused: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    fields_compared: int = 0
    fields_differing: list[str] = field(default_factory=list)
    consent_violations: list[str] = field(default_factory=list)

    @property
    def missing_count(self) -> int:
        return sum(map(len, self.missing.values()))

    @property
    def duplicate_count(self) -> int:
        return sum(map(len, self.duplicates.values()))

    @property
    def consistent_percent(self) -> float:
        if not self.fields_compared:
            return 100.0
        return 100 * (self.fields_compared - len(self.fields_differing)) / self.fields_compared


def consistency_check(*, seeded: Seeded, sandbox, workspace: DemoWorkspace) -> Consistency:
    """Compare the end state of both systems and the hub with the seeded people.

    Every valid address, live in HubSpot or in Mailchimp at the start, must be held once
    by each system and by the hub: by one record per address, or by as many as HubSpot
    held for it at the start (old imports with one address twice, each a contact of its
    own, listed as duplicates). Only a record a system refused by its own rules may be
    missing there, with its record error.

    Every field the sync maps both ways is equal in HubSpot, Mailchimp and the hub; the
    fields HubSpot owns alone (phone, company) are equal in Mailchimp wherever HubSpot
    holds a value Mailchimp can take. A field with an open conflict is left out.

    An address whose last word at the start was an opt-out, in any system, is opted out
    in every system and in the hub (see `opted_out_addresses`).
    """
    report = Consistency()
    region = workspace.hubspot.default_phone_region
    hubspot = [contact for contact in sandbox.hubspot_contacts() if not contact["archived"]]
    members = sandbox.mailchimp_members()

    seeded_hubspot = Counter(_email(contact["properties"].get("email")) for contact in seeded.hubspot
                             if not contact["archived"])
    seeded_hubspot.pop(None, None)
    expected = set(seeded_hubspot) | {_email(member["email_address"]) for member in seeded.mailchimp
                                      if member["status"] != "archived"}
    report.people = len(expected)

    refused = defaultdict(set)
    for connection, email in (RecordError.objects.filter(resolved=False, retriable=False)
                              .exclude(contact=None).values_list("connection__name", "contact__email")):
        refused[connection].add(email)

    hubspot_by_email = defaultdict(list)
    for contact in hubspot:
        hubspot_by_email[_email(contact["properties"].get("email"))].append(contact)
    members_by_email = defaultdict(list)
    for member in members:
        members_by_email[_email(member["email_address"])].append(member)
    hub_by_email = Counter(Contact.objects.exclude(email=None).values_list("email", flat=True))

    systems = (("HubSpot", workspace.hubspot.name, hubspot_by_email), ("Mailchimp", workspace.mailchimp.name,
                                                                      members_by_email))
    for email in sorted(expected):
        allowed = max(1, seeded_hubspot.get(email, 0))
        for system, connection_name, held in systems:
            count = len(held.get(email, []))
            if count == 0:
                if email in refused[connection_name]:
                    report.refused[system].append(email)
                else:
                    report.missing[system].append(email)
            elif count > (allowed if system == "HubSpot" else 1):
                report.duplicates[system].append(email)
        if not hub_by_email.get(email):
            report.missing["hub"].append(email)
        elif hub_by_email[email] > allowed:
            report.duplicates["hub"].append(email)
    for email in sorted(set(hub_by_email) - expected):
        report.duplicates["hub (unknown address)"].append(email)

    links = defaultdict(dict)
    for contact_id, connection_id, external_id, archived in RecordLink.objects.exclude(external_id=None).values_list(
            "contact_id", "connection_id", "external_id", "archived"):
        links[connection_id][external_id] = (contact_id, archived)
    for contact in hubspot:
        properties = contact["properties"]
        identifiable = _email(properties.get("email")) or (
            not _text(properties.get("email")) and _phone(properties.get("phone"), region))
        if identifiable and contact["id"] not in links[workspace.hubspot.pk]:
            report.unlinked["HubSpot"].append(contact["id"])
    for member in members:
        if member["status"] != "archived" and member["id"] not in links[workspace.mailchimp.pk]:
            report.unlinked["Mailchimp"].append(member["email_address"])

    _compare_fields(report, hubspot, members, links, workspace, region)
    _check_consent(report, seeded, hubspot_by_email, members_by_email)
    return report


def _compare_fields(report: Consistency, hubspot: list[dict], members: list[dict], links, workspace,
                    region: str) -> None:
    hubspot_by_contact = {links[workspace.hubspot.pk][contact["id"]][0]: contact for contact in hubspot
                          if contact["id"] in links[workspace.hubspot.pk]
                          and not links[workspace.hubspot.pk][contact["id"]][1]}
    members_by_contact = {links[workspace.mailchimp.pk][member["id"]][0]: member for member in members
                          if member["id"] in links[workspace.mailchimp.pk] and member["status"] != "archived"
                          and not links[workspace.mailchimp.pk][member["id"]][1]}
    held = set(Conflict.objects.filter(status=Conflict.Status.OPEN).values_list("contact_id", "hub_field"))
    both = set(hubspot_by_contact) & set(members_by_contact)
    for contact in Contact.objects.filter(pk__in=both).iterator():
        properties = hubspot_by_contact[contact.pk]["properties"]
        member = members_by_contact[contact.pk]
        merge_fields = member["merge_fields"]
        compared = {
            "email": (_email(contact.email), _email(properties.get("email")), _email(member["email_address"])),
            "first_name": (_text(contact.first_name), _text(properties.get("firstname")),
                           _text(merge_fields.get("FNAME"))),
            "last_name": (_text(contact.last_name), _text(properties.get("lastname")),
                          _text(merge_fields.get("LNAME"))),
        }
        # HubSpot owns these; Mailchimp takes what HubSpot holds, when HubSpot holds one.
        phone = _phone(properties.get("phone"), region)
        if phone:
            compared["phone"] = (contact.phone or "", phone, _phone(merge_fields.get("PHONE"), region))
        if _text(properties.get("company")):
            compared["company"] = (_text(contact.company), _text(properties.get("company")),
                                   _text(merge_fields.get("COMPANY")))
        for hub_field, values in compared.items():
            if (contact.pk, hub_field) in held:
                continue
            report.fields_compared += 1
            if len(set(values)) != 1:
                report.fields_differing.append(f"{contact.email} {hub_field}: hub {values[0]!r}, "
                                               f"HubSpot {values[1]!r}, Mailchimp {values[2]!r}")


def opted_out_addresses(seeded: Seeded) -> set[str]:
    """Return the addresses whose last word at the start, in any system, was an opt-out.

    An opt-out is HubSpot's `hs_email_optout` (as of the contact's last change) or a
    Mailchimp member unsubscribed or cleaned (as of its last change). A Mailchimp
    subscription whose opt-in is newer than every opt-out of the address is the person
    asking again, and lifts them; nothing lifts a hard bounce (cleaned).
    """
    opt_outs: dict[str, list[datetime]] = defaultdict(list)
    opt_ins: dict[str, list[datetime]] = defaultdict(list)
    bounced = set()
    for contact in seeded.hubspot:
        if contact["properties"].get("hs_email_optout") == "true":
            opt_outs[_email(contact["properties"].get("email"))].append(_when(contact["updatedAt"]))
    for member in seeded.mailchimp:
        email = _email(member["email_address"])
        if member["status"] in OPTED_OUT:
            opt_outs[email].append(_when(member["last_changed"]))
        if member["status"] == "cleaned":
            bounced.add(email)
        if member["status"] == "subscribed" and member["timestamp_opt"]:
            opt_ins[email].append(_when(member["timestamp_opt"]))
    opted_out = set()
    for email, times in opt_outs.items():
        latest_opt_in = max(opt_ins.get(email, ()), default=None)
        if email is not None and (email in bounced or latest_opt_in is None or latest_opt_in <= max(times)):
            opted_out.add(email)
    return opted_out


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check_consent(report: Consistency, seeded: Seeded, hubspot_by_email, members_by_email) -> None:
    opted_out = opted_out_addresses(seeded)
    hub_states = defaultdict(set)
    for email, state in Contact.objects.filter(email__in=opted_out).values_list("email", "email_consent"):
        hub_states[email].add(state)
    for email in sorted(opted_out):
        where = []
        where += [f"HubSpot {contact['id']}" for contact in hubspot_by_email.get(email, [])
                  if contact["properties"].get("hs_email_optout") != "true"]
        where += [f"Mailchimp ({member['status']})" for member in members_by_email.get(email, [])
                  if member["status"] not in NOT_SUBSCRIBED]
        where += [f"hub ({state})" for state in hub_states.get(email, ()) if state not in OPTED_OUT]
        if where:
            report.consent_violations.append(f"{email}: not opted out in {', '.join(where)}")
