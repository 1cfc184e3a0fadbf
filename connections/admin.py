"""Admin for connections. Credentials are write-only: see `connections.forms`."""
from django.contrib import admin
from django.template.defaultfilters import truncatechars

from connections.forms import ConnectionForm, secret_clear_name, secret_input_name
from connections.models import Connection
from connections.services import SECRET_FIELDS, connection_create, connection_delete, connection_update


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "provider", "base_url", "status", "short_last_error", "updated_at"]
    list_filter = ["provider", "status"]
    search_fields = ["name", "provider", "base_url"]
    readonly_fields = ["last_error", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "base_url", "settings", "default_phone_region"]}),
        (
            "Credentials",
            {
                "description": "Stored encrypted and never shown again. Leave a field empty to keep its value.",
                "fields": [
                    *[(secret_input_name(name), secret_clear_name(name)) for name in SECRET_FIELDS],
                    "token_expires_at",
                    "scopes",
                ],
            },
        ),
        ("Rate budget", {"fields": ["rate_limit_requests", "rate_limit_window_seconds", "max_concurrency",
                                     "rate_budget"]}),
        ("Status", {"fields": ["status", "last_error", "created_at", "updated_at"]}),
    ]

    @admin.display(description="Last error")
    def short_last_error(self, obj: Connection) -> str:
        return truncatechars(obj.last_error, 120)

    def save_model(self, request, obj, form, change):
        if change:
            # Compare with the stored row: the form has already copied its values
            # onto `obj`, which would hide what changed.
            stored = Connection.objects.get(pk=obj.pk)
            connection_update(connection=stored, user=request.user, fields=form.connection_fields())
        else:
            created = connection_create(user=request.user, fields=form.connection_fields())
            # The admin reports and redirects with the form's instance.
            obj.pk = created.pk
            obj._state.adding = False

    def delete_model(self, request, obj):
        connection_delete(connection=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for connection in queryset:
            connection_delete(connection=connection, user=request.user)
