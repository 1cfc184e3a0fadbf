"""A run's lease, progress and counts, saved as it goes.

A running run holds a lease on its row: `heartbeat_at`, renewed by the database's clock
from a thread of the worker (`RunLease`), whatever the run is doing. Once the lease is
older than SYNC_RUN_STALE_SECONDS, by the database's clock, anyone may declare the run
abandoned and start another that resumes from its checkpoint.

A worker cannot know at once that it lost its lease (it may have been paused, or cut off
from the database), so it stops writing well before the lease can expire: it fences
itself once half the lease has passed since its last successful renewal, by its own
monotonic clock. Every provider write (each attempt, retries included) and every page's
commit checks the fence first, and every commit is also a conditional update that holds
only while the lease does. Two runs of one sync therefore never write at the same time:
the old one has stopped before the new one can start.

A pull page's conditional update is its cursor's (`cursor_save`): the run's counts and
progress, the same row for every page, are saved at most every CHECKPOINT_SECONDS
during a read, not once per page.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q
from django.db.models.functions import Now

from syncapp.models import SyncConnection, SyncRun
from syncapp.services.locks import runs_locked

if TYPE_CHECKING:
    from syncapp.services.plan import SyncPlan

logger = logging.getLogger(__name__)

# Seconds between two saves of a run's counts while its pages are read: the run page
# polls every few seconds, and a page's commit is fenced by its cursor's update.
CHECKPOINT_SECONDS = 2.0


class LeaseLost(Exception):
    """The run no longer holds its lease: it must not write anything more."""


def lease_expired() -> Q:
    """Match active runs not heard of for SYNC_RUN_STALE_SECONDS, by the database's clock.

    A queued run no worker has taken yet is judged by the time it was queued.
    """
    limit = Now() - timedelta(seconds=settings.SYNC_RUN_STALE_SECONDS)
    return Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True, queued_at__lt=limit)


def lease_held(run_id: int) -> Q:
    """Match the run while it is running and its lease has not expired."""
    return Q(pk=run_id, status=SyncRun.Status.RUNNING) & ~lease_expired()


class RunLease:
    """Renew a running run's lease from a daemon thread, and fence the run once it is lost.

    `acquired_at` is the monotonic time read just before the statement that took the
    lease was sent: the database stamped the lease after it, so measuring from it errs
    on the safe side. The same holds for every renewal.
    """

    def __init__(self, run_id: int, *, acquired_at: float, clock: Callable[[], float] = time.monotonic):
        self.run_id = run_id
        self.clock = clock
        stale = settings.SYNC_RUN_STALE_SECONDS
        self.renew_every = stale / 4
        # Writes stop once half the lease has passed without a renewal. The other half
        # is the margin for a write already on the wire to land (150 s with the default
        # lease, more than a Mailchimp batch's 125 s of connect and read timeouts) and
        # for clocks that tick at slightly different rates.
        self.valid_for = stale / 2
        self._renewed_at = acquired_at
        self._lost = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"syncapp-lease-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the run is over); the lease then lapses unless the run's end was saved."""
        self._stopping.set()
        if self._thread.is_alive():
            # A renewal waiting on a lock the caller's own transaction holds (a test
            # running the run inside one) must not hang the caller; the thread is a
            # daemon and ends with its statement.
            self._thread.join(timeout=5)

    def check(self) -> None:
        """Raise LeaseLost unless the lease is surely still held: the fence before a write."""
        if not self._lost and self.clock() - self._renewed_at > self.valid_for:
            self._lost = (f"no renewal of its lease for more than {self.valid_for:g} s "
                          "(the worker was paused or could not reach the database)")
        if self._lost:
            raise LeaseLost(f"Run {self.run_id} lost its lease: {self._lost}.")

    def renew(self) -> bool:
        """Extend the lease by the database's clock; return whether it was extended.

        A renewal that fails for a database error is tried again soon; the fence stops
        the run if none succeeds in time. One that finds the lease expired or taken
        over marks it lost for good.
        """
        if self._lost:
            return False
        sent = self.clock()
        try:
            renewed = SyncRun.objects.filter(lease_held(self.run_id)).update(heartbeat_at=Now())
        except DatabaseError as error:
            logger.warning("Run %s could not renew its lease: %s", self.run_id, error)
            return False
        if not renewed:
            self._lost = "it expired, or the run was declared abandoned and taken over"
            return False
        self._renewed_at = sent
        return True

    def _keep(self) -> None:
        try:
            wait = self.renew_every
            while not self._stopping.wait(wait):
                if self.renew():
                    wait = self.renew_every
                elif self._lost:
                    logger.warning("Run %s lost its lease: %s.", self.run_id, self._lost)
                    return
                else:
                    # Try again soon rather than a whole period later.
                    wait = min(1.0, self.renew_every)
        finally:
            # This thread's own database connection.
            connections.close_all()


class RunTracker:
    """Keep a running SyncRun's counts and progress, within its lease.

    Every checkpoint checks the fence, then is a conditional update (still running,
    lease not expired), so a worker that lost its lease stops at its next page instead
    of writing beside its successor; called inside a page's transaction, it rolls that
    page back too.
    """

    def __init__(self, run: SyncRun, on_progress: Callable[[SyncRun], None] | None = None,
                 lease: RunLease | None = None):
        self.run = run
        self.plan: SyncPlan | None = None
        self.on_progress = on_progress
        self.lease = lease
        # The connection being read or written, to blame when a call fails.
        self.current = None
        # When the counts were last saved, and whether a saved count was ever above zero
        # (a run abandoned without any is one that saved no progress: runs._stuck).
        self._checkpointed_at = time.monotonic()
        self._counted = False

    def fence(self) -> None:
        """Raise LeaseLost if the run may no longer write (see RunLease.check)."""
        if self.lease is not None:
            self.lease.check()

    def phase(self, text: str, *, total: int = 0) -> None:
        self.run.phase = text[:100]
        self.run.progress_done = 0
        self.run.progress_total = total
        self.checkpoint()

    def advance(self, *, done: int = 0, total: int | None = None, lazily: bool = False, **counts: int) -> None:
        """Add `done` to the progress and `counts` (e.g. created_count=3), then checkpoint.

        `lazily`: checkpoint only when the last one is CHECKPOINT_SECONDS old, or saved
        no count yet; the fence is checked either way. For a caller whose commit is a
        conditional update of its own (a pull page's `cursor_save`).
        """
        run = self.run
        run.progress_done += done
        if total is not None:
            run.progress_total = total
        run.progress_total = max(run.progress_total, run.progress_done)
        for name, value in counts.items():
            if name not in SyncRun.COUNT_FIELDS:
                raise ValueError(f"{name} is not a run count")
            setattr(run, name, getattr(run, name) + value)
        if lazily and self._counted and time.monotonic() - self._checkpointed_at < CHECKPOINT_SECONDS:
            self.fence()
            if self.on_progress is not None:
                self.on_progress(run)
            return
        self.checkpoint()

    def cursor_save(self, endpoint: SyncConnection) -> None:
        """Save an endpoint's cursor while the run holds its lease; else raise LeaseLost.

        The run's row is locked first (syncapp.services.locks) and stays locked until the
        page commits: what stops a run (an interrupt, an abandonment) updates that row, so
        it waits for the page instead of committing between this check and the page's
        commit, after which a page of a stopped run would still land. A plain conditional
        update of the cursor locks nothing of the run's, and the foreign keys' locks do
        not hold a stop back.
        """
        self.fence()
        if runs_locked().filter(lease_held(self.run.pk)).values_list("pk", flat=True).first() is None:
            raise LeaseLost(f"Run {self.run.pk} lost its lease: it expired, or another run took over.")
        SyncConnection.objects.filter(pk=endpoint.pk).update(cursor=endpoint.cursor,
                                                             cursor_updated_at=endpoint.cursor_updated_at)

    def api_calls(self) -> dict[str, int]:
        if self.plan is None:
            return dict(self.run.api_calls)
        return {plan.name: plan.provider.http.request_count for plan in self.plan.endpoints}

    def checkpoint(self) -> None:
        self.fence()
        run = self.run
        run.api_calls = self.api_calls()
        values = {name: getattr(run, name) for name in SyncRun.COUNT_FIELDS}
        updated = SyncRun.objects.filter(lease_held(run.pk)).update(
            phase=run.phase,
            progress_done=run.progress_done,
            progress_total=run.progress_total,
            api_calls=run.api_calls,
            **values,
        )
        if not updated:
            raise LeaseLost(f"Run {run.pk} lost its lease: it expired, or another run took over.")
        self._checkpointed_at = time.monotonic()
        self._counted = self._counted or any(values.values())
        if self.on_progress is not None:
            self.on_progress(run)
