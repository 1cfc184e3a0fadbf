"""Fixtures for the security suite."""
import io
import logging

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Hashing is not under test here, and the role table logs in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def printed(caplog):
    """What the app's console handler prints (from WARNING up), as it prints it."""
    caplog.set_level(logging.WARNING)
    stream = io.StringIO()
    handlers = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    assert handlers, "the console handler of settings.LOGGING is missing"
    previous = [handler.setStream(stream) for handler in handlers]
    yield stream
    for handler, before in zip(handlers, previous, strict=True):
        handler.setStream(before)
