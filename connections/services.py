"""Creating, changing and deleting connections, each with its audit row."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_event_build, audit_record, audit_record_many, field_values, model_changes
from connections.models import Connection
from connections.validators import validate_public_base_url

# Credentials: written, never read back to a user; the trail only says they changed.
SECRET_FIELDS = ("api_key", "access_token", "refresh_token", "webhook_secret", "client_secret")


def _validate(connection: Connection) -> None:
    # Encrypted fields would try to decrypt the plain value in full_clean; a secret
    # needs no validation beyond being text anyway.
    connection.full_clean(exclude=SECRET_FIELDS)
    try:
        validate_public_base_url(connection.base_url)
    except ValidationError as error:
        raise ValidationError({"base_url": error.messages}) from None


def connection_create(*, user, fields: Mapping[str, Any]) -> Connection:
    """Create a connection from `fields` and audit it (secrets only as "changed")."""
    connection = Connection(**fields)
    _validate(connection)
    with transaction.atomic():
        connection.save()
        values = field_values(connection, fields)
        audit_record(
            action="connection.created",
            obj=connection,
            actor=user,
            changes={name: [None, value] for name, value in values.items() if value not in (None, "")},
        )
    return connection


def connection_update(*, connection: Connection, user, fields: Mapping[str, Any]) -> Connection:
    """Apply `fields` to `connection`, save what changed and audit it.

    A secret absent from `fields` is kept; a secret given as None is cleared.
    """
    before = field_values(connection, fields)
    for name, value in fields.items():
        setattr(connection, name, value)
    _validate(connection)
    changes = model_changes(before, field_values(connection, fields))
    if not changes:
        return connection
    with transaction.atomic():
        connection.save(update_fields=[*changes, "updated_at"])
        audit_record(action="connection.updated", obj=connection, actor=user, changes=changes)
    return connection


def connection_delete(*, connection: Connection, user) -> None:
    """Delete `connection` and audit it; refused while a sync still uses it."""
    # Built while the connection has its id, written after the delete: the links it
    # cascades to are locked first, as a run or a reviewer locks them before auditing.
    event = audit_event_build(
        action="connection.deleted",
        obj=connection,
        actor=user,
        changes={"name": [connection.name, None], "provider": [connection.provider, None]},
    )
    with transaction.atomic():
        connection.delete()
        audit_record_many([event])
