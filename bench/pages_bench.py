"""Pages benchmark: every page over the large tables, at a million contacts, timed at p50 and p95.

It makes a fresh database (SQLite in a temporary directory, or with `--database-url` a
PostgreSQL database it creates and drops), migrates it, and seeds it:
- the audit trail with bench/audit_bench.py's own seeding (a valid hash chain, a year of
  two-way syncing, its 2,000 contacts, users, sync and runs), `--audit-rows` events;
- `--contacts` hub contacts besides (names, emails, phones, consent, changed over a
  year), each linked to HubSpot and Mailchimp, and one record error per
  RECORD_ERROR_EVERY contacts spread over the runs; a tenth of the runs failed, a
  quarter requested by hand.
PostgreSQL is ANALYZEd after the load (what autovacuum does minutes later); SQLite is
left without statistics, as the app leaves it.

Then each page is requested `--samples` times (after 3 unmeasured) through Django's test
client as the role that sees it (middleware, session, filters, view and template all
count): the contact list (first page, a page half-way through, the page before that,
searches by email, name, two names, phone and a single letter, a search's second page),
the admin lists of audit events, runs and record errors (first page, a deep page, each
filter, the search), of syncs, connections and mappings, and the audit trail pages
bench/audit_bench.py measured for issue 10. It prints p50 and p95 against the target
(p95 under 250 ms).

    python bench/pages_bench.py --contacts 100000 --audit-rows 100000
    python bench/pages_bench.py                      # 1,000,000 contacts, SQLite
    python bench/pages_bench.py --database-url postgres://postgres@127.0.0.1:5432/pages_bench

It also measures commits from before the keyset contact list (pages by number, `?page=`).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.audit_bench import (  # noqa: E402  (after the repository is importable)
    COMPLIANCE_USER,
    FIRST_NAMES,
    SYNC_NAME,
    django_setup,
    environment,
    load_average,
    machine,
    percentiles,
    postgres_database,
    timed,
    trail_seed,
)

PAGE_P95_TARGET_MS = 250
MARKETER_USER = "maria"  # audit_bench's actor, a Marketer
SEED_BATCH = 10_000
RECORD_ERROR_EVERY = 50
# Surnames from syllables: thousands of them, so that a name is not one contact in twenty.
SYLLABLES = ("ab", "al", "an", "ber", "bo", "ca", "del", "di", "el", "fa", "gar", "ha", "in", "jo", "ka", "la",
             "lo", "ma", "mi", "na", "no", "or", "pe", "ra", "ri", "sa", "son", "ta", "to", "va", "wen", "zu")
ERROR_CLASSES = ("invalid_email", "invalid_phone", "rejected", "rate_limited", "member_exists")


def surname(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()


@dataclass
class Seeded:
    contacts: int
    audit_rows: int
    record_errors: int
    runs: int
    seconds: float
    audit_seconds: float
    email_prefix: str  # one contact's email, cut before the @
    last_name: str
    two_names: str
    phone: str
    first_day: str
    current_email: str
    first_event_id: int


def contacts_seed(count: int, *, rng: random.Random) -> tuple[str, str, str, str]:
    """Insert `count` contacts, two links each, and their record errors; return what to search for."""
    from django.db import connection, transaction

    from connections.models import Connection
    from syncapp.models import Contact, RecordError, RecordLink, SyncRun

    hubspot = Connection.objects.create(name="HubSpot", provider="hubspot", base_url="http://127.0.0.1:9/hubspot",
                                        access_token="hs-token-0123456789")
    mailchimp = Connection.objects.create(name="Mailchimp", provider="mailchimp",
                                          base_url="http://127.0.0.1:9/mailchimp", api_key="mc-key-0123456789-us1",
                                          settings={"list_id": "abc"})
    runs = list(SyncRun.objects.order_by("id").values_list("id", flat=True))
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value

    def insert(model, columns: tuple[str, ...], rows: list[tuple]) -> None:
        sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))})")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    now = datetime.now(UTC)
    first_id = (Contact.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    contact_columns = ("id", "email", "phone", "first_name", "last_name", "company", "lifecycle_stage", "attributes",
                       "email_consent", "sms_consent", "erased", "created_at", "updated_at")
    link_columns = ("contact_id", "connection_id", "external_id", "stable_id", "merge_base", "email_consent_base",
                    "rejected_payload_hash", "archived", "created_at", "updated_at")
    error_columns = ("run_id", "connection_id", "contact_id", "external_id", "error_class", "severity", "message",
                     "retriable", "attempts", "resolved", "created_at")
    picked = None
    for start in range(0, count, SEED_BATCH):
        contacts, links, errors = [], [], []
        for number in range(start, min(start + SEED_BATCH, count)):
            contact_id = first_id + number
            first, last = rng.choice(FIRST_NAMES), surname(rng)
            local = f"{first}.{last}".lower().encode("ascii", "ignore").decode()
            email = f"{local}.{contact_id}@example.com"
            phone = f"+1415{rng.randrange(2 * 10**6, 10**7)}" if rng.random() < 0.6 else None
            updated = adapt(now - timedelta(seconds=rng.randrange(365 * 86400)))
            contacts.append((contact_id, email, phone, first, last, "Acme Ltd", "lead", "{}",
                             rng.choice(("subscribed", "unsubscribed", "unknown")), "unknown", False, updated, updated))
            for system in (hubspot, mailchimp):
                links.append((contact_id, system.pk, f"{system.provider}-{contact_id}", "", "{}", "", "", False,
                              updated, updated))
            if number % RECORD_ERROR_EVERY == 0:
                errors.append((rng.choice(runs), rng.choice((hubspot.pk, mailchimp.pk)), contact_id,
                               f"mailchimp-{contact_id}", rng.choice(ERROR_CLASSES),
                               rng.choice(("error", "warning")), "Refused by the system", rng.random() < 0.3, 1,
                               rng.random() < 0.2, updated))
            if picked is None and number >= count // 2 and phone:
                picked = (email.split("@")[0], last, f"{first} {last[:4]}", f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}")
        insert(Contact, contact_columns, contacts)
        insert(RecordLink, link_columns, links)
        insert(RecordError, error_columns, errors)
        if (start + SEED_BATCH) % 100_000 < SEED_BATCH:
            print(f"  seeded {min(start + SEED_BATCH, count):,} contacts", flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('syncapp_contact', 'id'), MAX(id)) "
                           "FROM syncapp_contact")
    # A tenth of the runs failed, a quarter requested by hand: the runs' filters have something to find.
    SyncRun.objects.filter(id__in=runs[::10]).update(status=SyncRun.Status.FAILED)
    SyncRun.objects.filter(id__in=runs[::4]).update(trigger=SyncRun.Trigger.MANUAL)
    return picked


def seed(options: argparse.Namespace) -> Seeded:
    from django.contrib.auth.models import User
    from django.db import connection

    from audit.models import AuditEvent
    from syncapp.models import RecordError, SyncRun

    started = time.perf_counter()
    trail = trail_seed(options.audit_rows, seed=options.seed)
    print(f"seeded {trail.rows:,} chained audit events in {trail.seconds} s", flush=True)
    User.objects.filter(username__in=[COMPLIANCE_USER, MARKETER_USER]).update(is_staff=True)
    email_prefix, last_name, two_names, phone = contacts_seed(options.contacts, rng=random.Random(options.seed))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return Seeded(contacts=options.contacts, audit_rows=AuditEvent.objects.count(),
                  record_errors=RecordError.objects.count(), runs=SyncRun.objects.count(),
                  seconds=round(time.perf_counter() - started, 1), audit_seconds=trail.seconds,
                  email_prefix=email_prefix, last_name=last_name, two_names=two_names, phone=phone,
                  first_day=trail.first_day, current_email=trail.current_email, first_event_id=trail.first_id)


@dataclass
class PageFigures:
    page: str
    user: str
    url: str
    p50_ms: float
    p95_ms: float
    target_met: bool


def contact_list_deep(half: int) -> tuple[dict, dict]:
    """Return the queries of the contact list's page half-way through, and of the page before it."""
    from syncapp.models import Contact

    try:
        from syncapp.selectors import ContactCursor
    except ImportError:  # before the keyset list: pages by number
        page = half // 50
        return {"page": page}, {"page": page - 1}
    middle = Contact.objects.order_by("-updated_at", "-id")[half]
    return {"after": str(ContactCursor.of(middle))}, {"before": str(ContactCursor.of(middle))}


def pages(seeded: Seeded) -> list[tuple[str, str, str, dict]]:
    """Return (page, user, URL name, query) for every page measured."""
    from connections.models import Connection
    from syncapp.models import RecordError, Sync, SyncRun

    deep, before_deep = contact_list_deep(seeded.contacts // 2)
    sync_id = Sync.objects.get(name=SYNC_NAME).pk
    hubspot = Connection.objects.get(name="HubSpot").pk
    run_with_errors = RecordError.objects.order_by("-id").values_list("run_id", flat=True).first()
    first_run = SyncRun.objects.order_by("id").values_list("id", flat=True).first()
    first_day = datetime.fromisoformat(seeded.first_day).date()
    # The deepest page the admin offers (it counts no further than 10,000 rows, 100 a page).
    runs_deep, errors_deep = (max(1, min(100, (rows - 1) // 100 + 1)) for rows in (seeded.runs, seeded.record_errors))
    audit, runs, errors = ("admin:audit_auditevent_changelist", "admin:syncapp_syncrun_changelist",
                           "admin:syncapp_recorderror_changelist")
    marketer, compliance = MARKETER_USER, COMPLIANCE_USER
    return [
        ("contacts, first page", marketer, "contact_list", {}),
        ("contacts, half-way through", marketer, "contact_list", deep),
        ("contacts, the page before that", marketer, "contact_list", before_deep),
        ("contacts, search: an email's start", marketer, "contact_list", {"q": seeded.email_prefix}),
        ("contacts, search: a last name", marketer, "contact_list", {"q": seeded.last_name}),
        ("contacts, search: first and last name", marketer, "contact_list", {"q": seeded.two_names}),
        ("contacts, search: a phone", marketer, "contact_list", {"q": seeded.phone}),
        ("contacts, search: one letter", marketer, "contact_list", {"q": "m"}),
        ("admin audit events, first page", compliance, audit, {}),
        ("admin audit events, last page (p=100)", compliance, audit, {"p": "100"}),
        ("admin audit events, action", compliance, audit, {"action": "contact.updated"}),
        ("admin audit events, system", compliance, audit, {"system": "Mailchimp"}),
        ("admin audit events, object type", compliance, audit, {"object_type": "conflict"}),
        ("admin audit events, search an id", compliance, audit, {"q": "1500"}),
        ("admin runs, first page", marketer, runs, {}),
        (f"admin runs, page {runs_deep}", marketer, runs, {"p": runs_deep}),
        ("admin runs, status", marketer, runs, {"status__exact": "failed"}),
        ("admin runs, trigger", marketer, runs, {"trigger__exact": "manual"}),
        ("admin runs, sync", marketer, runs, {"sync__id__exact": sync_id}),
        ("admin record errors, first page", marketer, errors, {}),
        (f"admin record errors, page {errors_deep}", marketer, errors, {"p": errors_deep}),
        ("admin record errors, severity", marketer, errors, {"severity__exact": "warning"}),
        ("admin record errors, retriable", marketer, errors, {"retriable__exact": "1"}),
        ("admin record errors, resolved", marketer, errors, {"resolved__exact": "1"}),
        ("admin record errors, class", marketer, errors, {"error_class": "invalid_phone"}),
        ("admin record errors, connection", marketer, errors, {"connection__id__exact": hubspot}),
        ("admin record errors, run", marketer, errors, {"run__id__exact": run_with_errors}),
        ("admin record errors, run's sync", marketer, errors, {"run__sync__id__exact": sync_id}),
        ("admin record errors, search an id", marketer, errors, {"q": f"mailchimp-{seeded.contacts // 2}"}),
        ("admin syncs", marketer, "admin:syncapp_sync_changelist", {}),
        ("admin connections", marketer, "admin:connections_connection_changelist", {}),
        ("admin mappings", marketer, "admin:mappings_fieldmapping_changelist", {}),
        ("trail, first page", compliance, "audit:trail", {}),
        ("trail, deep page (1% from the oldest)", compliance, "audit:trail",
         {"after": seeded.first_event_id + seeded.audit_rows // 100}),
        ("trail, action", compliance, "audit:trail", {"action": "contact.updated"}),
        ("trail, person by email", compliance, "audit:trail", {"person": seeded.current_email}),
        ("trail, sync", compliance, "audit:trail", {"sync": sync_id}),
        ("trail, one run", compliance, "audit:trail", {"run": first_run}),
        ("trail, since/until one month", compliance, "audit:trail",
         {"since": str(first_day + timedelta(days=31)), "until": str(first_day + timedelta(days=61))}),
    ]


def bench_pages(seeded: Seeded, samples: int) -> list[PageFigures]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    clients = {}
    for username in (MARKETER_USER, COMPLIANCE_USER):
        clients[username] = Client()
        clients[username].force_login(User.objects.get(username=username))
    figures = []
    for name, username, url_name, query in pages(seeded):
        url = reverse(url_name) + (f"?{urlencode(query)}" if query else "")
        client = clients[username]
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.content[:2000]!r}")
        p50, p95 = percentiles(timed(lambda url=url, client=client: client.get(url).content, samples))
        figures.append(PageFigures(name, username, url, p50, p95, p95 < PAGE_P95_TARGET_MS))
        print(f"{name:<45} {p50:>9} {p95:>9}  {'met' if p95 < PAGE_P95_TARGET_MS else 'MISSED'}", flush=True)
    return figures


def bench(options: argparse.Namespace, work_dir: Path) -> dict:
    database_url = options.database_url or f"sqlite:///{work_dir / 'pages_bench.sqlite3'}"
    if options.database_url:
        postgres_database(options.database_url, create=True)
    environment(work_dir, database_url)
    report = {"machine": machine(), "load_before": load_average(), "database": "PostgreSQL" if options.database_url
              else "SQLite", "samples": options.samples}
    print("machine:", json.dumps(report["machine"]))
    print(f"database: {report['database']}; contacts {options.contacts:,}; audit events {options.audit_rows:,}; "
          f"samples per page {options.samples}; load average before {report['load_before']}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    report["commit"] = commit.stdout.strip()
    migrate = subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "--verbosity", "0"], cwd=REPO,
                             capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    django_setup()
    seeded = seed(options)
    report["seed"] = asdict(seeded)
    print(f"seeded in {seeded.seconds} s: {seeded.contacts:,} contacts ({seeded.contacts * 2:,} links), "
          f"{seeded.audit_rows:,} audit events, {seeded.runs:,} runs, {seeded.record_errors:,} record errors; "
          f"load average {load_average()}", flush=True)
    print(f"\n{'page (test client, as its role)':<45} {'p50 ms':>9} {'p95 ms':>9}  "
          f"target p95 < {PAGE_P95_TARGET_MS} ms")
    report["pages"] = [asdict(figures) for figures in bench_pages(seeded, options.samples)]
    report["load_after"] = load_average()
    print(f"\nload average after {report['load_after']}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000, help="hub contacts to seed (default 1,000,000)")
    parser.add_argument("--audit-rows", type=int, default=2_000_000,
                        help="audit events to seed (default 2,000,000: about 3 minutes on 2 cores; the issue's "
                             "10,000,000 take about 12)")
    parser.add_argument("--samples", type=int, default=30, help="requests per page for p50 and p95 (default 30)")
    parser.add_argument("--database-url", help="a PostgreSQL database to create, use and drop "
                        "(e.g. postgres://postgres@127.0.0.1:5432/pages_bench); SQLite in a temporary directory "
                        "by default")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random data (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pagesbench-") as work:
        try:
            report = bench(options, Path(work))
        finally:
            if options.database_url:
                from django.db import connections

                connections.close_all()
                postgres_database(options.database_url, create=False)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
