"""Checking that a transaction writes its audit rows last, after every other row it locks.

The audit chain's head is one row that each audit write locks until the commit. A
transaction that took it and then waited for a contact, link or conflict held by one
waiting for the head would deadlock (docs/security.md).
"""
from django.test.utils import CaptureQueriesContext

from audit.models import AuditChainHead, AuditEvent

AUDIT_TABLES = (AuditChainHead._meta.db_table, AuditEvent._meta.db_table)
# Transaction control, which locks nothing.
CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


def statements_after_the_head(queries: CaptureQueriesContext) -> list[str]:
    """Return the statements on tables other than the audit trail's run once the chain's head was taken.

    Fails when the head was never taken: a test of the order must see an audit write.
    """
    statements = [query["sql"] for query in queries.captured_queries]
    taken = next((index for index, sql in enumerate(statements) if AUDIT_TABLES[0] in sql), None)
    assert taken is not None, "no audit row was written"
    return [sql for sql in statements[taken:]
            if not any(table in sql for table in AUDIT_TABLES) and not sql.lstrip().upper().startswith(CONTROL)]
