"""Admin for field mappings: edited inline on their sync, or listed on their own."""
from django import forms
from django.contrib import admin

from mappings.models import FieldMapping
from mappings.transforms import TRANSFORMS, transform_spec_errors
from mappings.validation import missing_param_errors
from syncapp.models.hub import HUB_FIELDS
from syncapp.security.admin_input import CheckedInlineMixin
from syncapp.services.syncs import mapping_delete, mapping_save

ATTRIBUTE_PREFIX = "attributes."


class FieldMappingForm(forms.ModelForm):
    class Meta:
        model = FieldMapping
        fields = "__all__"
        widgets = {"transforms": forms.TextInput(attrs={"size": 30})}
        help_texts = {
            "transforms": (
                'A JSON list applied in order, e.g. ["trim", "lowercase"]. Known: ' + ", ".join(TRANSFORMS) + "."
            ),
            "hub_field": "One of " + ", ".join(HUB_FIELDS) + f", or {ATTRIBUTE_PREFIX}<name> for a custom attribute.",
        }

    def clean_hub_field(self):
        hub_field = self.cleaned_data["hub_field"].strip()
        custom = hub_field.removeprefix(ATTRIBUTE_PREFIX)
        if hub_field not in HUB_FIELDS and not (hub_field.startswith(ATTRIBUTE_PREFIX) and custom.isidentifier()):
            raise forms.ValidationError(
                "Unknown hub field. Use one of the listed fields or attributes.<name>.", code="unknown_hub_field"
            )
        return hub_field

    def clean_transforms(self):
        transforms = self.cleaned_data["transforms"]
        # The editor's checks too: a date step without its format saves nowhere.
        errors = transform_spec_errors(transforms) or missing_param_errors(transforms)
        if errors:
            raise forms.ValidationError(errors, code="invalid_transform")
        return transforms


class FieldMappingInline(CheckedInlineMixin, admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    extra = 0
    # Every hub field for each of a few systems, with room for custom attributes.
    max_num = 200
    fields = [
        "connection",
        "external_field",
        "direction",
        "hub_field",
        "transforms",
        "is_owner",
        "conflict_policy",
        "never_overwrite_with_empty",
    ]


@admin.register(FieldMapping)
class FieldMappingAdmin(admin.ModelAdmin):
    form = FieldMappingForm
    list_display = ["sync", "connection", "external_field", "direction", "hub_field", "is_owner", "conflict_policy"]
    list_filter = ["sync", "connection", "direction", "conflict_policy"]
    list_select_related = ["sync", "connection"]
    search_fields = ["hub_field", "external_field"]

    def save_model(self, request, obj, form, change):
        mapping_save(mapping=obj, user=request.user)

    def delete_model(self, request, obj):
        mapping_delete(mapping=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for mapping in queryset:
            mapping_delete(mapping=mapping, user=request.user)
