"""Audit trail benchmark: a million-row trail's pages, person search, export and verification, against baselines.

It makes a fresh database (SQLite in a temporary directory, or with `--database-url` a
PostgreSQL database it creates and drops), migrates it with `manage.py migrate`, and
seeds N audit events as the app writes them: a valid hash chain (each row's digest,
previous hash and hash computed by audit.chain's own functions, in id order, the
chain's head set to the last row), inserted a batch at a time. The trail is a year of
two-way syncing between HubSpot and Mailchimp for 2,000 contacts: contacts created,
updated and pushed by runs of 1,000 events, conflicts opened by runs and resolved by a
user, consent recorded by that user, manual runs requested, a few merges, and one
contact in ten changing their email address part-way (`"email": [old, new]`), so that
a person is also searched by an address they no longer have.

Then, as a Compliance user through Django's test client (middleware, filters, view and
template all counted), each page is requested `--samples` times for p50 and p95: the
trail's first page, a deep page (keyset `after` an id 1% from the oldest), the first and
a deep page of one action, a person search by a current and by an old address, the
sync filter, and time ranges (`since` and `until`) of a month and of six months.
Each export (CSV, the filter `action=contact.updated`, about a fifth of the rows, then
the whole trail) runs in a child process that consumes the streamed response; its rows
per second and the child's peak resident memory are reported. `chain_verify` (what
`manage.py verify_audit` runs) walks the whole chain in a child process too.

Baselines, measured in the same run on the same database: for a page, the raw SQL
reading the same 50 rows through a database cursor (`SELECT * ... ORDER BY id DESC
LIMIT 50`, with the page's WHERE); for an export, a raw cursor over the same columns
and rows written with csv.writer to a null sink, in its own child process; for
verification, sha256 over each row's text without the chain's logic, in its own child.
"x base" is our time over the baseline's for the same work.

    python bench/audit_bench.py --rows 100000
    python bench/audit_bench.py                      # 1,000,000 rows, SQLite
    python bench/audit_bench.py --database-url postgres://postgres@127.0.0.1:5432/audit_bench

Figures print as a table; `--json FILE` also writes them for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import platform
import random
import resource
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The targets.
PAGE_P95_TARGET_MS = 250
EXPORT_RATE_TARGET = 50_000
EXPORT_PEAK_TARGET_MB = 150

CONTACTS = 2_000
# One contact in ten changes their email address once, somewhere in the year.
EMAIL_CHANGERS = CONTACTS // 10
EVENTS_PER_RUN = 1_000
# The export's filter: about a fifth of the trail (200,000 of a million rows).
EXPORT_FILTER = {"action": "contact.updated"}
SYSTEMS = ("HubSpot", "Mailchimp")
SYNC_NAME = "HubSpot and Mailchimp"
COMPLIANCE_USER = "carla"
ACTOR_USER = "maria"
# Rows per INSERT batch (one executemany, one transaction).
SEED_BATCH = 5_000
# Events of the runs, drawn by weight; a contact's first event is always its creation.
ENGINE_ACTIONS = (("contact.pushed", 70), ("contact.updated", 20), ("conflict.opened", 4))
USER_ACTIONS = (("conflict.resolved", 2.5), ("consent.recorded", 2))
# Merges are rare: one in 20,000 events.
MERGE_EVERY = 20_000

FIRST_NAMES = ("Ann", "Bo", "Zoë", "Łukasz", "María", "José", "Wei", "Aiko", "Olu", "Sam", "Priya", "Noah",
               "Fatima", "Lars", "Chloé", "Ivan", "Mei", "Kwame", "Sofia", "Tom")
LAST_NAMES = ("Smith", "García", "Müller", "Nguyen", "Okafor", "Kowalski", "Rossi", "Tanaka", "Dubois", "Jensen",
              "O'Brien", "Silva", "Khan", "Novák", "Larsen", "Cohen", "Ivanova", "Brown", "Haddad", "Lee")
COMPANIES = ("Acme Ltd", "Globex", "Initech", "Umbrella plc", "Stark & Wayne", "Hooli", "Vandelay Industries",
             "Wonka GmbH", "Soylent SA", "Tyrell Corp")
STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
CONSENT = ("subscribed", "unsubscribed", "pending", "cleaned")
CONFLICT_FIELDS = ("first_name", "last_name", "company", "phone")


# Machine and database


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor() or "unknown")
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


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def postgres_admin_url(url: str) -> tuple[str, str]:
    """Return (the URL of the server's `postgres` database, the benchmark database's name)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit("--database-url must name the database to create, e.g. .../audit_bench")
    return urlunsplit(parts._replace(path="/postgres")), name


def postgres_database(url: str, *, create: bool) -> None:
    """Create the benchmark's PostgreSQL database afresh, or drop it."""
    import psycopg
    from psycopg import sql

    admin_url, name = postgres_admin_url(url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def environment(work_dir: Path, database_url: str) -> None:
    """Point this process and its children at the benchmark's database, with keys made for this run."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "syncapp.settings",
        "DATABASE_URL": database_url,
        "CACHE_DIR": str(work_dir / "cache"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SALT_KEY": secrets.token_urlsafe(16),
        # The test client's host.
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })


def django_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncapp.settings")
    # Static files are not collected for a benchmark; WhiteNoise would say so at every start.
    warnings.filterwarnings("ignore", message="No directory at", module="django.core.handlers.base")
    django.setup()


# Seeding


@dataclass
class SeedPerson:
    contact_id: int
    email: str  # the current address, the one the hub holds
    first_name: str
    last_name: str
    old_email: str | None = None  # the address before the change, for one contact in ten
    changed_at: int | None = None  # the index of the row that changes it


@dataclass
class Seeded:
    rows: int
    seconds: float
    first_id: int
    last_id: int
    filtered_rows: int
    current_email: str  # a contact's address, never changed
    old_email: str  # an address a contact had before changing it
    first_day: str  # the day of the oldest event, ISO


def people_create(rng: random.Random, rows: int) -> list[SeedPerson]:
    """Create the hub's contacts (current addresses) and plan the email changes."""
    from syncapp.models import Contact

    people = []
    for index in range(CONTACTS):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}".lower().replace("'", "").encode("ascii", "ignore").decode()
        people.append(SeedPerson(0, f"{local}.{index}@example.com", first, last))
    # Part-way through the year, one change per row: events before and after each change.
    change_rows = rng.sample(range(rows // 10, rows * 9 // 10), EMAIL_CHANGERS)
    for person, changed_at in zip(rng.sample(people, EMAIL_CHANGERS), change_rows, strict=True):
        person.old_email = person.email.replace("@example.com", "@old-isp.example.net")
        person.changed_at = changed_at
    contacts = Contact.objects.bulk_create([
        Contact(email=person.email, first_name=person.first_name, last_name=person.last_name,
                company=rng.choice(COMPANIES), email_consent="subscribed")
        for person in people
    ])
    for person, contact in zip(people, contacts, strict=True):
        person.contact_id = contact.pk
    return people


def runs_create(rows: int) -> list[int]:
    """Create the sync and one finished run per EVENTS_PER_RUN events; return the runs' ids."""
    from syncapp.models import Sync, SyncRun

    sync = Sync.objects.create(name=SYNC_NAME)
    runs = SyncRun.objects.bulk_create(
        SyncRun(sync=sync, trigger=SyncRun.Trigger.SCHEDULE, status=SyncRun.Status.SUCCEEDED)
        for _ in range(math.ceil(rows / EVENTS_PER_RUN))
    )
    return [run.pk for run in runs]


def trail_rows(rows: int, *, people: list[SeedPerson], runs: list[int], actor_id: int, sync_id: int,
               rng: random.Random, start: datetime, span: timedelta) -> Iterator[tuple]:
    """Yield `rows` events in chain order as (created_at, action, actor_id, system, object_type,
    object_id, object_repr, contact_id, run_id, changes)."""
    step = span / rows
    changes_at = {person.changed_at: person for person in people if person.changed_at is not None}
    seen: set[int] = set()
    opened: list[tuple[int, int, str]] = []  # conflicts opened: (conflict id, contact id, field)
    conflict_ids = iter(range(1, rows + 1))
    merged_ids = iter(range(10_000_000, 20_000_000))
    engine_actions, engine_weights = zip(*ENGINE_ACTIONS, *USER_ACTIONS, strict=True)
    for index in range(rows):
        created_at = start + step * index
        run_id = runs[index // EVENTS_PER_RUN]
        person = changes_at.get(index) or rng.choice(people)
        email = person.email if person.changed_at is None or index >= person.changed_at else person.old_email
        about = ("contact", str(person.contact_id), email, person.contact_id)
        if person.changed_at == index:
            yield (created_at, "contact.updated", None, rng.choice(SYSTEMS), *about, run_id,
                   {"email": [person.old_email, person.email]})
        elif index % EVENTS_PER_RUN == 0 and rng.random() < 0.25:
            # A quarter of the runs are requested by hand.
            yield (created_at, "sync.run_requested", actor_id, "hub", "sync", str(sync_id), SYNC_NAME, None, run_id,
                   {"run": [None, run_id], "trigger": [None, "manual"]})
        elif person.contact_id not in seen:
            seen.add(person.contact_id)
            yield (created_at, "contact.created", None, rng.choice(SYSTEMS), *about, run_id,
                   {"email": [None, email], "first_name": [None, person.first_name],
                    "last_name": [None, person.last_name], "lifecycle_stage": [None, rng.choice(STAGES)]})
        elif index % MERGE_EVERY == MERGE_EVERY // 2:
            # A duplicate merged into this contact long ago: its own id is gone from the hub.
            yield (created_at, "contact.merged", actor_id, "hub", *about, None,
                   {"merged_contact_id": [None, next(merged_ids)], "links_moved": [None, ["Mailchimp"]],
                    "reason": [None, "Same person, two addresses"]})
        else:
            action = rng.choices(engine_actions, engine_weights)[0]
            yield (created_at, *_event(action, rng=rng, person=person, about=about, run_id=run_id, actor_id=actor_id,
                                       opened=opened, conflict_ids=conflict_ids))


def _event(action: str, *, rng: random.Random, person: SeedPerson, about: tuple, run_id: int, actor_id: int,
           opened: list, conflict_ids: Iterator[int]) -> tuple:
    """Return one event's columns after created_at."""
    system = rng.choice(SYSTEMS)
    if action == "contact.pushed":
        changes = rng.choice((
            {"first_name": [None, person.first_name], "last_name": [None, person.last_name]},
            {"company": [rng.choice(COMPANIES), rng.choice(COMPANIES)]},
            {"email_consent": [None, "subscribed"]},
            {"lifecycle_stage": [rng.choice(STAGES), rng.choice(STAGES)]},
        ))
        return (action, None, system, *about, run_id, changes)
    if action == "contact.updated":
        changes = rng.choice((
            {"company": [rng.choice(COMPANIES), rng.choice(COMPANIES)]},
            {"lifecycle_stage": [rng.choice(STAGES), rng.choice(STAGES)]},
            {"phone": [None, f"+4420{rng.randrange(10**7, 10**8)}"]},
            {"email_consent": [rng.choice(CONSENT), rng.choice(CONSENT)]},
            {"last_name": [person.last_name, rng.choice(LAST_NAMES)]},
        ))
        return (action, None, system, *about, run_id, changes)
    if action == "conflict.opened":
        conflict_id, hub_field = next(conflict_ids), rng.choice(CONFLICT_FIELDS)
        opened.append((conflict_id, person.contact_id, hub_field))
        return (action, None, system, "conflict", str(conflict_id), f"{hub_field} of contact {person.contact_id}",
                person.contact_id, run_id, {hub_field: [rng.choice(COMPANIES), rng.choice(COMPANIES)]})
    if action == "conflict.resolved" and opened:
        conflict_id, contact_id, hub_field = opened.pop(rng.randrange(len(opened)))
        return (action, actor_id, "hub", "conflict", str(conflict_id), f"{hub_field} of contact {contact_id}",
                contact_id, None, {hub_field: [rng.choice(COMPANIES), rng.choice(COMPANIES)],
                                   "resolution": [None, "kept the hub's value"], "reason": [None, ""]})
    previous, state = rng.sample(CONSENT, 2)
    return ("consent.recorded", actor_id, "hub", *about, None,
            {"email_consent": [previous, state], "statement": [None, state], "explicit_opt_in": [None, False],
             "note": [None, "Asked us by phone to stop emails"]})


def trail_seed(rows: int, *, seed: int) -> Seeded:
    """Seed `rows` chained audit events, the contacts, runs and users they name; return what to search for."""
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from audit import chain
    from audit.models import AuditChainHead, AuditEvent
    from audit.services import CHAIN_HEAD_ID
    from syncapp.models import Sync
    from syncapp.roles import COMPLIANCE, MARKETER

    started = time.perf_counter()
    rng = random.Random(seed)
    compliance = User.objects.create_user(COMPLIANCE_USER, f"{COMPLIANCE_USER}@example.com", secrets.token_urlsafe())
    compliance.groups.add(Group.objects.get(name=COMPLIANCE))
    actor = User.objects.create_user(ACTOR_USER, f"{ACTOR_USER}@example.com", secrets.token_urlsafe())
    actor.groups.add(Group.objects.get(name=MARKETER))
    people = people_create(rng, rows)
    runs = runs_create(rows)
    sync_id = Sync.objects.get(name=SYNC_NAME).pk

    quote = connection.ops.quote_name
    table = quote(AuditEvent._meta.db_table)
    columns = ("created_at", "action", "actor_id", "system", "object_type", "object_id", "object_repr",
               "contact_id", "run_id", "changes", "changes_digest", "prev_hash", "row_hash")
    insert = (f"INSERT INTO {table} ({', '.join(quote(name) for name in columns)}) "
              f"VALUES ({', '.join(['%s'] * len(columns))})")
    # Each value as the model's fields would store it.
    adapt_time = connection.ops.adapt_datetimefield_value
    changes_field = AuditEvent._meta.get_field("changes")

    head = AuditChainHead.objects.get(pk=CHAIN_HEAD_ID)
    prev_hash = head.last_hash
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    events = trail_rows(rows, people=people, runs=runs, actor_id=actor.pk, sync_id=sync_id, rng=rng, start=start,
                        span=timedelta(days=365) - timedelta(minutes=5))
    written, filtered = 0, 0
    while written < rows:
        batch = []
        for (created_at, action, actor_id, system, object_type, object_id, object_repr, contact_id, run_id,
             changes) in itertools.islice(events, SEED_BATCH):
            # As audit.services.audit_events_append links them (audit.chain.link).
            digest = chain.changes_digest(changes, object_repr)
            content = chain.content(created_at=created_at, action=action, actor_id=actor_id, system=system,
                                    object_type=object_type, object_id=object_id, contact_id=contact_id,
                                    run_id=run_id)
            row_hash = chain.row_hash(prev_hash, content, digest)
            batch.append((adapt_time(created_at), action, actor_id, system, object_type, object_id, object_repr,
                          contact_id, run_id, changes_field.get_db_prep_save(changes, connection), digest, prev_hash,
                          row_hash))
            prev_hash = row_hash
            filtered += action == EXPORT_FILTER["action"]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(insert, batch)
        written += len(batch)
        if written % 100_000 < SEED_BATCH:
            print(f"  seeded {written:,} rows, {time.perf_counter() - started:.0f} s", flush=True)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {table} WHERE id > %s", [head.last_event_id])
        first_id, last_id = cursor.fetchone()
        # The chain's head names the last row, as every writer leaves it.
        cursor.execute(f"UPDATE {quote(AuditChainHead._meta.db_table)} SET last_hash = %s, last_event_id = %s, "
                       f"events = events + %s WHERE id = %s", [prev_hash, last_id, rows, CHAIN_HEAD_ID])
    if connection.vendor == "postgresql":
        # What autovacuum does minutes after a bulk load; measured before it, plans would
        # depend on when it happened to run.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    unchanged = next(person for person in people if person.old_email is None)
    changed = next(person for person in people if person.old_email is not None)
    return Seeded(rows=rows, seconds=round(time.perf_counter() - started, 1), first_id=first_id, last_id=last_id,
                  filtered_rows=filtered, current_email=unchanged.email, old_email=changed.old_email,
                  first_day=start.date().isoformat())


# Pages


@dataclass
class PageFigures:
    page: str
    url: str
    events_shown: int
    p50_ms: float
    p95_ms: float
    baseline_p50_ms: float
    baseline_p95_ms: float
    times_baseline: float
    target_met: bool


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return (p50, p95) in milliseconds of samples in seconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return round(cuts[49] * 1000, 2), round(cuts[94] * 1000, 2)


def timed(call: Callable[[], object], samples: int, *, warm_up: int = 3) -> list[float]:
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def bench_pages(seeded: Seeded, samples: int) -> list[PageFigures]:
    """Time the trail's pages through the test client, and the raw SQL reading the same rows."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from audit.people import person_contact_ids, person_parse
    from syncapp.models import Sync

    client = Client()
    client.force_login(User.objects.get(username=COMPLIANCE_USER))
    trail = reverse("audit:trail")
    table = connection.ops.quote_name("audit_auditevent")
    deep = seeded.first_id + seeded.rows // 100
    action = EXPORT_FILTER["action"]

    def person_where(email: str) -> tuple[str, list]:
        ids = sorted(person_contact_ids(person_parse(email)))
        return f"contact_id IN ({', '.join(['%s'] * len(ids))})", ids

    def days(since: date, until: date) -> tuple[dict, str, list]:
        # "until" a date includes that day (audit.filters.MomentField).
        bounds = [datetime.combine(day, dt_time(), UTC) for day in (since, until + timedelta(days=1))]
        return ({"since": since.isoformat(), "until": until.isoformat()},
                "WHERE created_at >= %s AND created_at < %s",
                [connection.ops.adapt_datetimefield_value(moment) for moment in bounds])

    current_where, current_ids = person_where(seeded.current_email)
    old_where, old_ids = person_where(seeded.old_email)
    sync_id = Sync.objects.get(name=SYNC_NAME).pk
    first_day = date.fromisoformat(seeded.first_day)
    month = days(first_day + timedelta(days=31), first_day + timedelta(days=61))
    half_year = days(first_day + timedelta(days=61), first_day + timedelta(days=242))
    pages = [
        ("trail, first page", {}, "", []),
        ("trail, deep page (1% from the oldest)", {"after": deep}, "WHERE id < %s", [deep]),
        (f"action={action}, first page", {"action": action}, "WHERE action = %s", [action]),
        (f"action={action}, deep page", {"action": action, "after": deep}, "WHERE action = %s AND id < %s",
         [action, deep]),
        ("person by current email", {"person": seeded.current_email}, f"WHERE {current_where}", current_ids),
        ("person by old email", {"person": seeded.old_email}, f"WHERE {old_where}", old_ids),
        # Every run is the one sync's here: the filter matches nearly every row.
        ("sync, first page", {"sync": sync_id},
         "WHERE (object_type = 'sync' AND object_id = %s) OR run_id IN (SELECT id FROM syncapp_syncrun "
         "WHERE sync_id = %s)", [str(sync_id), sync_id]),
        ("since/until, one month 11 months ago", *month),
        ("since/until, six months", *half_year),
    ]
    figures = []
    for name, query, where, params in pages:
        url = f"{trail}?{urlencode(query)}" if query else trail
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.content[:2000]!r}")
        shown = response.content.count(b'data-testid="event-row"')
        if not shown:
            raise RuntimeError(f"{url} shows no event")

        def raw_page(where=where, params=params):
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {table} {where} ORDER BY id DESC LIMIT 50", params)
                return cursor.fetchall()

        ours = timed(lambda url=url: client.get(url).content, samples)
        base = timed(raw_page, samples)
        p50, p95 = percentiles(ours)
        base_p50, base_p95 = percentiles(base)
        figures.append(PageFigures(page=name, url=url, events_shown=shown, p50_ms=p50, p95_ms=p95,
                                   baseline_p50_ms=base_p50, baseline_p95_ms=base_p95,
                                   times_baseline=round(p50 / base_p50, 1), target_met=p95 < PAGE_P95_TARGET_MS))
    return figures


# Children: exports and verification, each in its own process so its peak memory is its own


@dataclass
class StreamFigures:
    name: str
    rows: int
    seconds: float
    rows_per_second: int
    megabytes: float
    peak_rss_mb: float
    rss_growth_mb: float


def run_child(kind: str, **spec) -> tuple[dict, float]:
    """Run this script as a child doing `kind`; return its printed result and its peak resident MB."""
    child = subprocess.Popen([sys.executable, __file__, "--child", kind, "--child-spec", json.dumps(spec)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own resource usage, not that of every child so far.
    _, status, usage = os.wait4(child.pid, 0)
    out, err = child.stdout.read(), child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {kind} failed:\n{out.decode(errors='replace')}\n{err.decode(errors='replace')}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def child_export(query: dict) -> dict:
    """Stream the CSV export of `query` through the test client, as a browser downloads it."""
    import gc

    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(User.objects.get(username=COMPLIANCE_USER))
    url = f"{reverse('audit:export')}?{urlencode({**query, 'format': 'csv'})}"
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    lines, size = 0, 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    seconds = time.perf_counter() - started
    # The seeded values hold no line break: one line per row, and the header.
    return {"rows": lines - 1, "seconds": seconds, "bytes": size, "rss_before_kb": rss_before}


def fetched(cursor, size: int = 2000) -> Iterator[tuple]:
    """Yield a cursor's rows, fetched `size` at a time (a server-side cursor's default is 100 per trip)."""
    while rows := cursor.fetchmany(size):
        yield from rows


class NullSink:
    def write(self, text: str) -> int:
        return len(text)


def export_sql(where: str) -> str:
    """The export's columns (audit.exports.COLUMNS) in raw SQL, newest first."""
    return (
        "SELECT e.id, e.created_at, e.action, u.username, e.system, e.object_type, e.object_id, e.object_repr, "
        "e.contact_id, e.run_id, e.prev_hash, e.row_hash, CAST(e.changes AS text) "
        f"FROM audit_auditevent e LEFT JOIN auth_user u ON u.id = e.actor_id {where} ORDER BY e.id DESC"
    )


def child_raw_export(query: dict) -> dict:
    """Write the same rows with csv.writer to a null sink, from one raw (server-side on PostgreSQL) cursor."""
    import gc

    from django.db import connection

    where, params = ("WHERE e.action = %s", [query["action"]]) if query else ("", [])
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    writer = csv.writer(NullSink())
    rows = 0
    with connection.chunked_cursor() as cursor:
        cursor.execute(export_sql(where), params)
        for row in fetched(cursor):
            writer.writerow(row)
            rows += 1
    return {"rows": rows, "seconds": time.perf_counter() - started, "bytes": 0, "rss_before_kb": rss_before}


def child_verify(_: dict) -> dict:
    from audit.verification import chain_verify

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = chain_verify()
    seconds = time.perf_counter() - started
    if not report.valid:
        raise RuntimeError(f"the seeded chain is broken: {report.broken}")
    return {"rows": report.checked, "seconds": seconds, "bytes": 0, "rss_before_kb": rss_before}


def child_raw_verify(_: dict) -> dict:
    """Hash each row's text with sha256, reading the same columns in the same order, without the chain's logic."""
    from django.db import connection

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    rows = 0
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            "SELECT id, created_at, action, actor_id, system, object_type, object_id, contact_id, run_id, "
            "CAST(changes AS text), object_repr, changes_digest, prev_hash, row_hash FROM audit_auditevent ORDER BY id"
        )
        for row in fetched(cursor):
            hashlib.sha256("\n".join(map(str, row)).encode()).hexdigest()
            rows += 1
    return {"rows": rows, "seconds": time.perf_counter() - started, "bytes": 0, "rss_before_kb": rss_before}


CHILDREN = {"export": child_export, "raw-export": child_raw_export, "verify": child_verify,
            "raw-verify": child_raw_verify}


def streamed(name: str, kind: str, *, rows_expected: int | None = None, **spec) -> StreamFigures:
    result, peak_mb = run_child(kind, **spec)
    if rows_expected is not None and result["rows"] != rows_expected:
        raise RuntimeError(f"{name} went through {result['rows']:,} rows, {rows_expected:,} expected")
    return StreamFigures(name=name, rows=result["rows"], seconds=round(result["seconds"], 2),
                         rows_per_second=round(result["rows"] / result["seconds"]),
                         megabytes=round(result["bytes"] / 1024 / 1024, 1), peak_rss_mb=round(peak_mb, 1),
                         rss_growth_mb=round(peak_mb - result["rss_before_kb"] / 1024, 1))


# The run


@dataclass
class Report:
    database: str
    rows: int
    samples: int
    machine: dict
    load_before: str
    load_after: str = ""
    seed: dict = field(default_factory=dict)
    pages: list = field(default_factory=list)
    exports: list = field(default_factory=list)
    verification: list = field(default_factory=list)


def mark(met: bool) -> str:
    return "met" if met else "MISSED"


def print_pages(pages: list[PageFigures]) -> None:
    print(f"\n{'page (as Compliance, test client)':<40} {'shown':>5} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'raw p50':>8} {'raw p95':>8} {'x base':>7}  target p95 < {PAGE_P95_TARGET_MS} ms")
    for page in pages:
        print(f"{page.page:<40} {page.events_shown:>5} {page.p50_ms:>8} {page.p95_ms:>8} {page.baseline_p50_ms:>8} "
              f"{page.baseline_p95_ms:>8} {page.times_baseline:>6}x  {mark(page.target_met)}")


def print_streams(title: str, pairs: list[tuple[StreamFigures, StreamFigures]], *, targets: bool) -> None:
    print(f"\n{title:<34} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'MB out':>7} {'peak MB':>8} {'growth':>7} "
          f"{'base r/s':>9} {'base pk':>8} {'x base':>7}" + ("  targets" if targets else ""))
    for ours, base in pairs:
        line = (f"{ours.name:<34} {ours.rows:>9,} {ours.seconds:>8} {ours.rows_per_second:>8,} {ours.megabytes:>7} "
                f"{ours.peak_rss_mb:>8} {ours.rss_growth_mb:>7} {base.rows_per_second:>9,} {base.peak_rss_mb:>8} "
                f"{ours.seconds / base.seconds:>6.1f}x")
        if targets:
            line += (f"  rate {mark(ours.rows_per_second >= EXPORT_RATE_TARGET)}, "
                     f"memory {mark(ours.peak_rss_mb < EXPORT_PEAK_TARGET_MB)}")
        print(line)


def bench(options: argparse.Namespace, work_dir: Path) -> Report:
    database_url = options.database_url or f"sqlite:///{work_dir / 'audit_bench.sqlite3'}"
    if options.database_url:
        postgres_database(options.database_url, create=True)
    environment(work_dir, database_url)
    vendor = "PostgreSQL" if options.database_url else f"SQLite {sqlite3.sqlite_version}"
    report = Report(database=vendor, rows=options.rows, samples=options.samples, machine=machine(),
                    load_before=load_average())
    print("machine:", json.dumps(report.machine))
    print(f"database: {vendor}; rows {options.rows:,}; samples per page {options.samples}; "
          f"load average before {report.load_before}")

    migrate = subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--verbosity", "0"], cwd=REPO,
                             capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    django_setup()
    seeded = trail_seed(options.rows, seed=options.seed)
    report.seed = asdict(seeded)
    print(f"seeded {seeded.rows:,} chained events in {seeded.seconds} s "
          f"({seeded.rows / seeded.seconds:,.0f} rows/s); ids {seeded.first_id:,} to {seeded.last_id:,}; "
          f"{EXPORT_FILTER} matches {seeded.filtered_rows:,}")

    pages = bench_pages(seeded, options.samples)
    report.pages = [asdict(page) for page in pages]
    print_pages(pages)

    filtered = seeded.filtered_rows
    exports = [(streamed(f"CSV export, action={EXPORT_FILTER['action']}", "export", query=EXPORT_FILTER,
                         rows_expected=filtered),
                streamed("raw cursor + csv.writer", "raw-export", query=EXPORT_FILTER, rows_expected=filtered))]
    if not options.skip_full_export:
        exports.append((streamed("CSV export, whole trail", "export", query={}),
                        streamed("raw cursor + csv.writer", "raw-export", query={})))
    report.exports = [{"ours": asdict(ours), "baseline": asdict(base)} for ours, base in exports]
    print_streams("export (child process)", exports, targets=True)

    verification = (streamed("chain_verify, whole trail", "verify"), streamed("raw cursor + sha256", "raw-verify"))
    report.verification = [asdict(figures) for figures in verification]
    print_streams("verification (child process)", [verification], targets=False)

    report.load_after = load_average()
    print(f"\nload average after {report.load_after}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit events to seed (default 1,000,000)")
    parser.add_argument("--samples", type=int, default=30, help="requests per page for p50 and p95 (default 30)")
    parser.add_argument("--database-url", help="a PostgreSQL database to create, use and drop "
                        "(e.g. postgres://postgres@127.0.0.1:5432/audit_bench); SQLite in a temporary directory "
                        "by default")
    parser.add_argument("--skip-full-export", action="store_true", help="export only the filtered rows")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trail's random data (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", default="{}", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        django_setup()
        spec = json.loads(options.child_spec)
        print(json.dumps(CHILDREN[options.child](spec.get("query", {}))))
        return
    if options.rows < 10 * EVENTS_PER_RUN:
        parser.error(f"--rows must be at least {10 * EVENTS_PER_RUN:,}")

    with tempfile.TemporaryDirectory(prefix="auditbench-") as work:
        try:
            report = bench(options, Path(work))
        finally:
            if options.database_url:
                from django.db import connections

                connections.close_all()
                postgres_database(options.database_url, create=False)
    if options.json:
        options.json.write_text(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    main()
