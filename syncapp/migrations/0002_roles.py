"""Create the Marketer, Reviewer and Compliance groups with their permissions."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

from syncapp.roles import ROLE_ACTIONS, ROLE_MODELS


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now so the groups
    # can hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, models in ROLE_MODELS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [f"{action}_{model}" for _, model in models for action in ROLE_ACTIONS[role]]
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label__in={app for app, _ in models}, codename__in=codenames
            )
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_MODELS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("syncapp", "0001_initial"),
        ("connections", "0001_initial"),
        ("mappings", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
