from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "syncapp.security"
    label = "security"
    verbose_name = "Security"

    def ready(self):
        from django.contrib import admin
        from django.contrib.auth.signals import user_login_failed

        from syncapp.security.forms import ThrottledAdminAuthenticationForm
        from syncapp.security.throttle import login_failed_receiver

        # Every failed authentication counts, whichever page or backend saw it.
        user_login_failed.connect(login_failed_receiver, dispatch_uid="syncapp.security.login_failed")
        # The admin's own login page must refuse locked-out users like the app's does.
        admin.site.login_form = ThrottledAdminAuthenticationForm
