"""Helpers of the hostile-input suite (conftest.py writes the table at the end).

Every case records what effai did with it: the command, the exit code, the first stderr line,
whether a traceback was printed, whether a planted payload ran, and how many finished results
were lost. At the end of the session the records become docs/reliability.md (written
atomically), with totals. Paths under pytest's temporary folder are shown as `<tmp>`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200",
       "PYTHONWARNINGS": "ignore"}
RECORDS: list[dict] = []
FUZZ: dict = {}  # the fuzzer's summary (test_hostile_fuzz), for the table's header and the closing line
_TMP = re.compile(r"(/private)?/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s'\"]+")


def _clean(text: str) -> str:
    return _TMP.sub("<tmp>", text)


def first_line(stderr: str) -> str:
    return next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")


def has_traceback(stderr: str) -> bool:
    return "Traceback (most recent call last)" in stderr


def record(case: str, command: str, exit_code: int | None, stderr: str = "", *, payload_executed: bool = False,
           results_lost: int = 0, outcome: str | None = None) -> dict:
    """Add one row to the reliability table (and return it)."""
    rec = {"case": case, "command": _clean(command), "exit_code": exit_code,
           "first_stderr_line": _clean(outcome if outcome is not None else first_line(stderr)),
           "traceback": has_traceback(stderr), "payload_executed": bool(payload_executed),
           "results_lost": int(results_lost)}
    RECORDS.append(rec)
    return rec


def cmd_text(argv) -> str:
    return "effai " + " ".join(os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv)


def cli(argv, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """`python -m effai.cli ARGV` in a subprocess (argv items may be bytes: non-UTF-8 names)."""
    args = [sys.executable, "-m", "effai.cli", *[a if isinstance(a, bytes) else str(a) for a in argv]]
    return subprocess.run(args, capture_output=True, env=ENV, timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)


def cli_batch(cases: dict[str, list], tmp: Path, timeout: float = 600) -> dict[str, dict]:
    """Run many command lines through `effai.cli.main` in one subprocess (one import for all)."""
    names = list(cases)
    spec, res = tmp / "_cases.json", tmp / "_results.json"
    spec.write_text(json.dumps([[str(a) for a in cases[n]] for n in names]))
    p = subprocess.run([sys.executable, str(HERE / "_batch.py"), str(spec), str(res)], capture_output=True,
                       text=True, env=ENV, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(zip(names, json.loads(res.read_text()), strict=True))


def assert_rejected(case: str, r: dict, *must_name: str, code: int = 2) -> None:
    """Exit `code`, no traceback, one stderr line starting 'error:' that names each of `must_name`."""
    err = r["stderr"]
    assert not has_traceback(err), f"{case}: traceback\n{err}"
    assert r["exit_code"] == code, f"{case}: exit {r['exit_code']}, expected {code}\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{case}: expected one stderr line, got {len(lines)}:\n{err}"
    if code == 2:
        assert lines[0].startswith("error: "), f"{case}: {lines[0]}"
    for s in must_name:
        assert s.lower() in lines[0].lower(), f"{case}: {s!r} not named in: {lines[0]}"


def run_and_record(cases: dict[str, list], tmp: Path, expect: dict[str, tuple], markers: dict[str, Path] = ()) -> dict:
    """Batch-run `cases`, record each, then check each against `expect[name] = (code, *must_name)`."""
    results = cli_batch(cases, tmp)
    markers = dict(markers)
    for name, r in results.items():
        m = markers.get(name)
        record(name, cmd_text(cases[name]), r["exit_code"], r["stderr"], payload_executed=bool(m and m.exists()))
    failures = []
    for name, r in results.items():
        code, *names = expect[name]
        try:
            assert_rejected(name, r, *names, code=code) if code else None
            if code == 0:
                assert r["exit_code"] == 0 and not has_traceback(r["stderr"]), f"{name}: {r['stderr']}"
            m = markers.get(name)
            assert not (m and m.exists()), f"{name}: the payload ran"
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)
    return results


def _fuzz_lines() -> list[str]:
    if not FUZZ:
        return []
    classes = ", ".join(f"{k} ({v['inputs']})" for k, v in FUZZ["classes"].items())
    return [f"**Fuzzer: {FUZZ['inputs']} mutated inputs, {FUZZ['failures']} failures**, in {len(FUZZ['classes'])} "
            f"classes: {classes}. Each was run through the commands that read it (`tests/hostile/_fuzz.py`,",
            "hypothesis, derandomized), in one process capped at a 2 GiB address space; the property: exit 0, 1",
            "or 2, never a traceback, one stderr line for exit 2, nothing written outside `--out`.", ""]


def write_table(records: list[dict], path: Path) -> None:
    from effai.fileio import write_atomic

    def cell(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")[:220]

    n = len(records)
    tb = sum(r["traceback"] for r in records)
    pe = sum(r["payload_executed"] for r in records)
    lost = sum(r["results_lost"] for r in records)
    codes: dict = {}
    for r in records:
        codes[r["exit_code"]] = codes.get(r["exit_code"], 0) + 1
    lines = [
        "# Reliability: what effai does with hostile input",
        "",
        "Generated by a full, passing run of `pytest tests/hostile` (do not edit by hand; a partial run leaves",
        "it alone): each row is one case the suite",
        "built in a temporary folder and fed to effai, through the CLI (`python -m effai.cli`, some",
        "batched in one process through the same `effai.cli.main`) or the Python API.",
        "Paths under the test's temporary folder are shown as `<tmp>`.",
        "",
        f"**{n} cases, {tb} tracebacks, {pe} payloads executed, {lost} finished results lost.** "
        "Exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))) + ".",
        "",
        *_fuzz_lines(),
        "## What the trust flag allows",
        "",
        "`--trust-code` (also spelled `--trust-pickle`; on `profile`, `fit`, `compress`, `export`, `train`, `study`",
        "and `deploy`; `effai search --trust-code` for a .py `space.family`) lets the",
        "model file run code. Without it effai loads only tensors (`torch.load(weights_only=True)`), and a file",
        "that carries code is refused with one line before any of it runs. With it:",
        "",
        "- a pickle (`.pt`, a checkpoint's `model.pt`) may construct any Python object, which runs whatever",
        "  function the file names (e.g. `os.system`): a whole pickled `nn.Module`, or a payload;",
        "- a TorchScript file is loaded and its code runs whenever the model runs (profiling, fitting,",
        "  compressing): TorchScript can read and write files (`torch.from_file(..., shared=True)`);",
        "- a .py model (`path/to/file.py:ClassName` as MODEL or `--arch`) is run as Python when it is loaded, and a",
        "  checkpoint of such a model rebuilds it from that file (its `model.json` says `\"code\": true`).",
        "",
        "Nothing else needs the flag: state dicts, checkpoint folders written by `effai train`, ONNX files",
        "(run by ONNX Runtime; external data outside the model's folder is refused) and data files",
        "(`.npz` with `allow_pickle=False`, IDX, images) never run code from the file.",
        "",
        "## Cases",
        "",
        "| case | command | exit | what effai said (first stderr line) | traceback | payload ran | results lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(f"| {cell(r['case'])} | `{cell(r['command'])}` | {r['exit_code']} | {cell(r['first_stderr_line'])} "
                     f"| {'yes' if r['traceback'] else 'no'} | {'YES' if r['payload_executed'] else 'no'} "
                     f"| {r['results_lost']} |")
    lines.append("")
    write_atomic(path, "\n".join(lines))
