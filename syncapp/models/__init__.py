from syncapp.models.consent import ConsentEvent
from syncapp.models.hub import Contact, PendingPush, RecordLink
from syncapp.models.review import Conflict, DuplicatePair
from syncapp.models.runs import RecordError, SyncRun
from syncapp.models.sync import Sync, SyncConnection

__all__ = [
    "ConsentEvent", "Conflict", "Contact", "DuplicatePair", "PendingPush", "RecordLink", "RecordError", "Sync",
    "SyncConnection", "SyncRun",
]
