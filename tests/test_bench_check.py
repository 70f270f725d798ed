"""`make bench-check` (benchmarks/check.py) catches a table that no longer reproduces: planted
changes to a benchmarked default and to a committed results JSON fail, naming table, row, column."""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import check  # noqa: E402  (benchmarks/check.py)
import common  # noqa: E402  (benchmarks/common.py)


def test_the_committed_hardware_fit_table_reproduces():
    assert check.check_reproduction("hardware_fit") == []


def test_a_changed_fit_default_fails_naming_the_table_and_the_row(monkeypatch):
    from effai.hardware import fit

    dtype, arena, catalogue = fit.__defaults__
    assert arena is None  # the benchmark relies on each target's own runtime arena
    monkeypatch.setattr(fit, "__defaults__", (dtype, 200_000, catalogue))  # planted: 200 kB arena everywhere
    drift = check.check_reproduction("hardware_fit")
    moved = {(d.row, d.column): d for d in drift}
    d = moved[("mobilenet_v1_025_vww", "nano33ble")]
    assert d.table.startswith("hardware_fit (Hardware fit: zoo x targets")
    assert d.committed.startswith("yes") and d.rerun == "no (ram)"
    assert "mobilenet_v1_025_vww" in str(d) and "nano33ble" in str(d)
    assert all(c not in ("params", "MACs") for _, c in moved)  # counts do not depend on the arena


def test_an_edited_results_json_fails_naming_the_row(tmp_path):
    shutil.copy(ROOT / "benchmarks" / "results" / "hardware_fit.json", tmp_path / "hardware_fit.json")
    data = json.loads((tmp_path / "hardware_fit.json").read_text())
    data["reproduce"]["rows"]["lenet5"]["MACs"] = "0.5M"  # the committed number "moved"
    del data["reproduce"]["rows"]["resnet8"]
    (tmp_path / "hardware_fit.json").write_text(json.dumps(data))
    drift = check.check_reproduction("hardware_fit", results=tmp_path)
    assert [(d.row, d.column, d.committed, d.rerun) for d in drift] == [
        ("lenet5", "MACs", "0.5M", "0.4M"), ("resnet8", "(row)", "absent", "present")]


@pytest.mark.slow
def test_a_changed_kd_temperature_default_fails_naming_the_table_and_the_row(monkeypatch):
    from effai.distill import KDConfig

    defaults = KDConfig.__init__.__defaults__
    assert defaults[:2] == (4.0, 0.9)  # temperature, alpha: what the CI setting of the KD benchmark uses
    monkeypatch.setattr(KDConfig.__init__, "__defaults__", (8.0, *defaults[1:]))
    drift = check.check_reproduction("distill")
    assert [(d.row, d.column) for d in drift] == [("student with KD at KDConfig's defaults, seed 0", "test images right")]
    assert drift[0].table.startswith("distill (Knowledge distillation on Fashion-MNIST")


def test_compare_names_setting_changes_before_rows():
    committed = {"setting": {"epochs": 20}, "rows": {"a": {"x": 1}}}
    assert check.compare("t", committed, {"setting": {"epochs": 20}, "rows": {"a": {"x": 1}}}) == []
    [d] = check.compare("t", committed, {"setting": {"epochs": 3}, "rows": {"a": {"x": 2}}})
    assert (d.row, d.committed, d.rerun) == ("(setting)", {"epochs": 20}, {"epochs": 3})


def test_a_table_whose_code_changed_is_marked_stale_with_its_commit():
    prov = {"commit": "a" * 40, "script": "benchmarks/hardware_fit.py", "started": "2026-12-01T08:00:00Z",
            "machine": {"cpu": "AMD EPYC", "cores": 2}, "threads": 1, "loadavg_start": [1.0], "loadavg_end": [1.5],
            "code": {"benchmarks/hardware_fit.py": "0" * 40, "src/effai/hardware/fit.py":
                     common.content_ids(["src/effai/hardware/fit.py"])["src/effai/hardware/fit.py"]}}
    changed = check.changed_code(prov)
    assert changed == ["benchmarks/hardware_fit.py"]  # fit.py's content is what the run recorded
    line = common.provenance_line("hardware_fit", prov, changed)
    assert line.startswith("> Provenance: **stale**") and "commit `aaaaaaa`" in line
    assert "`benchmarks/hardware_fit.py`" in line and "rerun `benchmarks/hardware_fit.py`" in line
    fresh = common.provenance_line("hardware_fit", prov)
    assert "stale" not in fresh and "1 torch thread(s), load 1.0 at the start, 1.5 at the end" in fresh


def test_the_provenance_check_fails_when_a_section_claims_changed_code_is_fresh(tmp_path, monkeypatch):
    prov = {"commit": "b" * 40, "script": "benchmarks/hardware_fit.py", "started": "2026-12-01T08:00:00Z",
            "code": {"benchmarks/hardware_fit.py": "0" * 40}}  # not the script's content: its code changed
    (tmp_path / "demo.json").write_text(json.dumps({"provenance": prov}))
    doc = tmp_path / "benchmarks.md"
    monkeypatch.setattr(check, "DOC", doc)
    monkeypatch.setattr(check, "RESULTS", tmp_path)

    def section(line: str) -> str:
        return f"# Benchmarks\n\n<!-- demo:start -->\n## Demo\n\n| a |\n|---|\n| 1 |\n\n{line}\n<!-- demo:end -->\n"

    doc.write_text(section(common.provenance_line("demo", prov)))
    [d] = check.check_provenance()
    assert (d.table, d.column) == ("demo", "provenance line") and "**stale**" in d.rerun
    earlier = common.provenance_line("demo", prov, ["src/effai/other.py"])  # marked stale before more changed
    doc.write_text(section(earlier))
    assert check.check_provenance() == []
