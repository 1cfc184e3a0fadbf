"""Fixtures every suite shares: the hostile data set, the sandbox process, the task queue."""
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.models import OrmQ
from django_q.signing import SignedPackage

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def hostile_contacts() -> list[dict]:
    """The shared hostile records (markup, formulas, NULs, bad emails and phones...)."""
    return json.loads((SHARED_DATA / "hostile_contacts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def sandbox_process():
    """One sandbox process for the whole test session, on a free port."""
    from sandbox.launcher import SandboxProcess

    process = SandboxProcess.start()
    yield process
    process.stop()


@pytest.fixture
def sandbox(sandbox_process):
    """The session's sandbox, emptied, without faults and with zeroed stats for this test.

    It is the configured sandbox (`SANDBOX_URL`) for the test: connections to it use
    its OAuth app and approval screens (connections.oauth). Set without pytest-django's
    `settings` fixture, whose name some tests give a parameter.
    """
    sandbox_process.reset()
    sandbox_process.clear_faults()
    sandbox_process.reset_stats()
    with override_settings(SANDBOX_URL=sandbox_process.url):
        yield sandbox_process


@pytest.fixture(autouse=True)
def task_queue_isolated():
    """Give each test an empty task queue, and leave none of its tasks behind.

    With the ORM broker, queued tasks are rows of the test database and go with it;
    Redis (CI's second pass) keeps them, and a later test's worker would pick up tasks
    for runs that no longer exist.
    """
    # Decided from the settings: building the ORM broker would touch the database,
    # which most unit tests may not.
    if not settings.Q_CLUSTER.get("redis"):
        yield
        return
    broker = get_broker()
    broker.purge_queue()
    yield
    broker.purge_queue()


@pytest.fixture
def queued_tasks():
    """Return a function listing the tasks waiting in the broker (ORM or Redis), decoded."""
    broker = get_broker()

    def packages() -> list[str]:
        if isinstance(broker, Redis):
            return [raw.decode() for raw in broker.connection.lrange(broker.list_key, 0, -1)]
        return list(OrmQ.objects.filter(key=broker.list_key).values_list("payload", flat=True))

    return lambda: [SignedPackage.loads(package) for package in packages()]
