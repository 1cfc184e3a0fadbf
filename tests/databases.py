"""The test database as a DATABASE_URL, for manage.py subprocesses that must share it."""
from pathlib import Path
from urllib.parse import quote


def database_url(settings_dict: dict) -> str:
    """Return a DATABASE_URL naming the database described by `settings_dict`."""
    engine, name = settings_dict["ENGINE"], settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{Path(name).resolve()}"
    if engine.endswith("postgresql"):
        credentials = quote(settings_dict["USER"] or "", safe="")
        if settings_dict["PASSWORD"]:
            credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict["HOST"] or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
        return f"postgres://{credentials}@{host}{port}/{name}"
    raise ValueError(f"no DATABASE_URL form for {engine}")


def test_database_url() -> str:
    """Return the DATABASE_URL of the database this test session runs on."""
    from django.db import connection

    return database_url(connection.settings_dict)


test_database_url.__test__ = False  # a helper, not a test
