from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "syncapp.security"
    label = "security"
    verbose_name = "Security"

    def ready(self):
        from django.contrib import admin
        from django.contrib.auth.signals import user_login_failed
        from django.db.backends.signals import connection_created

        from syncapp.security import checks  # noqa: F401 - registers the system checks
        from syncapp.security.admin_input import admin_site_refuse_bad_input
        from syncapp.security.forms import ThrottledAdminAuthenticationForm
        from syncapp.security.sqlite_files import database_files_private
        from syncapp.security.throttle import login_failed_receiver

        connection_created.connect(database_files_private, dispatch_uid="syncapp.security.database_files_private")
        # Every failed authentication counts, whichever page or backend saw it.
        user_login_failed.connect(login_failed_receiver, dispatch_uid="syncapp.security.login_failed")
        # The admin's own login page must refuse locked-out users like the app's does.
        admin.site.login_form = ThrottledAdminAuthenticationForm
        # Runs after the admin's autodiscovery (django.contrib.admin is the first app), so
        # every model admin is registered by now.
        admin_site_refuse_bad_input(admin.site)
