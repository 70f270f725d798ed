"""effai.results: records round-trip through JSON, files of another schema are refused in one
line, one value prints the same in the study report, the search report and the CLI, and a
study resumed in the same folder still knows its base model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from effai.errors import InputError
from effai.results import (
    BaseModelInfo,
    Cost,
    Energy,
    Latency,
    StudyResult,
    TargetFit,
    VariantRecord,
    fmt_bytes,
    fmt_joules,
    fmt_ms,
    parse_bytes,
    parse_ms,
    select,
)
from effai.results.serial import SCHEMA_VERSION, unversioned, versioned

RECORD = VariantRecord(
    "int8_ptq", family="quantization", accuracy=0.9812, val_accuracy=0.975, dtype="int8", bits=8,
    cost=Cost(size_bytes=64_512, size_format="int8 weights + fp32 scales", params=61_706, macs=416_520,
              peak_activation_bytes=9_408,
              latency=Latency(0.04213, p90_ms=0.05, runtime="onnxruntime", graph="int8 graph", threads=1,
                              repeats=50, load_avg=1.5, contended=False, how="onnxruntime, int8 graph, 1 thread(s)"),
              energy=Energy(1.234e-6, "estimated", "Horowitz 45 nm")),
    targets={"nano33ble": TargetFit(fits=True, reason="fits", dtype="int8", latency_ms=12.5)},
    notes=("a note",), details={"stages": [1, 2]},
)


def test_record_round_trips_through_json():
    d = json.loads(json.dumps(RECORD.to_dict()))
    assert VariantRecord.from_dict(d) == RECORD
    assert d["cost"]["latency"]["contended"] is False and d["cost"]["energy"]["method"] == "estimated"


def test_a_field_added_later_reads_old_records():
    """Fields added with a default (the way to grow a record) leave old dicts readable."""
    d = RECORD.to_dict()
    del d["val_accuracy"], d["cost"]["latency"]["load_avg"]
    back = VariantRecord.from_dict(d)
    assert back.val_accuracy is None and back.cost.latency.load_avg is None and back.size_bytes == 64_512


@pytest.mark.parametrize("change, where", [
    (lambda d: d.update(size_bytes=5), "size_bytes: Unexpected keyword argument"),  # the old flat shape
    (lambda d: d["cost"].update(size_bytes="big"), "cost.size_bytes"),
    (lambda d: d.update(status="maybe"), "status"),
])
def test_a_record_that_does_not_fit_is_refused_naming_the_field(change, where):
    d = RECORD.to_dict()
    change(d)
    with pytest.raises(InputError, match=re.escape(where)) as e:
        VariantRecord.from_dict(d, "results.jsonl line 1")
    assert str(e.value).startswith("results.jsonl line 1: ") and "\n" not in str(e.value)


def test_schema_version_is_checked():
    assert unversioned(versioned({"a": 1}), "f") == {"a": 1}
    with pytest.raises(InputError, match="no schema version"):
        unversioned({"name": "fp32", "status": "ok"}, "f")
    with pytest.raises(InputError, match="newer than this effai"):
        unversioned({"schema": SCHEMA_VERSION + 1}, "f")


def test_an_old_results_file_is_refused_in_one_line(tmp_path):
    """A run folder written before the records (flat dict lines) is refused, not half-read."""
    from effai.study import StudyConfig
    from effai.study.store import RunDir

    cfg = StudyConfig(dataset="digits", model="lenet300_100", quick=True, out=str(tmp_path))
    with RunDir(tmp_path, cfg.identity(), cfg.key()):
        pass  # writes study.json as a real run would
    (tmp_path / "results.jsonl").write_text(json.dumps({"name": "fp32", "status": "ok", "study_key": cfg.key(),
                                                         "accuracy": 0.9, "size_bytes": 1}) + "\n")
    p = subprocess.run([sys.executable, "-m", "effai.cli", "study", "--dataset", "digits", "--model", "lenet300_100",
                        "--quick", "--variants", "fp32", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "results.jsonl line 1: no schema version" in p.stderr


def test_a_search_storage_of_an_older_effai_is_refused():
    """Trials stored before the records (metrics dicts) are refused in one line, not half-read."""
    from types import SimpleNamespace

    from effai.search.run import _record

    old = SimpleNamespace(number=3, values=[0.9, 100.0], user_attrs={"metrics": {"size": 100}, "variant": {}})
    with pytest.raises(InputError, match="sqlite:///x.db: trial 3 was written by an effai before results schema 1"):
        _record(old, "sqlite:///x.db")


def test_units_parse_and_print_one_way():
    assert parse_bytes("250KB") == parse_bytes("250kb") == parse_bytes(250_000) == 250_000
    assert parse_ms("800us") == parse_ms("0.8") == parse_ms(0.8)
    assert (fmt_bytes(64_512), fmt_ms(0.04213), fmt_joules(1.234e-6)) == ("64.5 KB", "42.1 µs", "1.23 µJ")


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_study_report_and_search_report_print_a_record_alike(tmp_path):
    """One record rendered by the study's HTML and Markdown reports and by the search's front table:
    its size, latency and energy read the same, in the same units and digits."""
    from effai.report.html import render_html
    from effai.report.markdown import render_markdown
    from effai.search import SearchConfig, SearchResult, TrialRecord
    from effai.search.report import front_table

    study = StudyResult("s", BaseModelInfo("lenet5"), variants=(RECORD,), selection=select([RECORD]))
    trial = TrialRecord(number=0, variant={}, record=RECORD, values={"accuracy": 0.975, "size": 64_512},
                        feasible=True)
    search = SearchResult(SearchConfig(out=str(tmp_path)), ["accuracy", "size"], [trial], [trial], 0, 0,
                          "sqlite://", tmp_path)
    shown = [fmt_bytes(RECORD.size_bytes), fmt_ms(RECORD.latency_ms), fmt_joules(RECORD.energy_j)]
    assert shown == ["64.5 KB", "42.1 µs", "1.23 µJ"]
    study_html, study_md, search_html = _text(render_html(study)), render_markdown(study), _text(front_table(search))
    for text in shown:
        assert text in study_html and text in study_md and text in search_html, text
    for other in ("kB", "uJ", " us", "64.512", "0.042 ms"):  # the spellings of the old formatters
        assert other not in search_html and other not in study_md, other


@pytest.mark.slow
def test_kd_student_after_fp32_in_the_same_folder(tmp_path):
    """`effai study --variants fp32` then `--variants kd_student` into the same --out: the second run
    reuses fp32, still loads the base model (kd_student builds a half-width one of its architecture),
    and the report names the base."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "effai.cli", "study", "--dataset", "digits", "--model", "lenet300_100", "--quick",
            "--out", str(out), "--json"]
    first = subprocess.run([*base, "--variants", "fp32"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    fp32 = StudyResult.load(out / "result.json").variant("fp32")
    second = subprocess.run([*base, "--variants", "kd_student"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    shown = json.loads(second.stdout)
    by = {v["name"]: v for v in shown["variants"]}
    assert by["kd_student"]["status"] == "ok", by["kd_student"]["error"]
    assert shown["base"]["name"] == "lenet300_100" and shown["base"]["source"] == "cached"
    result = StudyResult.load(out / "result.json")
    assert result.variant("fp32") == fp32  # reused as it was
    kd = result.variant("kd_student")
    assert kd.ok and kd.size_bytes < fp32.size_bytes and kd.harm is not None  # a half-width student, vs the base
    note = "base model lenet300_100: reused from the run folder"
    assert any(n.startswith(note) for n in result.notes), result.notes
    assert note in (out / "report.html").read_text() and "Base model `lenet300_100`" in (out / "report.md").read_text()
    assert len(Path(out / "results.jsonl").read_text().splitlines()) == 2  # fp32 reused, not rebuilt
