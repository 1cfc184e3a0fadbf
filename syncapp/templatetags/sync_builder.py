"""Template helpers for a sync's settings in words (sync page, sync list, dashboard)."""
from django import template

from connections.models import Connection
from syncapp.engine.backfill import backfill_key_split
from syncapp.engine.schedule import schedule_text
from syncapp.forms import DELETE_HANDLING_HELP, NEW_MEMBER_STATUS_HELP, provider_of
from syncapp.models.hub import hub_field_label
from syncapp.services.schedules import sync_next_run

register = template.Library()


@register.filter
def schedule_words(sync) -> str:
    """'Every 15 minutes', 'On the cron schedule 0 6 * * 1-5', 'Off: runs only when started'."""
    return schedule_text(minutes=sync.schedule_minutes, cron=sync.schedule_cron)


@register.filter
def delete_handling_words(sync) -> str:
    """What happens to a person deleted in one system of `sync`."""
    return DELETE_HANDLING_HELP.get(sync.delete_handling, "")


@register.filter
def new_member_status_label(status: str) -> str:
    return NEW_MEMBER_STATUS_HELP[status][0] if status in NEW_MEMBER_STATUS_HELP else status


@register.simple_tag
def next_run_of(sync):
    """When `sync` runs next by its schedule; None when off or paused."""
    return sync_next_run(sync=sync)


@register.filter
def offers_new_member_status(connection) -> bool:
    """Whether the connection's system lets the marketer choose a new member's status."""
    provider = provider_of(connection)
    return bool(provider and provider.new_record_consent_states)


@register.filter
def hub_field_labels(keys) -> str:
    """Backfill keys as a reader knows them ("First name in HubSpot, Company"), for backfill notes."""
    split = [backfill_key_split(key) for key in keys or ()]
    names = dict(Connection.objects.filter(pk__in={pk for _, pk, _ in split if pk}).values_list("pk", "name"))
    ways = {"in": " (read)", "out": " (written)"}
    return ", ".join(
        hub_field_label(field) + (f" in {names.get(pk, 'a removed connection')}{ways.get(way, '')}" if pk else "")
        for field, pk, way in split
    )
