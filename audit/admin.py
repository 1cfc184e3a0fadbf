"""The audit trail in the admin: readable by those allowed, changeable by no one."""
import json

from django.contrib import admin
from django.utils.html import format_html

from audit.models import AuditEvent
from syncapp.admin_filters import ExactSearchMixin, IndexedValuesListFilter, LargeTableAdminMixin
from syncapp.roles import COMPLIANCE, user_has_role


@admin.register(AuditEvent)
class AuditEventAdmin(ExactSearchMixin, LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "action", "actor", "system", "object_type", "object_repr"]
    # Each a range of an index, newest first, however many millions of events: the
    # filters' values by a skip through their index, no date hierarchy (SELECT DISTINCT
    # over every event's date), no full count. Time ranges and people: the trail page.
    list_filter = [("action", IndexedValuesListFilter), ("system", IndexedValuesListFilter),
                   ("object_type", IndexedValuesListFilter)]
    list_select_related = ["actor"]
    search_fields = ["object_id"]
    exact_search_field = "object_id"
    search_help_text = "An object's id, exactly: a contact's, a sync's or a connection's."
    fields = [
        "created_at",
        "action",
        "actor",
        "system",
        "object_type",
        "object_id",
        "object_repr",
        "contact_id",
        "run_id",
        "changes_display",
    ]
    readonly_fields = fields

    @admin.display(description="Changes")
    def changes_display(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True, ensure_ascii=False))

    # Marketers and reviewers may view events, of their own syncs only, on the app's
    # trail page (audit.selectors); the admin lists everything, so it is compliance's.
    def has_view_permission(self, request, obj=None):
        return user_has_role(request.user, COMPLIANCE)

    def has_module_permission(self, request):
        return user_has_role(request.user, COMPLIANCE)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
