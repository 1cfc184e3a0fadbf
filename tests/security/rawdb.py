"""Reading the database as an attacker with a copy of it would: raw rows, no ORM."""
from __future__ import annotations

from collections.abc import Iterator

from django.contrib.sessions.models import Session
from django.db import connection
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage


def _text(value) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def raw_rows() -> Iterator[tuple[str, str, str]]:
    """Yield (table, column, value as text) for every non-null value of every table."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [description[0] for description in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=False):
                    if value is not None:
                        yield table, column, _text(value)


def encoded_rows() -> Iterator[tuple[str, str]]:
    """Yield (where, text) for what is stored encoded: queued tasks, task results, sessions.

    django-q2 stores queued tasks signed and compressed, and finished ones pickled; a
    session is signed JSON. A plain-text scan would miss a secret inside them.
    """
    for queued in OrmQ.objects.all():
        yield f"django_q_ormq {queued.pk}", repr(SignedPackage.loads(queued.payload))
    for task in Task.objects.all():
        yield f"django_q_task {task.pk}", repr((task.func, task.args, task.kwargs, task.result))
    for schedule in Schedule.objects.all():
        yield f"django_q_schedule {schedule.pk}", repr((schedule.func, schedule.args, schedule.kwargs))
    for session in Session.objects.all():
        yield f"django_session {session.pk}", repr(session.get_decoded())
