"""The documentation works as written: the site builds with --strict, every example script
runs, and every code block in the README and the guides runs.

Guides run like notebooks: the ```python blocks of one page share a namespace and run in
order, and each ```bash line that starts with `effai ` (or `.venv/bin/effai `) runs through
the real CLI entry point, `effai.cli.main`, in this process (the interpreter and torch are
already loaded; a fresh process per command would cost seconds of start-up each). A line
may end with `# exit 1` when the guide shows a failing check. A block preceded by
`<!-- skip: reason -->` is not run (multi-machine commands only). All pages run in one
shared folder, in the order of the site's navigation, so a later page may reuse what an
earlier one trained (each page also recreates what it needs when run alone).

Examples run with EFFAI_EXAMPLE_QUICK=1, which each script reads to shrink its settings.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ROOT / "docs" / "guides"
EXAMPLES = ROOT / "examples"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
SKIP = re.compile(r"<!--\s*skip:\s*(.+?)\s*-->\s*$")


def code_blocks(text: str) -> list[tuple[str, str, int, str | None]]:
    """(language, code, line number, skip reason) of every top-level fenced block."""
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        prev = before[-1].strip() if before else ""
        skip = SKIP.match(prev)
        out.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, skip.group(1) if skip else None))
    return out


def cli_lines(code: str) -> list[tuple[list[str], int]]:
    """The effai command lines of a bash block as (argv, expected exit code)."""
    cmds = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.strip()
        for prefix in ("effai ", ".venv/bin/effai "):
            if line.startswith(prefix):
                expected = re.search(r"#\s*exit (\d+)", line)
                argv = shlex.split(line[len(prefix):], comments=True)
                cmds.append((argv, int(expected.group(1)) if expected else 0))
    return cmds


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run `effai ARGV` through the console-script entry point; (exit code, stdout, stderr).
    A trailing `> FILE` writes stdout to FILE, as the shell would."""
    from effai import cli

    target = None
    if len(argv) >= 2 and argv[-2] == ">":
        argv, target = argv[:-2], argv[-1]
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["effai", *argv]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    if target:
        Path(target).write_text(out.getvalue())
    return code, out.getvalue(), err.getvalue()


def run_page(path: Path, env: dict | None = None) -> None:
    ns: dict = {"__name__": "__main__"}
    for lang, code, line, skip in code_blocks(path.read_text()):
        if skip:
            continue
        where = f"{path.relative_to(ROOT)}:{line}"
        if lang == "python":
            exec(compile(code, where, "exec"), ns)  # noqa: S102 - the guide's own code
        elif lang == "bash":
            for argv, expected in cli_lines(code):
                rc, out, err = run_cli(argv)
                assert rc == expected, (f"{where}: effai {shlex.join(argv)} exited {rc} (expected {expected})\n"
                                        f"{out[-2000:]}\n{err[-2000:]}")


def nav_pages() -> list[str]:
    import yaml

    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages: list[str] = []

    def walk(items):
        for it in items:
            v = next(iter(it.values())) if isinstance(it, dict) else it
            if isinstance(v, list):
                walk(v)
            else:
                pages.append(v)

    walk(cfg["nav"])
    return pages


GUIDE_FILES = [p for p in (GUIDES / n.split("/", 1)[1] for n in nav_pages() if n.startswith("guides/"))]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder shared by the README and every guide (cwd while they run)."""
    d = tmp_path_factory.mktemp("guides")
    old = Path.cwd()
    os.chdir(d)
    try:
        yield d
    finally:
        os.chdir(old)


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0] == "# effai"
    start = lines.index("```bash")
    block = lines[start + 1: lines.index("```", start + 1)]
    assert [b.split("#")[0].strip() for b in block] == ["make demo", "make test"]


def test_every_guide_is_in_the_nav_and_has_an_example():
    listed = {p.name for p in GUIDE_FILES}
    assert listed == {p.name for p in GUIDES.glob("*.md")}, "every docs/guides page belongs in mkdocs.yml's nav"
    for page in GUIDE_FILES:
        text = page.read_text()
        assert text.startswith("# "), page
        for ex in re.findall(r"`(examples/[\w.]+\.py)`", text):
            assert (ROOT / ex).exists(), f"{page.name} names {ex}, which does not exist"


def test_readme(workdir):
    run_page(ROOT / "README.md")


@pytest.mark.parametrize("page", GUIDE_FILES, ids=lambda p: p.stem)
def test_guide_code_runs(page, workdir):
    run_page(page)


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_example_runs(script, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFAI_EXAMPLE_QUICK", "1")
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path(str(script), run_name="__main__")


def test_site_builds_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "profile" / "index.html").exists()
