from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs) -> None:
    from syncapp.roles import roles_ensure

    roles_ensure()


def _ensure_watchdog(sender, apps=global_apps, **kwargs) -> None:
    try:
        apps.get_model("django_q", "Schedule")
    except LookupError:
        # django-q2's tables are not migrated yet (`migrate syncapp` alone).
        return
    from syncapp.services.schedules import watchdog_schedule_ensure

    watchdog_schedule_ensure()


class SyncappConfig(AppConfig):
    name = "syncapp"
    verbose_name = "Sync"

    def ready(self) -> None:
        # A flush (transactional tests, `manage.py flush`) empties auth_group too.
        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="syncapp.ensure_roles")
        # The watchdog's schedule comes with every `migrate`, so every deployment has it
        # and one deleted by hand comes back with the next release; a flush re-creates it
        # too. A data migration would create it once only, and qcluster has no start-up
        # hook to do it from.
        post_migrate.connect(_ensure_watchdog, sender=self, dispatch_uid="syncapp.ensure_watchdog")
