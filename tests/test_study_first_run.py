"""A zoo model that cannot take the data set's inputs is refused before any work, naming the
models that can, and the run folder is left unclaimed so the rerun needs no --force."""

import os
import subprocess
import sys
from pathlib import Path


def _study(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "effai.cli", "study", "--quick", "--dataset", "digits",
                           "--variants", "fp16", "--out", str(out), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_misfit_model_exits_2_before_claiming_the_folder(tmp_path):
    out = tmp_path / "run"
    bad = _study(out=out)  # the default lenet5 needs >= 12 pixels; digits has 8x8
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "lenet5" in lines[0] and "lenet300_100" in lines[0], bad.stderr
    assert "Traceback" not in bad.stderr and not out.exists()
    good = _study("--model", "lenet300_100", out=out)  # no --force needed
    assert good.returncode == 0, good.stderr
    assert (out / "result.json").exists()
