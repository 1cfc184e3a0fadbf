"""Fixtures for the security suite."""
import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Hashing is not under test here, and the role table logs in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
