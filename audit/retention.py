"""Retention: what Syncapp keeps about people only as long as the settings say.

- Record errors' messages echo the values a system refused (a name, an address): after
  RETENTION_RECORD_ERROR_DAYS the message is replaced by a note saying so. The error's
  class, severity, system and counts stay: the run's history still reads right.
- Runs' saved cursors (`cursors_before`/`cursors_after`) hold the systems' paging
  positions, which can embed timestamps and ids: after RETENTION_RUN_CURSOR_DAYS they are
  emptied. The cursors a sync reads from next live on its endpoints and are never purged.
- Audit events are never purged or edited here: the trail is the proof, and its hash
  chain must keep verifying (`manage.py verify_audit`). Personal values leave audit rows
  only through an erasure request (audit.services.audit_events_erase), which the chain
  is designed for.

Raw webhook bodies join this list with real-time sync (they do not exist yet).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from syncapp import queue
from syncapp.models import RecordError, SyncRun

RETENTION_TASK = "audit.tasks.retention_purge_task"
RETENTION_SCHEDULE = "audit:retention"
# Purged messages start with this, so a purge never rewrites a row twice.
PURGED_PREFIX = "Message removed after"


@dataclass(frozen=True)
class PurgeResult:
    record_error_messages: int
    run_cursors: int

    def __str__(self) -> str:
        return f"{self.record_error_messages} record error messages and {self.run_cursors} runs' cursors purged"


def retention_purge(*, now: datetime | None = None) -> PurgeResult:
    """Purge what is older than its retention period; return how many rows each purge changed."""
    now = now or timezone.now()
    error_days = settings.RETENTION_RECORD_ERROR_DAYS
    cursor_days = settings.RETENTION_RUN_CURSOR_DAYS
    messages = (
        RecordError.objects.filter(created_at__lt=now - timedelta(days=error_days))
        .exclude(message__startswith=PURGED_PREFIX)
        .update(message=f"{PURGED_PREFIX} {error_days} days (retention).")
    )
    cursors = (
        SyncRun.objects.filter(finished_at__lt=now - timedelta(days=cursor_days))
        .filter(~Q(cursors_before={}) | ~Q(cursors_after={}))
        .update(cursors_before={}, cursors_after={})
    )
    return PurgeResult(record_error_messages=messages, run_cursors=cursors)


def retention_schedule_ensure() -> None:
    """Purge once a day (idempotent, as the other schedules)."""
    queue.schedule_every(name=RETENTION_SCHEDULE, func=RETENTION_TASK, args=(), minutes=24 * 60)
