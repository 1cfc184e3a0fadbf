from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Only here so `manage.py sandbox` is found; the sandbox has no models."""

    name = "sandbox"
