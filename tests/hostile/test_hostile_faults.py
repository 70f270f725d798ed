"""SIGINT and SIGKILL during `effai study` and `effai search`, then a rerun: every result finished
before the signal is present exactly once and unchanged; the interrupted one is redone."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from hostile_util import ENV, ROOT, cmd_text, has_traceback, record


def _popen(argv):
    # A shell's background job starts with SIGINT ignored, and Python then installs no Ctrl-C
    # handler: restore the default so the signal reaches effai as it would from a terminal.
    return subprocess.Popen([sys.executable, "-m", "effai.cli", *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_when(proc, ready, sig, limit=240.0) -> str:
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            if ready():
                break
            if proc.poll() is not None:
                raise AssertionError(f"finished before the signal: {proc.stderr.read()[-2000:]}")
            time.sleep(0.1)
        else:
            raise AssertionError("not ready in time")
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _study_records(path: Path) -> list:
    """The finished records of results.jsonl (a torn last line skipped), read by effai.results."""
    from effai.results import VariantRecord
    from effai.results.serial import unversioned

    if not path.exists():
        return []
    out = []
    for ln in path.read_text().splitlines():
        try:
            out.append(VariantRecord.from_dict(unversioned(json.loads(ln), str(path))["record"]))
        except json.JSONDecodeError:
            pass
    return [r for r in out if r.ok]


def test_study_sigint_then_sigkill_then_resume(tmp_path):
    out = tmp_path / "study"
    res = out / "results.jsonl"
    argv = ["study", "--dataset", "digits", "--model", "lenet300_100", "--quick",
            "--variants", "int8_ptq,fp16", "--out", out]
    code, err = _interrupt_when(_popen(argv), lambda: len(_study_records(res)) >= 1, signal.SIGINT)
    after_int = {r.name: r for r in _study_records(res)}
    record("SIGINT during study", cmd_text(argv) + "  (Ctrl-C after 1 variant)", code, err,
           results_lost=0)
    assert not has_traceback(err), err
    assert code == 130 and "rerun the same command to resume" in err, (code, err)
    assert after_int

    n = len(after_int)
    _, err = _interrupt_when(_popen(argv), lambda: len(_study_records(res)) > n, signal.SIGKILL)
    after_kill = {r.name: r for r in _study_records(res)}
    assert set(after_int) <= set(after_kill)

    r = subprocess.run([sys.executable, "-m", "effai.cli", *map(str, argv), "--json"], capture_output=True, text=True,
                       env=ENV, cwd=ROOT, timeout=300)
    final = _study_records(res)
    names = [x.name for x in final]
    lost = sum(1 for k, v in after_kill.items() if sum(x == k for x in names) != 1
               or v != next(x for x in final if x.name == k))
    record("SIGKILL during study, then rerun", cmd_text(argv) + "  (kill -9 mid-variant, rerun)", r.returncode,
           r.stderr, results_lost=lost, outcome=f"{len(after_kill)} finished before the kill kept, "
           f"{len(set(names)) - len(after_kill)} redone; {len(names)} records for {len(set(names))} variants")
    assert r.returncode == 0 and not has_traceback(r.stderr), r.stderr
    assert sorted(names) == sorted({"fp32", "int8_ptq", "fp16"}), names  # each once, none half-recorded
    assert lost == 0
    assert [v["name"] for v in json.loads(r.stdout)["variants"]] == ["fp32", "int8_ptq", "fp16"]


SEARCH = """\
dataset: digits
n_trials: 3
seed: 0
train:
  epochs: 1
  finetune_epochs: 1
space:
  family: lenet5
  width_mult: [0.25, 0.5]
  prune_ratio: [0.0]
  bits: [32, 8]
"""


def _trials(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT t.trial_id, t.state, v.value FROM trials t LEFT JOIN trial_values v "
                           "ON t.trial_id = v.trial_id AND v.objective = 0 ORDER BY t.trial_id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _complete(db: Path) -> dict:
    return {tid: v for tid, s, v in _trials(db) if s == "COMPLETE"}


def test_search_sigint_then_sigkill_then_resume(tmp_path):
    cfg = tmp_path / "search.yaml"
    cfg.write_text(SEARCH)
    out, db = tmp_path / "search", tmp_path / "search" / "search.db"
    argv = ["search", "--config", cfg, "--out", out]
    code, err = _interrupt_when(_popen(argv), lambda: len(_complete(db)) >= 1, signal.SIGINT)
    done1 = _complete(db)
    record("SIGINT during search", cmd_text(argv) + "  (Ctrl-C after 1 trial)", code, err)
    assert not has_traceback(err), err
    assert code == 130 and "rerun the same command to resume" in err, (code, err)

    _, err = _interrupt_when(_popen(argv), lambda: len(_complete(db)) > len(done1), signal.SIGKILL)
    done2 = _complete(db)
    assert done1.items() <= done2.items()

    r = subprocess.run([sys.executable, "-m", "effai.cli", *map(str, argv), "--json"], capture_output=True, text=True,
                       env=ENV, cwd=ROOT, timeout=300)
    final = _complete(db)
    lost = sum(1 for tid, v in done2.items() if final.get(tid) != v)
    states = [s for _, s, _ in _trials(db)]
    record("SIGKILL during search, then rerun", cmd_text(argv) + "  (kill -9 mid-trial, rerun)", r.returncode,
           r.stderr, results_lost=lost, outcome=f"{len(done2)} finished trials kept, {len(final) - len(done2)} run "
           f"after; {states.count('FAIL')} interrupted trial(s) marked FAIL and retried")
    assert r.returncode == 0 and not has_traceback(r.stderr), r.stderr
    assert lost == 0 and len(final) == 3 and "RUNNING" not in states
    saved = json.loads((out / "pareto.json").read_text())
    assert saved["n_complete"] == 3


def test_study_sigterm_says_how_to_resume(tmp_path):
    """`kill PID` (SIGTERM) stops a study as Ctrl-C does: exit 143 and one line saying how to resume."""
    out = tmp_path / "study"
    res = out / "results.jsonl"
    argv = ["study", "--dataset", "digits", "--model", "lenet300_100", "--quick", "--variants", "int8_ptq,fp16",
            "--out", out]
    code, err = _interrupt_when(_popen(argv), lambda: len(_study_records(res)) >= 1, signal.SIGTERM)
    record("SIGTERM during study", cmd_text(argv) + "  (kill PID after 1 variant)", code, err)
    assert not has_traceback(err), err
    assert code == 143 and "stopped by SIGTERM" in err and "rerun the same command to resume" in err, (code, err)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert _study_records(res)
