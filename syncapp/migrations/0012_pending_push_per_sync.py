"""Pending-push marks per sync and link, instead of one flag per link.

A connection can be in several syncs, each with its own mappings: with one flag per
link, a sync could push another's contacts with its own mappings, or settle and clear a
mark another sync still had to act on. Today's marks are carried over to every sync
that writes the link's system (each of them may owe it a push, and a sync with nothing
to send settles its mark without a call); going back, a link is pending when any sync
has it marked. Both in one set-based statement, whatever the number of links.
"""
import django.db.models.deletion
from django.db import migrations, models

MARKS_FROM_FLAGS = """
INSERT INTO syncapp_pendingpush (sync_id, connection_id, link_id)
SELECT endpoint.sync_id, recordlink.connection_id, recordlink.id
FROM syncapp_recordlink recordlink
INNER JOIN syncapp_syncconnection endpoint ON endpoint.connection_id = recordlink.connection_id
WHERE recordlink.pending_push AND endpoint."write"
"""

FLAGS_FROM_MARKS = """
UPDATE syncapp_recordlink SET pending_push = TRUE
WHERE id IN (SELECT link_id FROM syncapp_pendingpush)
"""


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0002_connection_client_secret"),
        ("syncapp", "0011_run_suppressed_count"),
    ]

    operations = [
        migrations.CreateModel(
            name="PendingPush",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("sync", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                           related_name="pending_pushes", to="syncapp.sync")),
                ("connection", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                                 related_name="+", to="connections.connection")),
                ("link", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                           related_name="pending_pushes", to="syncapp.recordlink")),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("sync", "connection", "link"),
                                            name="one_pending_push_per_sync_and_link"),
                ],
            },
        ),
        migrations.RunSQL(MARKS_FROM_FLAGS, FLAGS_FROM_MARKS),
        migrations.RemoveIndex(model_name="recordlink", name="link_pending_push"),
        migrations.RemoveField(model_name="recordlink", name="pending_push"),
    ]
