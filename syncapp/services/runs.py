"""Requesting, executing and resuming sync runs: one active run per sync, resumable after a crash.

A run executes under a lease (see tracker.RunLease). A run whose lease expired (its
worker died, or was paused for too long) is abandoned, and a new run resumes from the
cursors the old one checkpointed: on the next request for the sync, from the watchdog
(`runs_recover`, every minute), or when the queue delivers the old run's task again.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from audit.services import audit_record
from connections.models import Connection
from connections.providers.base import AuthenticationError, Provider, ProviderError
from connections.redaction import redact
from connections.registry import provider_for as registry_provider_for
from syncapp import queue
from syncapp.engine.backfill import endpoints_to_read_fully, fields_compared_afresh
from syncapp.engine.text import clean_text
from syncapp.models import Sync, SyncRun
from syncapp.services.duplicate_detection import duplicates_flag_since
from syncapp.services.locks import runs_locked, sync_lock, sync_locked
from syncapp.services.plan import PlanError, SyncPlan, sync_plan_build
from syncapp.services.pull import pull_endpoint
from syncapp.services.push import Pusher
from syncapp.services.schema_drift import RunSchemaCheck, SchemaDrifted
from syncapp.services.tracker import LeaseLost, RunLease, RunTracker, lease_expired, lease_held

logger = logging.getLogger(__name__)

EXECUTE_TASK = "syncapp.tasks.run_execute_task"
ERROR_LIMIT = 2000
# Runs abandoned one after the other, none of them with a page or batch saved, before the
# watchdog stops resuming the sync: a page that kills its worker every time (memory, a
# crash in a library) waits for a person, or for the sync's next scheduled or requested
# run, instead of being retried forever. Runs that save progress are resumed however
# often their workers die: each one gets further.
RESUME_LIMIT = 3


class SyncPaused(Exception):
    """A paused sync does not run."""


def run_is_stale(run: SyncRun) -> bool:
    """Return whether an active run's lease expired, by the database's clock."""
    return SyncRun.objects.filter(lease_expired(), pk=run.pk, status__in=SyncRun.ACTIVE).exists()


def run_request(
    *, sync: Sync, trigger: str, user=None, enqueue: bool = True, full_read: bool = False,
    backfill_fields: list[str] | None = None,
) -> tuple[SyncRun, bool]:
    """Queue a run of `sync`, or return the run already under way with created=False.

    `full_read` reads every record again instead of the changes: of every reading
    system, or with `backfill_fields` of those that read these hub fields (services.backfill).

    An active run whose lease expired (SYNC_RUN_STALE_SECONDS without a sign of its
    worker) is marked abandoned first; the new run resumes from the cursors the old one
    checkpointed. With `enqueue` (the default) a worker executes the run once the
    transaction commits; without it the caller executes it (the runsync command,
    scheduled tasks).
    """
    if sync.paused:
        raise SyncPaused(f"The sync {sync.name!r} is paused.")
    with transaction.atomic():
        # The sync first, as everywhere (runs._start, backfill_request): abandoning a
        # stale run gives its backfill back to the sync.
        sync_lock(sync.pk)
        active = _active_run_locked(sync)
        if active is not None:
            return active, False
        run = _queue(sync=sync, trigger=trigger, user=user, enqueue=enqueue, full_read=full_read,
                     backfill_fields=backfill_fields)
        if run is None:
            # Another request created the active run between our read and our insert.
            return SyncRun.objects.get(sync=sync, status__in=SyncRun.ACTIVE), False
    return run, True


def run_resume(*, sync: Sync, enqueue: bool = True) -> SyncRun | None:
    """Abandon `sync`'s active run if its lease expired, and request a run that resumes it.

    Return the new run (trigger "retry"), or None: when the sync has no active run, or
    one whose worker is alive; when the sync is paused (the expired run is abandoned all
    the same, and the sync resumes from its checkpoint when it runs again); when its last
    RESUME_LIMIT runs were all abandoned without saving any progress. `enqueue` as for
    run_request.
    """
    with transaction.atomic():
        # The sync first, as everywhere: abandoning gives the run's backfill back to it.
        sync_lock(sync.pk)
        active = runs_locked().filter(sync=sync, status__in=SyncRun.ACTIVE).first()
        if active is None or not run_is_stale(active):
            return None
        _abandon(active)
        if Sync.objects.filter(pk=sync.pk, paused=True).exists():
            return None
        if _stuck(sync):
            note = (f" Not resumed automatically: the last {RESUME_LIMIT} runs of this sync were abandoned "
                    "before saving any progress; the next scheduled or requested run resumes from the checkpoint.")
            SyncRun.objects.filter(pk=active.pk).update(error=(active.error + note)[:ERROR_LIMIT])
            logger.error("Sync %s: %s runs abandoned in a row without progress; the watchdog no longer resumes it.",
                         sync.pk, RESUME_LIMIT)
            return None
        # A full read cut short is read again from the start: its later systems were
        # never read in full, and reading a record twice changes nothing.
        return _queue(sync=sync, trigger=SyncRun.Trigger.RETRY, user=None, enqueue=enqueue,
                      full_read=active.full_read, backfill_fields=active.backfill_fields)


def runs_recover(*, sleep: Callable[[float], None] = time.sleep) -> list[SyncRun]:
    """Resume every run whose lease expired, whatever its sync's schedule (the watchdog task).

    A running run that missed two renewals of its lease has a dead or stopped worker (a
    live one fences itself by then, see tracker.RunLease). Rather than leave it to the
    next tick, a minute or more away, wait here until its lease expires and resume it
    then: a run is resumed within SYNC_RUN_STALE_SECONDS and one scheduler tick of its
    worker's death instead of two. Return the runs requested; each is executed by a worker.
    """
    resumed = _resume_expired()
    wait = _until_silent_leases_expire()
    if wait is not None:
        sleep(wait)
        resumed += _resume_expired()
    return resumed


def _until_silent_leases_expire() -> float | None:
    """Return the seconds until every silent run's lease has expired; None when no run is silent.

    Measured by the database's clock, as the lease is kept.
    """
    stale = settings.SYNC_RUN_STALE_SECONDS
    latest = (SyncRun.objects.filter(status=SyncRun.Status.RUNNING,
                                     heartbeat_at__lt=Now() - timedelta(seconds=stale / 2))
              .exclude(lease_expired()).annotate(now=Now()).order_by("-heartbeat_at")
              .values_list("heartbeat_at", "now").first())
    if latest is None:
        return None
    heartbeat, now = latest
    # A second more, so that the lease has expired by the database's clock when we look again.
    return max(0.0, stale - (now - heartbeat).total_seconds()) + 1.0


def _resume_expired() -> list[SyncRun]:
    expired = SyncRun.objects.filter(lease_expired(), status__in=SyncRun.ACTIVE).values("sync_id")
    resumed = []
    for sync in Sync.objects.filter(pk__in=expired):
        run = run_resume(sync=sync)
        if run is not None:
            logger.warning("Run %s resumes sync %s after its last run was abandoned.", run.pk, sync.pk)
            resumed.append(run)
    return resumed


def runs_request_for(*, syncs, user) -> None:
    """Request one run of each sync, to carry a user's decision to every system.

    A paused sync is skipped: it carries the decision out when it is resumed.
    """
    for sync in {sync.pk: sync for sync in syncs}.values():
        try:
            run_request(sync=sync, trigger=SyncRun.Trigger.MANUAL, user=user)
        except SyncPaused:
            pass


def _is_user(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


def _stuck(sync: Sync) -> bool:
    """Return whether the sync's last RESUME_LIMIT runs were abandoned without a page or batch saved."""
    recent = list(SyncRun.objects.filter(sync=sync).order_by("-pk").values("status", *SyncRun.COUNT_FIELDS)
                  [:RESUME_LIMIT])
    return len(recent) == RESUME_LIMIT and all(
        run["status"] == SyncRun.Status.ABANDONED and not any(run[name] for name in SyncRun.COUNT_FIELDS)
        for run in recent
    )


def _active_run_locked(sync: Sync) -> SyncRun | None:
    """Lock and return the sync's active run; if its lease expired, abandon it and return None."""
    active = runs_locked().filter(sync=sync, status__in=SyncRun.ACTIVE).first()
    if active is None or not run_is_stale(active):
        return active
    _abandon(active)
    return None


def _queue(
    *, sync: Sync, trigger: str, user, enqueue: bool, full_read: bool = False, backfill_fields: list[str] | None = None
) -> SyncRun | None:
    """Create a queued run of `sync`; None if another one became active meanwhile."""
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(sync=sync, trigger=trigger, requested_by=user if _is_user(user) else None,
                                         full_read=full_read, backfill_fields=list(backfill_fields or []))
    except IntegrityError:
        return None
    if _is_user(user):
        audit_record(action="sync.run_requested", obj=sync, actor=user, run_id=run.pk,
                     changes={"run": [None, run.pk], "trigger": [None, trigger]})
    if enqueue:
        transaction.on_commit(lambda: queue.enqueue(EXECUTE_TASK, run.pk, task_name=f"sync {sync.pk} run {run.pk}"))
    return run


def _abandon(run: SyncRun) -> None:
    seen = run.heartbeat_at or run.queued_at
    run.status = SyncRun.Status.ABANDONED
    run.finished_at = timezone.now()
    run.error = (
        f"Abandoned: no sign of its worker since {seen:%Y-%m-%d %H:%M:%S %Z} "
        f"(more than {settings.SYNC_RUN_STALE_SECONDS} s). The next run resumes from its last checkpoint."
    )
    run.save(update_fields=["status", "finished_at", "error"])
    # Its backfill waits on the sync again, for the run that resumes it or the next one
    # (the caller holds the sync's lock).
    _backfill_give_back(run)
    logger.warning("Run %s of sync %s abandoned: its worker fell silent.", run.pk, run.sync_id)


def _backfill_give_back(run: SyncRun) -> None:
    owed = set(run.backfill_fields) | set(run.backfill_taken)
    if not owed:
        return
    pending = Sync.objects.values_list("backfill_pending_fields", flat=True).get(pk=run.sync_id)
    Sync.objects.filter(pk=run.sync_id).update(backfill_pending_fields=sorted(set(pending or []) | owed))


def run_execute(
    *,
    run_id: int,
    on_progress: Callable[[SyncRun], None] | None = None,
    provider_for: Callable[..., Provider] | None = None,
) -> SyncRun:
    """Execute a queued run: pull every read endpoint, then push every write endpoint.

    Pushing starts during the pull, one full batch at a time (see push.Pusher).

    The run holds a lease while it executes; once the lease is lost it writes nothing
    more and is returned as the database has it (see tracker.RunLease). A run that is
    not queued (taken by another worker, finished, abandoned) is returned as is, so a
    task delivered twice does nothing the second time (run_execute_delivered resumes a
    run whose worker died); a run that does not exist raises SyncRun.DoesNotExist.
    `provider_for` builds a connection's provider; the registry's by default.
    """
    # Read before the lease is taken: the database stamps it later than this.
    acquired_at = time.monotonic()
    run, started = _start(run_id)
    if not started:
        return run
    lease = RunLease(run.pk, acquired_at=acquired_at)
    lease.start()
    tracker = RunTracker(run, on_progress, lease)
    plan: SyncPlan | None = None
    status, error = SyncRun.Status.SUCCEEDED, ""
    pushers: list[Pusher] = []
    try:
        build = provider_for or registry_provider_for

        def provider_fenced(connection, **options):
            # A connection whose client cannot be built (no token, undecryptable
            # credentials) is the one the error names.
            tracker.current = connection
            provider = build(connection, **options)
            # Every write to the system, each retry included, checks the lease first.
            provider.http.before_write = lease.check
            return provider

        plan = sync_plan_build(sync=run.sync, provider_for=provider_fenced)
        plan.compare_afresh(fields_compared_afresh(full_read=run.full_read, backfill_fields=run.backfill_fields,
                                                   backfill_taken=run.backfill_taken))
        tracker.plan = plan
        tracker.current = None
        # A mapped field gone or retyped pauses the sync before anything is read or written.
        clients = {endpoint.connection.pk: endpoint.provider for endpoint in plan.endpoints}

        def plan_client(connection):
            # A system that cannot list its fields is the one the error names.
            tracker.current = connection
            return clients[connection.pk]

        # Systems due for a check are asked now; the others before the run's first write
        # (schema_drift.RunSchemaCheck): a run with nothing to write asks none of them.
        schema = RunSchemaCheck(sync=run.sync, run=run, provider_for=plan_client)
        schema.start()
        tracker.current = None

        def schema_before_writes():
            working_on = tracker.current
            schema.before_writes()
            tracker.current = working_on

        pushers = [Pusher(tracker=tracker, plan=plan, writer=writer, before_send=schema_before_writes)
                   for writer in plan.writers]
        unread = {reader.connection.pk for reader in plan.readers}
        read_fully = endpoints_to_read_fully(
            reads={reader.connection.pk: [field.hub_field for field in reader.reads] for reader in plan.readers},
            backfill_fields=run.backfill_fields,
        ) if run.full_read else set()
        for reader in plan.readers:
            # Full batches go out while this system is read, but only to systems already
            # read in this run: writing to one not yet read would overwrite a change
            # made there that the run has not seen.
            unread.discard(reader.connection.pk)
            others = [pusher for pusher in pushers
                      if pusher.writer is not reader and pusher.writer.connection.pk not in unread]
            pull_endpoint(tracker=tracker, plan=plan, reader=reader, after_page=partial(_send_early, others),
                          full=reader.connection.pk in read_fully)
        tracker.current = None
        tracker.fence()
        duplicates_flag_since(run.started_at)
        for pusher in pushers:
            pusher.finish()
        tracker.current = None
        if run.failed_count:
            status = SyncRun.Status.PARTIAL
    except SchemaDrifted as drifted:
        status, error = SyncRun.Status.PAUSED, str(drifted)
    except LeaseLost as lost:
        logger.warning("%s It stopped without writing anything more.", lost)
        return SyncRun.objects.get(pk=run.pk)
    except AuthenticationError as exc:
        status, error = SyncRun.Status.FAILED, _describe(exc, tracker.current)
        _connection_needs_reauth(tracker.current, error)
    except (ProviderError, PlanError) as exc:
        status, error = SyncRun.Status.FAILED, _describe(exc, tracker.current)
    except Exception as exc:
        logger.exception("Run %s of sync %s failed unexpectedly.", run.pk, run.sync_id)
        status, error = SyncRun.Status.FAILED, _describe(exc, tracker.current, unexpected=True)
    finally:
        for pusher in pushers:
            pusher.close()
        if plan is not None:
            plan.close()
        lease.stop()
    finished = _finish(tracker, status, error)
    _backfill_after(finished)
    return finished


def run_execute_delivered(*, run_id: int, provider_for: Callable[..., Provider] | None = None) -> SyncRun:
    """Execute a run the task queue delivered, for the first time or again.

    A queued run is executed. A run still active whose lease expired (its worker died,
    and this is its task handed out again) is abandoned, and a run resuming it is
    executed here at once. A finished run, or one a live worker holds, is returned as is.
    """
    run = run_execute(run_id=run_id, provider_for=provider_for)
    if run.status not in SyncRun.ACTIVE:
        return run
    resumed = run_resume(sync=run.sync, enqueue=False)
    if resumed is None:
        return SyncRun.objects.get(pk=run.pk)
    return run_execute(run_id=resumed.pk, provider_for=provider_for)


def _send_early(pushers: list[Pusher], marked: dict[int, int]) -> None:
    for pusher in pushers:
        pusher.send_early(marked.get(pusher.writer.connection.pk, 0))


def _start(run_id: int) -> tuple[SyncRun, bool]:
    """Take a queued run's lease and mark it running; return it and whether it was started.

    A run that is not queued is left alone; one whose sync was paused meanwhile is
    marked skipped.
    """
    with transaction.atomic():
        # The sync first, as backfill_request locks it: a backfill asked for meanwhile is
        # either taken by this run or left for the next, never lost.
        sync_id = SyncRun.objects.values_list("sync_id", flat=True).get(pk=run_id)
        sync_lock(sync_id)
        run = runs_locked().select_related("sync").get(pk=run_id)
        if run.status != SyncRun.Status.QUEUED:
            return run, False
        now = timezone.now()
        if run.sync.paused:
            run.status = SyncRun.Status.SKIPPED
            run.error = "The sync was paused before the run started."
            run.finished_at = now
            run.save(update_fields=["status", "error", "finished_at"])
            return run, False
        run.status = SyncRun.Status.RUNNING
        run.started_at = now
        # The lease is kept by the database's clock, so that workers' clocks do not matter.
        run.heartbeat_at = Now()
        run.phase = "Starting"
        run.cursors_before = _cursors(run.sync)
        _take_pending_backfill(run)
        run.save(update_fields=["status", "started_at", "heartbeat_at", "phase", "cursors_before", "full_read",
                                "backfill_fields", "backfill_taken"])
        run.refresh_from_db(fields=["heartbeat_at"])
        return run, True


def _take_pending_backfill(run: SyncRun) -> None:
    """Make a starting run read in full the fields whose backfill waited on the sync (the sync row is locked)."""
    pending = run.sync.backfill_pending_fields
    if not pending:
        return
    # A full resync (full_read without fields) reads every system: it covers any backfill.
    if not (run.full_read and not run.backfill_fields):
        run.backfill_fields = sorted(set(run.backfill_fields) | set(pending))
    # Kept on the run, so that a run that does not finish its reads gives them back.
    run.backfill_taken = sorted(pending)
    run.full_read = True
    run.sync.backfill_pending_fields = []
    Sync.objects.filter(pk=run.sync_id).update(backfill_pending_fields=[])


def _backfill_after(run: SyncRun) -> None:
    """Start the backfill that waited for `run`; keep the backfill of a run that did not finish its reads.

    A run that failed or paused (a mapped field changed) gives its fields back to the
    sync, for its next run: they are not retried at once, which would fail the same way.
    """
    if run.status in SyncRun.ACTIVE:
        return
    with transaction.atomic():
        sync = sync_locked(run.sync_id)
        pending = set(sync.backfill_pending_fields or [])
        if run.status in (SyncRun.Status.FAILED, SyncRun.Status.PAUSED):
            _backfill_give_back(run)
            return
        if pending and not sync.paused and _active_run_locked(sync) is None:
            _queue(sync=sync, trigger=SyncRun.Trigger.BACKFILL, user=None, enqueue=True, full_read=True,
                   backfill_fields=sorted(pending))


def _finish(tracker: RunTracker, status: str, error: str) -> SyncRun:
    run = tracker.run
    run.status = status
    run.error = error[:ERROR_LIMIT]
    run.finished_at = timezone.now()
    run.phase = {"succeeded": "Done", "partial": "Done, with record errors",
                 "paused": "Paused: a mapped field changed"}.get(status, "Failed")
    if status == SyncRun.Status.SUCCEEDED and run.warning_count:
        # Warnings are not failures: every record synced, some without a field.
        run.phase = "Done, with warnings"
    run.api_calls = tracker.api_calls()
    run.cursors_after = _cursors(run.sync)
    fields = ["status", "error", "finished_at", "phase", "api_calls", "cursors_after", "progress_done",
              "progress_total", *SyncRun.COUNT_FIELDS]
    # Only while the lease holds: a run that lost it leaves its row to its successor.
    updated = SyncRun.objects.filter(lease_held(run.pk)).update(
        heartbeat_at=Now(), **{name: getattr(run, name) for name in fields}
    )
    if not updated:
        return SyncRun.objects.get(pk=run.pk)
    if tracker.on_progress is not None:
        tracker.on_progress(run)
    return run


# A run keeps its endpoints' cursors for the record; a cursor holding the ids seen at its
# boundary (thousands after a bulk write) is kept shortened, with its size.
CURSOR_RECORD_LIMIT = 1000


def _cursors(sync: Sync) -> dict[str, str]:
    return {endpoint.connection.name: _cursor_for_record(endpoint.cursor)
            for endpoint in sync.endpoints.select_related("connection")}


def _cursor_for_record(cursor: str) -> str:
    if len(cursor) <= CURSOR_RECORD_LIMIT:
        return cursor
    return f"{cursor[:CURSOR_RECORD_LIMIT]}... ({len(cursor):,} characters in all)"


def _describe(exc: BaseException, connection: Connection | None, *, unexpected: bool = False) -> str:
    """Return a message for the run page: which system, what happened, never a secret."""
    where = f"{connection.name}: " if connection is not None else ""
    what = f"{type(exc).__name__}: {exc}" if unexpected else str(exc)
    return clean_text(redact(f"{where}{what}", _secrets(connection)))


def _secrets(connection: Connection | None) -> tuple[str, ...]:
    if connection is None:
        return ()
    try:
        return tuple(filter(None, (connection.api_key, connection.access_token, connection.refresh_token,
                                   connection.webhook_secret, connection.client_secret)))
    except Exception:  # noqa: BLE001 - undecryptable secrets cannot leak; redact() still masks patterns
        return ()


def _connection_needs_reauth(connection: Connection | None, error: str) -> None:
    if connection is None:
        return
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.NEEDS_REAUTH, last_error=error[:ERROR_LIMIT], updated_at=timezone.now()
    )


def run_interrupt(*, run_id: int, reason: str) -> None:
    """Mark a running run failed because its process is being stopped on purpose; give its backfill back."""
    with transaction.atomic():
        # The sync first, as everywhere: the run's backfill goes back to it.
        sync_id = SyncRun.objects.filter(pk=run_id).values_list("sync_id", flat=True).first()
        if sync_id is None:
            return
        sync_lock(sync_id)
        stopped = SyncRun.objects.filter(pk=run_id, status__in=SyncRun.ACTIVE).update(
            status=SyncRun.Status.FAILED, error=f"Interrupted: {reason}"[:ERROR_LIMIT], finished_at=timezone.now(),
            phase="Interrupted",
        )
        if stopped:
            _backfill_give_back(SyncRun.objects.get(pk=run_id))
