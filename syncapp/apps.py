from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs) -> None:
    from syncapp.roles import roles_ensure

    roles_ensure()


class SyncappConfig(AppConfig):
    name = "syncapp"
    verbose_name = "Sync"

    def ready(self) -> None:
        # A flush (transactional tests, `manage.py flush`) empties auth_group too.
        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="syncapp.ensure_roles")
