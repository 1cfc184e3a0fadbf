"""A pytest plugin loaded before Django starts: generates this session's keys.

Keys are made per test session and never committed; subprocesses the tests start (the
worker, runsync) inherit them through the environment.
"""
import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("SALT_KEY", secrets.token_urlsafe(16))

# Under pytest-xdist each worker is a test session of its own. pytest-django gives it its
# own database (the name with a `_gw0` suffix); here it gets its own cache directory or
# Redis database as well, so that the rate budgets and the task queue of one worker's
# tests never meet another's (connection and run ids repeat across the databases). The
# worker, runsync and sandbox processes its tests start inherit them through the
# environment.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    from pathlib import Path
    from urllib.parse import urlsplit, urlunsplit

    _number = int(_worker.removeprefix("gw"))
    if os.environ.get("REDIS_URL"):
        _redis = urlsplit(os.environ["REDIS_URL"])
        _base = int(_redis.path.strip("/") or 0)
        os.environ["REDIS_URL"] = urlunsplit(_redis._replace(path=f"/{_base + 1 + _number}"))
    _cache = os.environ.get("CACHE_DIR") or str(Path(__file__).resolve().parent.parent / "var" / "cache")
    os.environ["CACHE_DIR"] = f"{_cache}_{_worker}"
