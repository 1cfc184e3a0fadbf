"""A run's progress, counts and heartbeat, saved as it goes."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils import timezone

from syncapp.models import SyncRun

if TYPE_CHECKING:
    from syncapp.services.plan import SyncPlan


class RunTakenOver(Exception):
    """The run is no longer running: it was declared abandoned and replaced."""


class RunTracker:
    """Keep a running SyncRun's counts and progress, and prove the worker is alive.

    Every checkpoint is a conditional update (still running?), so a worker whose run was
    declared abandoned stops at its next page instead of writing beside its successor;
    called inside a page's transaction, it rolls that page back too.
    """

    def __init__(self, run: SyncRun, on_progress: Callable[[SyncRun], None] | None = None):
        self.run = run
        self.plan: SyncPlan | None = None
        self.on_progress = on_progress
        # The connection being read or written, to blame when a call fails.
        self.current = None

    def phase(self, text: str, *, total: int = 0) -> None:
        self.run.phase = text[:100]
        self.run.progress_done = 0
        self.run.progress_total = total
        self.checkpoint()

    def advance(self, *, done: int = 0, total: int | None = None, **counts: int) -> None:
        """Add `done` to the progress and `counts` (e.g. created_count=3), then checkpoint."""
        run = self.run
        run.progress_done += done
        if total is not None:
            run.progress_total = total
        run.progress_total = max(run.progress_total, run.progress_done)
        for name, value in counts.items():
            if name not in SyncRun.COUNT_FIELDS:
                raise ValueError(f"{name} is not a run count")
            setattr(run, name, getattr(run, name) + value)
        self.checkpoint()

    def api_calls(self) -> dict[str, int]:
        if self.plan is None:
            return dict(self.run.api_calls)
        return {plan.name: plan.provider.http.request_count for plan in self.plan.endpoints}

    def checkpoint(self) -> None:
        run = self.run
        run.heartbeat_at = timezone.now()
        run.api_calls = self.api_calls()
        values = {name: getattr(run, name) for name in SyncRun.COUNT_FIELDS}
        updated = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            heartbeat_at=run.heartbeat_at,
            phase=run.phase,
            progress_done=run.progress_done,
            progress_total=run.progress_total,
            api_calls=run.api_calls,
            **values,
        )
        if not updated:
            raise RunTakenOver(f"Run {run.pk} is no longer running; another run took over.")
        if self.on_progress is not None:
            self.on_progress(run)
