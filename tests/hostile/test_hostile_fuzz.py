"""The hostile fuzzer (tests/hostile/_fuzz.py) in CI: a fixed set of derandomized hypothesis
mutations of valid checkpoints, ONNX files, YAML configs, IDX / npz / image-folder data and CLI
arguments, each run through the commands that read it, in one process capped at a 2 GiB address
space and a time budget. Property: exit 0, 1 or 2, never a traceback, one line for exit 2, no
allocation past the cap, nothing written outside --out."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from hostile_util import ENV, FUZZ, HERE, record

AS_LIMIT = 2 << 30
BUDGET_S = 150  # the classes stop generating once spent (CI: a 2-core machine)
EXAMPLES = 60  # per class, at most (about 540 inputs; ~100 s on a loaded 2-core machine)


@pytest.mark.slow
def test_fuzz_every_reader(tmp_path):
    summary = tmp_path / "fuzz.json"
    p = subprocess.run([sys.executable, str(HERE / "_fuzz.py"), str(tmp_path / "work"), str(summary), str(BUDGET_S),
                        str(EXAMPLES)], capture_output=True, text=True, env=ENV, timeout=BUDGET_S + 400,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT)))
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads(summary.read_text())
    FUZZ.update(s)
    for kind, c in s["classes"].items():
        codes = ", ".join(f"exit {k}: {v}" for k, v in sorted(c["exit_codes"].items()))
        record(f"fuzzed {kind} ({c['inputs']} mutated inputs)", "tests/hostile/_fuzz.py", None,
               outcome=f"{c['failures']} failures; {codes}")
    detail = "\n\n".join(f"{f['class']}: {f['problem']}: effai {' '.join(f['argv'])}\n{f['stderr']}"
                         for f in s["failed"])
    assert s["failures"] == 0, f"{s['line']}\n\n{detail}"
    assert s["inputs"] >= 7 and set(s["classes"]) == {"checkpoint", "onnx", "npz", "idx", "image folder",
                                                       "yaml config", "cli arguments"}, s["classes"]
