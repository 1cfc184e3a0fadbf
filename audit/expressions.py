"""SQL expressions over audit events, shared by the trail's indexes and the queries that use them."""
from __future__ import annotations

from django.db.models import CharField, F, Func


class ChangedEmail(Func):
    """The address at `position` (0: before, 1: after) of an event's `"email": [old, new]` change.

    Written out with its JSON path inline rather than through Django's key transforms,
    which pass the path as a query parameter: an index over an expression is only used
    by a query that spells the same expression, and a parameter never matches a constant.
    NULL when the event changed no email.
    """

    output_field = CharField()

    def __init__(self, position: int):
        if position not in (0, 1):
            raise ValueError("an email change has two positions: 0 (before) and 1 (after)")
        self.position = position
        super().__init__(F("changes"))

    def as_sql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"JSON_EXTRACT({column}, '$.email[{self.position:d}]')", params

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"({column} -> 'email' ->> {self.position:d})", params
