"""Run syncs in the foreground, with a progress bar, and report what each run did."""
from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from syncapp.models import Sync, SyncRun
from syncapp.services.runs import SyncPaused, run_execute, run_interrupt, run_request

BAR_WIDTH = 30
# Redraw the bar at most this often: a run reports every page.
REDRAW_SECONDS = 0.1


class Command(BaseCommand):
    help = (
        "Run syncs now, in this process, showing progress, then print counts, API calls per "
        "connection and duration. Exit status: 0 when every run succeeded or ended partial "
        "(some records refused, listed as record errors; the rest synced); 1 when a run failed, "
        "or could not start (unknown name, paused sync, another run of it under way); with "
        "--fail-on-partial, a partial run exits 1 as well; 130 when interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="Names of the syncs to run.")
        parser.add_argument("--all", action="store_true", help="Run every sync that is not paused.")
        parser.add_argument("--fail-on-partial", action="store_true",
                            help="Exit 1 when a run ends partial (with record errors).")
        parser.add_argument("--full", action="store_true",
                            help="Read every record of every system again instead of the changes (a full resync); "
                                 "only the records whose values differ are written.")

    def handle(self, *args, names: list[str], all: bool, fail_on_partial: bool, full: bool = False, **options):
        if all == bool(names):
            raise CommandError("Name the syncs to run, or pass --all (not both).")
        syncs = list(Sync.objects.filter(paused=False)) if all else self._named(names)
        if not syncs:
            self.stdout.write("No sync to run.")
            return
        ok = True
        for sync in syncs:
            run = self._run(sync, full=full)
            ok &= run is not None and (
                run.status == SyncRun.Status.SUCCEEDED
                or (run.status == SyncRun.Status.PARTIAL and not fail_on_partial)
            )
        if not ok:
            sys.exit(1)

    def _named(self, names: list[str]) -> list[Sync]:
        syncs = {sync.name: sync for sync in Sync.objects.filter(name__in=names)}
        missing = [name for name in names if name not in syncs]
        if missing:
            known = ", ".join(Sync.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No sync named {', '.join(map(repr, missing))}. Known syncs: {known}.")
        return [syncs[name] for name in names]

    def _run(self, sync: Sync, *, full: bool = False) -> SyncRun | None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"{sync.name}" + (" (full resync)" if full else "")))
        try:
            run, created = run_request(sync=sync, trigger=SyncRun.Trigger.FULL if full else SyncRun.Trigger.COMMAND,
                                       enqueue=False, full_read=full)
        except SyncPaused as error:
            self.stderr.write(str(error))
            return None
        if not created and run.status == SyncRun.Status.RUNNING:
            self.stderr.write(f"Run #{run.pk} of {sync.name!r} is already under way; not starting another.")
            return None
        if not created and full and not run.full_read:
            # Executing the queued run here would read only the changes.
            self.stderr.write(f"Run #{run.pk} of {sync.name!r} is queued already and reads only the changes; "
                              "ask for the full resync again once it has run.")
            return None
        bar = _ProgressBar(self.stdout)
        try:
            run = run_execute(run_id=run.pk, on_progress=bar.update)
        except KeyboardInterrupt:
            bar.finish()
            run_interrupt(run_id=run.pk, reason="stopped from the terminal (Ctrl-C).")
            self.stderr.write(f"Run #{run.pk} interrupted; the next run resumes from its last checkpoint.")
            sys.exit(130)
        bar.finish()
        self._report(run)
        return run

    def _report(self, run: SyncRun) -> None:
        style = {
            SyncRun.Status.SUCCEEDED: self.style.SUCCESS,
            SyncRun.Status.PARTIAL: self.style.WARNING,
        }.get(run.status, self.style.ERROR)
        self.stdout.write(style(f"Run #{run.pk}: {run.get_status_display()}"))
        self.stdout.write(
            f"  read {run.read_count}, created {run.created_count}, updated {run.updated_count}, "
            f"unchanged {run.unchanged_count}, pushed {run.pushed_count}, conflicts {run.conflict_count}, "
            f"record errors {run.failed_count}, warnings {run.warning_count}"
        )
        calls = ", ".join(f"{name} {count}" for name, count in sorted(run.api_calls.items())) or "none"
        self.stdout.write(f"  API calls: {calls} ({run.api_call_total} in all)")
        if run.duration_seconds is not None:
            self.stdout.write(f"  duration: {run.duration_seconds:.1f} s")
        if run.error:
            self.stdout.write(self.style.ERROR(f"  error: {run.error}"))
        if run.failed_count or run.warning_count:
            self.stdout.write("  the record errors and warnings are listed on the run's page.")


class _ProgressBar:
    """A one-line bar on a terminal; one line per phase when output is not a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.interactive = stream.isatty()
        self.phase = None
        self.drawn_at = 0.0
        self.drawn = False

    def update(self, run: SyncRun) -> None:
        if not self.interactive:
            if run.phase != self.phase:
                self.phase = run.phase
                self.stream.write(f"  {run.phase}")
            return
        now = time.monotonic()
        if run.phase == self.phase and now - self.drawn_at < REDRAW_SECONDS:
            return
        self.phase, self.drawn_at = run.phase, now
        done, total = run.progress_done, run.progress_total
        filled = BAR_WIDTH * run.percent // 100
        counter = f"{done}/{total}" if total else ""
        line = f"\r  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {counter:>15}  {run.phase[:40]:<40}"
        self.stream.write(line, ending="")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("")
            self.drawn = False
