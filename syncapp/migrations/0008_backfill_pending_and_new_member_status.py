"""Backfills that wait for the run under way; new-member statuses carried over from Mailchimp connections.

Mailchimp's connection setting `status_if_new` used to give every new member its status
when the hub did not know the person's consent ("subscribed" when unset). The status is
now chosen per sync, with a legal basis: a connection that set one explicitly keeps it
on the syncs that write to it; the others are left unchosen, and their members are not
created until a marketer chooses (never silently subscribed).
"""
from django.db import migrations, models

CARRIED_OVER = "Carried over from the connection's status_if_new setting"
# What a marketer may choose for Mailchimp (MailchimpProvider.new_record_consent_states).
CHOOSABLE = ("pending", "transactional", "subscribed")


def carry_status_if_new(apps, schema_editor):
    Connection = apps.get_model("connections", "Connection")
    SyncConnection = apps.get_model("syncapp", "SyncConnection")
    for connection in Connection.objects.filter(provider="mailchimp"):
        settings = connection.settings if isinstance(connection.settings, dict) else {}
        status = settings.get("status_if_new")
        if status not in CHOOSABLE:
            continue
        SyncConnection.objects.filter(connection=connection, write=True, new_member_status="").update(
            new_member_status=status, new_member_legal_basis=CARRIED_OVER)


def forget_carried_status(apps, schema_editor):
    SyncConnection = apps.get_model("syncapp", "SyncConnection")
    SyncConnection.objects.filter(new_member_legal_basis=CARRIED_OVER).update(
        new_member_status="", new_member_legal_basis="")


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0002_connection_client_secret"),
        ("syncapp", "0007_builder_schedule_drift_warnings"),
    ]

    operations = [
        migrations.AddField(
            model_name="sync",
            name="backfill_pending_fields",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(carry_status_if_new, forget_carried_status),
    ]
