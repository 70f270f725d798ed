"""effai.study: constraint selection on synthetic records, input parsing, the run folder's
rules (identity, lock), and one quick study that is interrupted and resumed, with a planted
per-class regression that the harm view must flag."""

import json
import subprocess
import sys

import pytest
import torch

from effai import study
from effai.errors import InputError
from effai.results import Constraints, Cost, Latency, TargetFit, VariantRecord, pareto_front, select
from effai.study.store import RunDir
from effai.study.variants import VARIANTS, Built, variant


def rec(name, acc, size, lat, fits=True, status="ok"):
    if status != "ok":
        return VariantRecord.failed(name, "boom")
    fit = TargetFit(fits=fits, reason="RAM needs 300 KiB, has 256 KiB" if not fits else "fits")
    return VariantRecord(name, accuracy=acc, cost=Cost(size_bytes=size, macs=400_000, latency=Latency(lat)),
                         targets={"nano33ble": fit})


RECORDS = [
    rec("fp32", 0.990, 250_000, 0.30),       # too big
    rec("int8", 0.985, 65_000, 0.20),        # the answer: most accurate feasible
    rec("int4", 0.975, 35_000, 0.25),        # feasible, smaller: Pareto-optimal but less accurate
    rec("pruned", 0.970, 120_000, 0.30),     # feasible but dominated by int8
    rec("slow", 0.992, 60_000, 9.0),         # too slow
    rec("nofit", 0.988, 60_000, 0.1, fits=False),  # does not fit the target
    rec("binary", None, None, None, status="failed"),
]


def test_select_returns_pareto_best_feasible_with_a_reason_for_every_other():
    c = Constraints(max_size_bytes=200_000, max_latency_ms=5.0, target="nano33ble")
    s = select(RECORDS, c)
    assert s.best == "int8"
    feasible = [r for r in RECORDS if r.name in s.feasible]
    for axis in ("size", "latency"):
        assert s.best in [r.name for r in pareto_front(feasible, [axis])]
    why = {v.name: v for v in s.rejected}
    assert set(why) == {r.name for r in RECORDS} - {"int8"}
    assert why["fp32"].kind == "infeasible" and "size 250.0 KB > max 200.0 KB (by 50.0 KB, 1.25x)" in why["fp32"].reason
    assert why["slow"].kind == "infeasible" and "latency 9 ms > max 5 ms" in why["slow"].reason
    assert why["nofit"].kind == "infeasible" and "does not fit nano33ble" in why["nofit"].reason
    assert why["pruned"].kind == "dominated" and "dominated by int8" in why["pruned"].reason
    assert why["int4"].kind == "pareto" and "1.00 pp less accurate than int8" in why["int4"].reason
    assert why["binary"].kind == "failed"
    # No constraints: the most accurate wins; impossible constraints: no winner, all explained.
    assert select(RECORDS).best == "slow"
    none = select(RECORDS, Constraints(max_size_bytes=1000))
    assert none.best is None and len(none.rejected) == len(RECORDS)


@pytest.mark.parametrize("kw, msg", [
    ({"max_size": "12XB"}, "unknown unit"), ({"max_size": "-5KB"}, "expected a size"),
    ({"max_latency": "fast"}, "expected a duration"), ({"max_latency": "0ms"}, "positive"),
    ({"min_accuracy": 97}, "fraction"), ({"variants": ("int8_ptqq",)}, "did you mean"),
])
def test_bad_input_is_an_input_error(kw, msg, tmp_path):
    with pytest.raises(InputError, match=msg):
        study.run(study.StudyConfig(out=str(tmp_path / "x"), **kw))


def test_cli_bad_size_exits_2_with_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "effai.cli", "study", "--max-size", "lots", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "max_size" in p.stderr


def test_run_dir_identity_and_lock(tmp_path):
    a = study.StudyConfig(dataset="digits", quick=True)
    b = study.StudyConfig(dataset="mnist5k", quick=True)
    with RunDir(tmp_path, a.identity(), a.key()):
        with pytest.raises(InputError, match="another study"):
            RunDir(tmp_path, a.identity(), a.key()).__enter__()
    with pytest.raises(InputError, match="different study.*dataset"):
        with RunDir(tmp_path, b.identity(), b.key()):
            pass
    with RunDir(tmp_path, b.identity(), b.key(), force=True) as rd:
        assert rd.finished() == {}


@pytest.fixture(scope="module")
def planted():
    """A registered variant with a planted regression: class 3 can never be predicted."""

    @variant("planted_regression", family="test")
    def planted_regression(ctx):
        """The base model with its output bias for class 3 set to -1e3."""
        m = ctx.base_copy()
        with torch.no_grad():
            m.classifier[-1].bias[3] = -1e3
        return Built(m, 250_000, "fp32")

    yield "planted_regression"
    del VARIANTS["planted_regression"]


def test_quick_study_resumes_and_flags_the_planted_regression(tmp_path, planted, monkeypatch):
    out = tmp_path / "run"
    cfg = study.StudyConfig(quick=True, out=str(out), variants=("int8_ptq", "magnitude_75", planted),
                            max_size="100KB", target="nano33ble")
    r1 = study.run(cfg)
    assert [v.name for v in r1.variants] == ["fp32", "int8_ptq", "magnitude_75", planted]
    assert all(v.ok for v in r1.variants), [v.error for v in r1.variants]
    by = {v.name: v for v in r1.variants}
    # The planted regression is flagged on class 3 and no other class (a stroke-width slice holding
    # class 3's images may be flagged too: its paired test sees their loss).
    assert [g.name for g in by[planted].harm.classes if g.flagged] == ["3"]
    assert not by["int8_ptq"].flagged
    # Selection: fp32 and the planted variant are too big for 100KB.
    assert r1.selection.best in ("int8_ptq", "magnitude_75")
    fp32 = r1.selection.verdict("fp32")
    assert fp32.kind == "infeasible" and "size" in fp32.reason
    for f in ("results.jsonl", "study.json", "result.json", "report.md", "report.html"):
        assert (out / f).exists(), f
    html = (out / "report.html").read_text()
    assert "⚑" in html and "Use " in html and "<svg" in html

    # Interrupt: drop the last finished record and leave a torn half-written line instead.
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    calls = []
    for name in ("fp32", "int8_ptq", "magnitude_75", planted):
        spec = VARIANTS[name]
        monkeypatch.setitem(VARIANTS, name, spec.__class__(
            spec.name, spec.family, lambda ctx, _b=spec.build, _n=name: calls.append(_n) or _b(ctx),
            spec.quick, spec.description))
    r2 = study.run(cfg)
    assert calls == [planted], "finished variants must be reused, not rebuilt"
    by2 = {x.name: x for x in r2.variants}
    for name in ("fp32", "int8_ptq", "magnitude_75"):  # the same record: same timestamps and numbers
        assert by2[name] == by[name], name
    assert [g.name for g in by2[planted].harm.classes if g.flagged] == ["3"]
    recs = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(x["record"]["name"] for x in recs) == sorted(["fp32", "int8_ptq", "magnitude_75", planted])
    assert [v.name for v in r2.variants] == [v.name for v in r1.variants]
    assert study.StudyResult.load(out / "result.json") == r2
