"""The hostile-input suite writes docs/reliability.md from the cases that ran (see hostile_util)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_util import RECORDS, ROOT, write_table  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def reliability_table():
    """After the session, turn every recorded case into docs/reliability.md (atomically)."""
    yield
    if RECORDS:
        write_table(RECORDS, ROOT / "docs" / "reliability.md")
