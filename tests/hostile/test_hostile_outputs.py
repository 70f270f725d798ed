"""Hostile output folders: unwritable, holding another study, shared by two runs, a write that fails."""

from __future__ import annotations

import fcntl
import json
import os

import pytest
from hostile_util import record, run_and_record

from effai.errors import InputError


def test_output_folders_via_cli(tmp_path):
    # Root ignores chmod, so "read-only" is made real: the output path lies under a regular FILE,
    # which no user (root included) can create a folder in.
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad = blocker / "sub"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: digits\n")
    search_cfg = tmp_path / "search.yaml"
    search_cfg.write_text("n_trials: 1\n")

    other = tmp_path / "other_study"
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"identity": {"dataset": "mnist5k", "model": "lenet5"}, "key": "x"}))
    results = '{"name": "fp32", "status": "ok", "study_key": "x"}\n'
    (other / "results.jsonl").write_text(results)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "results.jsonl").write_text(results)
    busy = tmp_path / "busy"
    busy.mkdir()

    cases = {
        "output under a regular file → study": ["study", "--dataset", "digits", "--model", "lenet300_100", "--quick", "--out", bad],
        "output under a regular file → train": ["train", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                                                "--out", bad],
        "output under a regular file → compress": ["compress", "lenet5", "--recipe", recipe, "--out", bad],
        "output under a regular file → search": ["search", "--config", search_cfg, "--out", bad],
        "output folder holding another study → study": ["study", "--dataset", "digits", "--model", "lenet300_100",
                                                        "--quick", "--out", other],
        "output folder holding results but no study.json → study": ["study", "--dataset", "digits", "--model", "lenet300_100", "--quick",
                                                                    "--out", orphan],
        "output folder locked by a running study → study": ["study", "--dataset", "digits", "--model", "lenet300_100", "--quick", "--out", busy],
    }
    expect = {
        "output under a regular file → study": (2, "a_file", "not a folder"),
        "output under a regular file → train": (2, "a_file", "not a folder"),
        "output under a regular file → compress": (2, "a_file", "not a folder"),
        "output under a regular file → search": (2, "a_file", "not a folder"),
        "output folder holding another study → study": (2, "other_study", "different study", "--force"),
        "output folder holding results but no study.json → study": (2, "orphan", "--force"),
        "output folder locked by a running study → study": (2, "busy", "another study"),
    }
    with open(busy / ".lock", "a+") as lock:  # another process holds the folder's lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 1 (a study started elsewhere)")
        lock.flush()
        run_and_record(cases, tmp_path, expect)
    # Nothing was overwritten or lost.
    assert (other / "results.jsonl").read_text() == results
    assert (orphan / "results.jsonl").read_text() == results
    assert json.loads((other / "study.json").read_text())["identity"]["dataset"] == "mnist5k"
    assert blocker.read_text() == "not a folder"


def test_write_failing_half_way_keeps_the_old_file(tmp_path, monkeypatch):
    """os.replace or fsync failing mid-write: the previous results file is intact, no temp file is left."""
    from effai import fileio

    target = tmp_path / "result.json"
    fileio.write_json(target, {"variants": ["fp32", "int8_ptq"]})
    before = target.read_text()
    for fn in ("replace", "fsync"):
        def boom(*a, **k):
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(os, fn, boom)
            with pytest.raises(InputError, match="no space left on the device"):  # exit 2, one line
                fileio.write_json(target, {"variants": ["half", "written"]})
        assert target.read_text() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"], "a temp file was left behind"
        record(f"write failing half-way (os.{fn} raises ENOSPC) → effai.fileio.write_json",
               f"write_json('result.json') with os.{fn} failing", "InputError",
               outcome="previous result.json intact, no temp file left", results_lost=0)


def test_append_killed_mid_line_then_resumed(tmp_path):
    """A results.jsonl whose last record was torn by a kill: finished records are kept, the torn one
    is dropped (its variant redone), and the next append starts on a fresh line."""
    from effai.results import VariantRecord
    from effai.study.store import RunDir

    rd = RunDir(tmp_path / "run", {"dataset": "digits"}, key="k")
    with rd:
        rd.append(VariantRecord("fp32"))
        rd.append(VariantRecord("int8_ptq"))
        with open(rd.results, "a", encoding="utf-8") as f:
            f.write('{"schema": 1, "study_key": "k", "record": {"name": "int4", "status": "o')  # killed here
        assert set(rd.finished()) == {"fp32", "int8_ptq"}
        rd.append(VariantRecord("int4"))
        assert list(rd.finished()) == ["fp32", "int8_ptq", "int4"]
    assert len(rd.results.read_text().splitlines()) == 3
    record("results.jsonl torn mid-record, then resumed → effai.study.store.RunDir", "RunDir.append after a torn line",
           "ok", outcome="2 finished records kept, torn record redone once", results_lost=0)


def test_study_api_refuses_a_folder_of_another_study(tmp_path):
    from effai import study

    out = tmp_path / "run"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"identity": {"dataset": "mnist5k"}, "key": "x"}))
    with pytest.raises(InputError) as e:
        study.run(study.StudyConfig(dataset="digits", model="lenet300_100", quick=True, out=str(out)))
    record("output folder holding another study → effai.study.run", "study.run(StudyConfig(out=<other study>))",
           "InputError", outcome=str(e.value))
    assert "different study" in str(e.value)
