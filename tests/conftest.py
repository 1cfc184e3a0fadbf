"""Fixtures every suite shares: generated keys, the hostile data set, the sandbox process."""
import json
from pathlib import Path

import pytest

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
    """The session's sandbox, emptied, without faults and with zeroed stats for this test."""
    sandbox_process.reset()
    sandbox_process.clear_faults()
    sandbox_process.reset_stats()
    return sandbox_process
