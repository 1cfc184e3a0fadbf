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
