"""New-member statuses carried over by 0008 with a legal basis nobody recorded are unchosen again.

0008 gave the syncs writing to a Mailchimp connection that set `status_if_new` that
status, with the text CARRIED_OVER as its legal basis. No person recorded that basis:
a subscription needs one a marketer chose. Those endpoints lose the status and the
text; their members whose consent the hub does not know are not created until a
marketer chooses a status in the sync builder (the consent-safe default).

Not audited here: audit events are hash-chained (audit 0002), and the chain is
extended by audit.chain, which a migration's historical models cannot call; an event
written around it would read as tampering.
"""
from django.db import migrations

# The text 0008 wrote (0008_backfill_pending_and_new_member_status.CARRIED_OVER), kept
# here as it was: a migration must not depend on another's module.
CARRIED_OVER = "Carried over from the connection's status_if_new setting"


def forget_invented_legal_basis(apps, schema_editor):
    SyncConnection = apps.get_model("syncapp", "SyncConnection")
    SyncConnection.objects.filter(new_member_legal_basis=CARRIED_OVER).update(
        new_member_status="", new_member_legal_basis="")


class Migration(migrations.Migration):

    dependencies = [
        ("syncapp", "0009_run_backfill_taken"),
    ]

    operations = [
        # Not reversed: putting back a legal basis nobody recorded is what this undoes.
        migrations.RunPython(forget_invented_legal_basis, migrations.RunPython.noop),
    ]
