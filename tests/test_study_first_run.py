"""A zoo model that cannot take the data set's inputs is refused before any work, naming the
models that can, and the run folder is left unclaimed so the rerun needs no --force."""

import os
import subprocess
import sys
from pathlib import Path


def _study(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "effai.cli", "study", "--quick", "--dataset", "digits",
                           "--variants", "fp16", "--epochs", "1", "--threads", "1", "--out", str(out), *args], capture_output=True, text=True,
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
    import json

    config = json.loads((out / "result.json").read_text())["config"]
    assert config["epochs"] == 1 and config["threads"] == 1  # --epochs and --threads reach the study


def test_list_variants_one_line_each():
    from effai.study.variants import VARIANTS

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "effai.cli", "study", "--list-variants"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(VARIANTS)
    assert all(VARIANTS[ln.split()[0]].description in ln for ln in lines)
