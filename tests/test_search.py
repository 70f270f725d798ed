"""effai.search: config errors, a small search, resume after SIGKILL, the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effai.errors import InputError

TINY = """\
dataset: digits
n_trials: {n}
population: 4
seed: 0
train:
  epochs: {epochs}
  finetune_epochs: 1
space:
  family: lenet5
  width_mult: {width}
  prune_ratio: {prune}
  bits: {bits}
"""


def write_cfg(tmp: Path, n=3, epochs=2, width="[0.25, 0.5]", prune="[0.0]", bits="[32, 8]") -> Path:
    p = tmp / "search.yaml"
    p.write_text(TINY.format(n=n, epochs=epochs, width=width, prune=prune, bits=bits))
    return p


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize("text, expected", [
    ("n_trials: 3\nspace:\n  family: lenet5\n  widht_mult: [0.5]\n", "search.yaml:4: space.widht_mult: unknown key"),
    ("n_trials: many\n", "search.yaml:1: n_trials: Input should be a valid integer"),
    ("space:\n  prune_ratio: [0.1, half]\n", "search.yaml:2: space.prune_ratio"),
    ("seed: 1\nseed: 2\n", "search.yaml:2: duplicate key 'seed' (first at line 1)"),
    ("objectives: [accuracy, speed]\n", "search.yaml:1: objectives.1"),
    ("constraints:\n  max_ram: lots\n", "search.yaml:2: constraints.max_ram"),
])
def test_config_errors_name_file_line_and_field(tmp_path, text, expected):
    from effai.search import load_config

    p = tmp_path / "search.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_config(p)
    msg = str(e.value).replace(str(p), "search.yaml")
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    p = tmp_path / "search.yaml"
    p.write_text("n_trials: 2\nsampler: grid\n")
    r = subprocess.run([sys.executable, "-m", "effai.cli", "search", "--config", str(p), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and f"{p}:2: sampler" in r.stderr


# ---------------------------------------------------------------- a small search
def test_search_finds_variant_dominating_fp32_base(tmp_path):
    """Few trials: an int8/int4 lenet5 is as accurate as the FP32 base and smaller."""
    from effai.results import dominates
    from effai.search import SearchConfig, run
    from effai.search.trial import evaluate_variant

    cfg = SearchConfig(n_trials=2, population=4, out=str(tmp_path), train={"epochs": 6, "finetune_epochs": 1},
                       space={"width_mult": [1.0], "prune_ratio": [0.0], "bits": [8, 4]})
    result = run(cfg)
    assert len(result.trials) == 2 and result.front
    base = evaluate_variant({"family": "lenet5", "width_mult": 1.0, "resolution_mult": 1.0, "prune_ratio": 0.0,
                             "bits": 32, "layer_bits": None, "kd": False, "qat": False}, cfg)
    winners = [t for t in result.trials if dominates(t.record, base, ["size"])]  # on test accuracy
    assert winners, [(t.name, t.record.accuracy, t.record.size_bytes) for t in result.trials]
    saved = json.loads((tmp_path / "pareto.json").read_text())
    assert saved["n_complete"] == 2 and saved["objectives"] == ["accuracy", "size"]
    assert saved["trials"][0]["record"]["cost"]["size_bytes"] == result.trials[0].record.size_bytes
    page = (tmp_path / "report.html").read_text()
    assert "Search: Pareto front" in page and "<svg" in page


def test_per_layer_bits_constraints_and_initial(tmp_path):
    from effai.search import SearchConfig, run

    cfg = SearchConfig(n_trials=2, out=str(tmp_path), train={"epochs": 1, "finetune_epochs": 1},
                       constraints={"max_flash": "2KB"}, initial=[{"bits": 8}],
                       space={"width_mult": [0.25], "prune_ratio": [0.0], "bits": [8, 4], "per_layer_bits": True})
    result = run(cfg)
    for t in result.trials:
        assert set(t.variant["layer_bits"].values()) <= {8, 4}
        assert t.feasible == (t.record.size_bytes <= 2000)
        assert t.feasible or t.violations[0].startswith("size ")
    assert all(t.feasible for t in result.front)
    assert set(result.trials[0].variant["layer_bits"].values()) == {8}  # the queued start point


# ---------------------------------------------------------------- resume after SIGKILL
def _db_trials(db: Path) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT trial_id, number, state FROM trials ORDER BY trial_id").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def _values(db: Path) -> dict:
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute("SELECT trial_id, objective, value FROM trial_values").fetchall()
    finally:
        con.close()
    out: dict = {}
    for tid, obj, v in rows:
        out.setdefault(tid, {})[obj] = v
    return out


def test_sigkill_mid_search_then_rerun_resumes(tmp_path):
    n = 4
    cfg = write_cfg(tmp_path, n=n, epochs=1, width="[0.25, 0.5, 0.75, 1.0]", bits="[32, 8, 4]")
    out, db = tmp_path / "out", tmp_path / "out" / "search.db"
    cmd = [sys.executable, "-m", "effai.cli", "search", "--config", str(cfg), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 100
    try:
        while time.monotonic() < deadline:
            if db.exists() and sum(s == "COMPLETE" for _, _, s in _db_trials(db)) >= 2:
                break
            assert proc.poll() is None, "search ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no 2 trials completed in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _db_trials(db)
    done_before = {tid for tid, _, s in before if s == "COMPLETE"}
    values_before = {tid: v for tid, v in _values(db).items() if tid in done_before}
    assert len(done_before) >= 2

    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    after = _db_trials(db)
    complete = [tid for tid, _, s in after if s == "COMPLETE"]
    assert len(complete) == n  # n_trials counts COMPLETE trials, none twice
    assert done_before <= set(complete)  # nothing finished before the kill was lost
    assert {tid: v for tid, v in _values(db).items() if tid in done_before} == values_before
    assert not [t for t in after if t[2] == "RUNNING"]
    interrupted = {tid for tid, _, s in before if s == "RUNNING"}
    assert {tid for tid, _, s in after if s == "FAIL"} == interrupted  # stale RUNNING -> FAIL, retried
    saved = json.loads((out / "pareto.json").read_text())
    assert saved["n_complete"] == n and len({t["number"] for t in saved["trials"]}) == n
    assert saved["n_retried"] == len(interrupted)


# ---------------------------------------------------------------- Ray backend
def test_ray_backend_runs_trials_as_tasks(tmp_path):
    pytest.importorskip("ray")
    from effai.search import SearchConfig, run

    cfg = SearchConfig(n_trials=2, out=str(tmp_path), backend="ray", workers=2,
                       train={"epochs": 1, "finetune_epochs": 1},
                       space={"width_mult": [0.25, 0.5], "prune_ratio": [0.0], "bits": [32, 8]})
    result = run(cfg)
    import ray

    assert not ray.is_initialized()  # the local cluster it started is shut down
    assert len(result.trials) == 2 and all(0 <= t.record.val_accuracy <= 1 for t in result.trials)
    assert (tmp_path / "search.db").exists() and (tmp_path / "report.html").exists()


def test_a_trial_killed_after_storing_its_record_is_measured_again():
    """A driver killed between storing a trial's record and telling it leaves a FAIL trial (after
    recovery) that holds a record but no error: it is no measurement to reuse (it used to crash the
    resumed search with a KeyError)."""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from effai.search.run import _measured

    def trial(n, state, **attrs):
        return SimpleNamespace(number=n, state=state, user_attrs={"variant": {"w": n % 2}, **attrs})

    trials = [trial(0, TrialState.COMPLETE, record={"name": "a"}), trial(1, TrialState.FAIL, error="boom"),
              trial(2, TrialState.FAIL, record={"name": "c"}, interrupted=True)]
    study = SimpleNamespace(get_trials=lambda deepcopy, states: [t for t in trials if t.state in states])
    got = _measured(study)
    assert got == {'{"w": 0}': (0, {"ok": True, "record": {"name": "a"}}),
                   '{"w": 1}': (1, {"ok": False, "error": "boom"})}
