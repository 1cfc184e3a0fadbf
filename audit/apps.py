from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _ensure_deletion_schedules(sender, apps=global_apps, **kwargs) -> None:
    try:
        apps.get_model("django_q", "Schedule")
    except LookupError:
        # django-q2's tables are not migrated yet (`migrate audit` alone).
        return
    from audit.deletion import deletion_schedules_ensure
    from audit.retention import retention_schedule_ensure

    deletion_schedules_ensure()
    retention_schedule_ensure()


class AuditConfig(AppConfig):
    name = "audit"

    def ready(self) -> None:
        from audit import checks  # noqa: F401 - registers the system checks

        # As syncapp's watchdog: every `migrate` (and a flush) keeps the schedules that
        # retry deletion requests, alert about overdue ones and purge by retention.
        post_migrate.connect(_ensure_deletion_schedules, sender=self, dispatch_uid="audit.ensure_deletion_schedules")
