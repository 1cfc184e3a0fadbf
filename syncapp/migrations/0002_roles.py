"""Create the Marketer, Reviewer and Compliance groups with their permissions."""
from django.db import migrations

from syncapp.roles import ROLE_MODELS, roles_ensure


def create_roles(apps, schema_editor):
    roles_ensure(apps)


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
