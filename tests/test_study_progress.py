"""A study whose output is not a terminal prints one timestamped line per variant step while it
runs (read from the log file before the process ends), and an estimate after its first variant."""

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from effai.study import progress

LINE = re.compile(r"^\d\d:\d\d:\d\d \[(\d+)/(\d+)\] (\S+): (.+)$")


def test_lines_when_not_a_terminal():
    buf = io.StringIO()
    shown = progress.reporter(["fp32", "fp16"], enabled=True, stream=buf)
    assert isinstance(shown, progress.Lines)
    with shown:
        shown.step("fp16", "building")
        shown.finished("fp16", "97.00%")
    lines = buf.getvalue().splitlines()
    assert [LINE.match(ln).groups() for ln in lines] == [("2", "2", "fp16", "building"), ("2", "2", "fp16", "done, 97.00%")]
    assert isinstance(progress.reporter(["fp32"], enabled=False), progress.Quiet)


def test_study_log_shows_steps_while_it_runs(tmp_path):
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [sys.executable, "-m", "effai.cli", "study", "--quick", "--dataset", "digits", "--model", "lenet300_100",
           "--variants", "fp16,int8_ptq", "--out", str(tmp_path / "run")]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        seen_while_running: list[str] = []
        try:
            while proc.poll() is None:
                text = log.read_text()
                if "[2/3] fp16: " in text:  # the first variant is done, the study goes on
                    seen_while_running = text.splitlines()
                    break
                time.sleep(0.2)
            assert proc.wait(timeout=300) == 0, log.read_text()
        finally:
            proc.kill()
    assert seen_while_running, "nothing reached the log before the study ended:\n" + log.read_text()
    steps = [m.groups() for ln in log.read_text().splitlines() if (m := LINE.match(ln))]
    fp32 = [what for i, total, name, what in steps if name == "fp32"]
    assert fp32[:5] == ["building", "writing its file", "measuring", "evaluating", "fit on targets"] and fp32[5].startswith("done")
    assert {name for *_, name, _ in steps} == {"fp32", "fp16", "int8_ptq"}
    estimate = [ln for ln in seen_while_running if "estimate: 2 more variants" in ln]
    assert estimate, seen_while_running
