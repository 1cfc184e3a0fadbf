"""The audit app's models: the hash-chained trail, deletion requests and the suppression list."""
from audit.models.deletion import DeletionRequest, DeletionTask
from audit.models.events import AppendOnlyError, AuditChainHead, AuditEvent
from audit.models.suppression import Suppression

__all__ = ["AppendOnlyError", "AuditChainHead", "AuditEvent", "DeletionRequest", "DeletionTask", "Suppression"]
