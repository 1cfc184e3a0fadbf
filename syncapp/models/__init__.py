from syncapp.models.hub import Contact, RecordLink
from syncapp.models.runs import RecordError, SyncRun
from syncapp.models.sync import Sync, SyncConnection

__all__ = ["Contact", "RecordLink", "RecordError", "Sync", "SyncConnection", "SyncRun"]
