from django.db import migrations


class Migration(migrations.Migration):
    """Let the first-name and last-name mappings of a full name target the same field.

    The rule (only two full_name mappings, one per part, may share an external field)
    depends on the transforms JSON, so it is checked in validation and in the run's
    plan rather than by a constraint (see FieldMapping.Meta).
    """

    dependencies = [
        ("mappings", "0002_field_catalog_external_type"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="fieldmapping",
            name="one_mapping_per_external_field",
        ),
    ]
