import audit.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    """Index the addresses of email changes, for the trail's person search (audit.people)."""

    dependencies = [
        ("audit", "0003_chain_existing_events"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(audit.expressions.ChangedEmail(0), name="audit_email_before_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(audit.expressions.ChangedEmail(1), name="audit_email_after_idx"),
        ),
    ]
