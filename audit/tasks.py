"""Task-queue entry points of the audit app. Each takes ids, and calls a service."""
from __future__ import annotations

from audit.deletion import deletion_alerts_send, deletion_request_complete, deletion_retry_due, deletion_task_execute
from audit.models import DeletionRequest
from audit.retention import retention_purge


def deletion_task_execute_task(task_id: int) -> str:
    """Make an attempt at one system's part of a deletion request (nothing when not due)."""
    task = deletion_task_execute(task_id)
    return task.status if task is not None else "missing"


def deletion_request_complete_task(request_id: int) -> str:
    """Erase the hub's part of a request whose systems have all answered."""
    try:
        return deletion_request_complete(request_id=request_id).status
    except DeletionRequest.DoesNotExist:
        return "missing"


def deletion_retry_due_task() -> str:
    """Every minute: queue the deletion tasks whose retry is due (or whose worker died)."""
    return f"{len(deletion_retry_due())} queued"


def deletion_alerts_task() -> str:
    """Every hour: mail the compliance group about overdue or failing requests (each once a day)."""
    return f"{len(deletion_alerts_send())} requests named"


def retention_purge_task() -> str:
    """Every day: purge what is older than its retention period (audit.retention)."""
    return str(retention_purge())
