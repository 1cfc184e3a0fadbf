"""Requesting and executing sync runs: one active run per sync, resumable after a crash."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from connections.models import Connection
from connections.providers.base import AuthenticationError, Provider, ProviderError
from connections.redaction import redact
from connections.registry import provider_for as registry_provider_for
from syncapp import queue
from syncapp.engine.text import clean_text
from syncapp.models import Sync, SyncRun
from syncapp.services.duplicate_detection import duplicates_flag_since
from syncapp.services.plan import PlanError, SyncPlan, sync_plan_build
from syncapp.services.pull import pull_endpoint
from syncapp.services.push import Pusher
from syncapp.services.tracker import RunTakenOver, RunTracker

logger = logging.getLogger(__name__)

EXECUTE_TASK = "syncapp.tasks.run_execute_task"
ERROR_LIMIT = 2000


class SyncPaused(Exception):
    """A paused sync does not run."""


def run_is_stale(run: SyncRun, *, now=None) -> bool:
    """Return whether an active run's worker has not been heard of for too long."""
    now = now or timezone.now()
    last_sign_of_life = run.heartbeat_at or run.started_at or run.queued_at
    return now - last_sign_of_life > timedelta(seconds=settings.SYNC_RUN_STALE_SECONDS)


def run_request(*, sync: Sync, trigger: str, user=None, enqueue: bool = True) -> tuple[SyncRun, bool]:
    """Queue a run of `sync`, or return the run already under way with created=False.

    An active run whose worker fell silent for SYNC_RUN_STALE_SECONDS is marked
    abandoned first; the new run resumes from the cursors the old one checkpointed.
    With `enqueue` (the default) a worker executes the run once the transaction
    commits; without it the caller executes it (the runsync command, scheduled tasks).
    """
    if sync.paused:
        raise SyncPaused(f"The sync {sync.name!r} is paused.")
    with transaction.atomic():
        active = SyncRun.objects.select_for_update().filter(sync=sync, status__in=SyncRun.ACTIVE).first()
        if active is not None:
            if not run_is_stale(active):
                return active, False
            _abandon(active)
        try:
            with transaction.atomic():
                run = SyncRun.objects.create(sync=sync, trigger=trigger, requested_by=user if _is_user(user) else None)
        except IntegrityError:
            # Another request created the active run between our read and our insert.
            return SyncRun.objects.get(sync=sync, status__in=SyncRun.ACTIVE), False
        if _is_user(user):
            audit_record(action="sync.run_requested", obj=sync, actor=user, run_id=run.pk,
                         changes={"run": [None, run.pk], "trigger": [None, trigger]})
        if enqueue:
            transaction.on_commit(lambda: queue.enqueue(EXECUTE_TASK, run.pk, task_name=f"sync {sync.pk} run {run.pk}"))
    return run, True


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


def _abandon(run: SyncRun) -> None:
    seen = run.heartbeat_at or run.started_at or run.queued_at
    run.status = SyncRun.Status.ABANDONED
    run.finished_at = timezone.now()
    run.error = (
        f"Abandoned: no sign of its worker since {seen:%Y-%m-%d %H:%M:%S %Z} "
        f"(more than {settings.SYNC_RUN_STALE_SECONDS} s). The next run resumes from its last checkpoint."
    )
    run.save(update_fields=["status", "finished_at", "error"])
    logger.warning("Run %s of sync %s abandoned: its worker fell silent.", run.pk, run.sync_id)


def run_execute(
    *,
    run_id: int,
    on_progress: Callable[[SyncRun], None] | None = None,
    provider_for: Callable[..., Provider] | None = None,
) -> SyncRun:
    """Execute a queued run: pull every read endpoint, then push every write endpoint.

    Pushing starts during the pull, one full batch at a time (see push.Pusher).

    A run that is not queued (already taken, finished, abandoned) is returned as is, so
    a task delivered twice does nothing the second time; a run that does not exist
    raises SyncRun.DoesNotExist. `provider_for` builds a connection's provider; the
    registry's by default.
    """
    run = _start(run_id)
    if run.status != SyncRun.Status.RUNNING:
        return run
    tracker = RunTracker(run, on_progress)
    plan: SyncPlan | None = None
    status, error = SyncRun.Status.SUCCEEDED, ""
    pushers: list[Pusher] = []
    try:
        build = provider_for or registry_provider_for

        def provider_blamed(connection, **options):
            # A connection whose client cannot be built (no token, undecryptable
            # credentials) is the one the error names.
            tracker.current = connection
            return build(connection, **options)

        plan = sync_plan_build(sync=run.sync, provider_for=provider_blamed)
        tracker.plan = plan
        tracker.current = None
        pushers = [Pusher(tracker=tracker, plan=plan, writer=writer) for writer in plan.writers]
        unread = {reader.connection.pk for reader in plan.readers}
        for reader in plan.readers:
            # Full batches go out while this system is read, but only to systems already
            # read in this run: writing to one not yet read would overwrite a change
            # made there that the run has not seen.
            unread.discard(reader.connection.pk)
            others = [pusher for pusher in pushers
                      if pusher.writer is not reader and pusher.writer.connection.pk not in unread]
            pull_endpoint(tracker=tracker, plan=plan, reader=reader, after_page=partial(_send_early, others))
        tracker.current = None
        duplicates_flag_since(run.started_at)
        for pusher in pushers:
            pusher.finish()
        tracker.current = None
        if run.failed_count:
            status = SyncRun.Status.PARTIAL
    except RunTakenOver:
        logger.warning("Run %s stopped: it was declared abandoned and another run took over.", run.pk)
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
    return _finish(tracker, status, error)


def _send_early(pushers: list[Pusher]) -> None:
    for pusher in pushers:
        pusher.send_early()


def _start(run_id: int) -> SyncRun:
    """Mark a queued run running (or skipped, if its sync was paused meanwhile)."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().select_related("sync").get(pk=run_id)
        if run.status != SyncRun.Status.QUEUED:
            return run
        now = timezone.now()
        if run.sync.paused:
            run.status = SyncRun.Status.SKIPPED
            run.error = "The sync was paused before the run started."
            run.finished_at = now
            run.save(update_fields=["status", "error", "finished_at"])
            return run
        run.status = SyncRun.Status.RUNNING
        run.started_at = run.heartbeat_at = now
        run.phase = "Starting"
        run.cursors_before = _cursors(run.sync)
        run.save(update_fields=["status", "started_at", "heartbeat_at", "phase", "cursors_before"])
        return run


def _finish(tracker: RunTracker, status: str, error: str) -> SyncRun:
    run = tracker.run
    run.status = status
    run.error = error[:ERROR_LIMIT]
    run.finished_at = timezone.now()
    run.phase = {"succeeded": "Done", "partial": "Done, with record errors"}.get(status, "Failed")
    run.api_calls = tracker.api_calls()
    run.cursors_after = _cursors(run.sync)
    fields = ["status", "error", "finished_at", "phase", "api_calls", "cursors_after", "progress_done",
              "progress_total", "heartbeat_at", *SyncRun.COUNT_FIELDS]
    updated = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
        **{name: getattr(run, name) for name in fields}
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
    """Mark a running run failed because its process is being stopped on purpose."""
    SyncRun.objects.filter(pk=run_id, status__in=SyncRun.ACTIVE).update(
        status=SyncRun.Status.FAILED, error=f"Interrupted: {reason}"[:ERROR_LIMIT], finished_at=timezone.now(),
        phase="Interrupted",
    )
