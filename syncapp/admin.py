"""Admin for syncs (with endpoints and mappings), runs and record errors.

Saves and deletes go through `syncapp.services.syncs` so each one is audited. Runs and
record errors are written by the engine only, so here they are read-only.
"""
import json

from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.template.defaultfilters import pluralize, truncatechars
from django.urls import reverse
from django.utils.html import format_html

from mappings.admin import FieldMappingInline
from mappings.models import FieldMapping
from syncapp.admin_filters import ExactSearchMixin, IndexedValuesListFilter, LargeTableAdminMixin
from syncapp.models import RecordError, Sync, SyncConnection, SyncRun
from syncapp.security.admin_input import CheckedInlineMixin
from syncapp.services.syncs import (
    endpoint_delete,
    endpoint_save,
    mapping_delete,
    mapping_save,
    sync_delete,
    sync_save,
)

admin.site.site_header = "Syncapp administration"
admin.site.site_title = "Syncapp admin"
admin.site.index_title = "Configuration and history"


def pretty_json(value) -> str:
    """Render JSON data escaped, in a <pre> block."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class ReadOnlyAdminMixin:
    """No one adds, changes or deletes these rows through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SyncConnectionInline(CheckedInlineMixin, admin.TabularInline):
    model = SyncConnection
    extra = 0
    # A sync spans a handful of systems.
    max_num = 20
    fields = ["connection", "read", "write", "new_member_status", "new_member_legal_basis",
              "cursor", "cursor_updated_at"]
    readonly_fields = ["cursor", "cursor_updated_at"]
    verbose_name = "endpoint"
    verbose_name_plural = "endpoints (connections this sync reads and writes)"


@admin.register(Sync)
class SyncAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint_names", "schedule_minutes", "schedule_cron", "paused", "last_run_status"]
    list_filter = ["paused"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "owner", "paused", "paused_reason"]}),
        ("Schedule", {"fields": ["schedule_minutes", "schedule_cron"]}),
        ("Behaviour", {"fields": ["batch_size", "delete_handling", "fix_email_typos"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [SyncConnectionInline, FieldMappingInline]

    def get_queryset(self, request):
        last_run = SyncRun.objects.filter(sync=OuterRef("pk")).order_by("-id").values("status")[:1]
        return (super().get_queryset(request).prefetch_related("endpoints__connection")
                .annotate(last_run_status_value=Subquery(last_run)))

    @admin.display(description="Connections")
    def endpoint_names(self, obj: Sync) -> str:
        return ", ".join(endpoint.connection.name for endpoint in obj.endpoints.all())

    @admin.display(description="Last run")
    def last_run_status(self, obj: Sync) -> str:
        status = obj.last_run_status_value
        return SyncRun.Status(status).label if status else "Never run"

    def save_model(self, request, obj, form, change):
        sync_save(sync=obj, user=request.user)

    def save_formset(self, request, form, formset, change):
        instances = formset.save(commit=False)
        for deleted in formset.deleted_objects:
            if isinstance(deleted, FieldMapping):
                mapping_delete(mapping=deleted, user=request.user)
            else:
                endpoint_delete(endpoint=deleted, user=request.user)
        for instance in instances:
            if isinstance(instance, FieldMapping):
                mapping_save(mapping=instance, user=request.user)
            else:
                endpoint_save(endpoint=instance, user=request.user)

    def delete_model(self, request, obj):
        sync_delete(sync=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for sync in queryset:
            sync_delete(sync=sync, user=request.user)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, LargeTableAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "sync",
        "trigger",
        "status",
        "queued_at",
        "duration",
        "read_count",
        "created_count",
        "updated_count",
        "pushed_count",
        "failed_count",
        "api_call_total",
    ]
    # Each filter a range of an index on (filter, id), newest first; no date hierarchy
    # (SELECT DISTINCT over every run's date) and no full count.
    list_filter = ["status", "trigger", "sync"]
    list_select_related = ["sync"]
    fieldsets = [
        (None, {"fields": ["sync", "trigger", "status", "requested_by", "error", "record_errors_link"]}),
        ("Progress", {"fields": ["phase", "progress_done", "progress_total", "percent"]}),
        ("Counts", {"fields": list(SyncRun.COUNT_FIELDS)}),
        ("API calls", {"fields": ["api_call_total", "api_calls_by_connection"]}),
        ("Timings", {"fields": ["queued_at", "started_at", "heartbeat_at", "finished_at", "duration"]}),
        ("Cursors", {"fields": ["cursors_before_display", "cursors_after_display"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        name for _, options in fieldsets for name in options["fields"]
    ]

    @admin.display(description="Record errors")
    def record_errors_link(self, obj: SyncRun) -> str:
        # A link rather than an inline: a large run can have thousands of errors.
        count = obj.record_errors.count()
        if not count:
            return "None"
        url = reverse("admin:syncapp_recorderror_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{} record error{}</a>', url, count, pluralize(count))

    @admin.display(description="Duration")
    def duration(self, obj: SyncRun) -> str:
        seconds = obj.duration_seconds
        return "" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="API calls")
    def api_call_total(self, obj: SyncRun) -> int:
        return obj.api_call_total

    @admin.display(description="Progress (%)")
    def percent(self, obj: SyncRun) -> int:
        return obj.percent

    @admin.display(description="By connection")
    def api_calls_by_connection(self, obj: SyncRun) -> str:
        return pretty_json(obj.api_calls)

    @admin.display(description="Before")
    def cursors_before_display(self, obj: SyncRun) -> str:
        return pretty_json(obj.cursors_before)

    @admin.display(description="After")
    def cursors_after_display(self, obj: SyncRun) -> str:
        return pretty_json(obj.cursors_after)


@admin.register(RecordError)
class RecordErrorAdmin(ReadOnlyAdminMixin, ExactSearchMixin, LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "run", "connection", "external_id", "severity", "error_class", "short_message",
                    "retriable", "attempts", "resolved"]
    list_filter = ["severity", "retriable", "resolved", ("error_class", IndexedValuesListFilter), "connection",
                   "run__sync"]
    list_select_related = ["run__sync", "connection"]
    search_fields = ["external_id"]
    exact_search_field = "external_id"
    search_help_text = "A record's id in its system, exactly."
    fields = ["run", "connection", "contact", "external_id", "severity", "error_class", "message", "retriable",
              "attempts", "resolved", "created_at"]
    readonly_fields = fields

    @admin.display(description="Message")
    def short_message(self, obj: RecordError) -> str:
        return truncatechars(obj.message, 120)


class SuperuserOnlyAdminMixin:
    """Show a model's admin to superusers only, whatever permissions a group holds."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request, *args):
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


def restrict_task_queue_admin_to_superusers(site: admin.AdminSite) -> None:
    """Re-register django-q2's admin pages (queue, schedules, results) for superusers only.

    They can enqueue arbitrary functions and show task arguments, so no role gets them.
    """
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label != "django_q":
            continue
        site.unregister(model)
        restricted = type(
            f"SuperuserOnly{type(model_admin).__name__}", (SuperuserOnlyAdminMixin, type(model_admin)), {}
        )
        site.register(model, restricted)


restrict_task_queue_admin_to_superusers(admin.site)
