"""The hostile-input suite writes docs/reliability.md from the cases that ran (see hostile_util),
but only after a full, passing run of tests/hostile: a partial run (`pytest -k resume tests`,
one file, one node id, -x stopping early) leaves the table as it is."""

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_util import FUZZ, HERE, RECORDS, ROOT, write_table  # noqa: E402

_RAN: set[tuple[str, str]] = set()


def _all_tests() -> set[tuple[str, str]]:
    """(file, test function) of every test in tests/hostile, read from the source."""
    out = set()
    for f in HERE.glob("test_*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        out |= {(f.name, n.name) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return out


def pytest_collection_finish(session):
    for item in session.items:
        if Path(item.path).parent == HERE:
            _RAN.add((Path(item.path).name, getattr(item, "originalname", item.name)))


def pytest_sessionfinish(session, exitstatus):
    if RECORDS and exitstatus == 0 and _RAN >= _all_tests():
        write_table(RECORDS, ROOT / "docs" / "reliability.md")


def pytest_terminal_summary(terminalreporter):
    if FUZZ.get("line"):
        terminalreporter.write_line(FUZZ["line"])
