"""The study's recommendation is sound: intervals, paired ties broken by cost, per-class harm
flagged only where a paired test says so. Synthetic records through effai.results."""

from __future__ import annotations

from effai import evaluate as ev
from effai.results import Constraints, Cost, Evaluation, Latency, VariantRecord, select
from effai.study.runner import with_statistics

CLASSES, PER_CLASS = 10, 50
LABELS = [c for c in range(CLASSES) for _ in range(PER_CLASS)]


def _evaluation(wrong: set[int]) -> Evaluation:
    """An evaluation of the fixed test set that is wrong exactly on the examples `wrong`."""
    preds = [(t + 1) % CLASSES if i in wrong else t for i, t in enumerate(LABELS)]
    acc = 1 - len(wrong) / len(LABELS)
    return Evaluation(len(LABELS), acc, {}, [], [], 0.0, [str(c) for c in range(CLASSES)], preds, list(LABELS))


def _record(name: str, wrong: set[int], size: int, ms: float, **latency) -> VariantRecord:
    e = _evaluation(wrong)
    return VariantRecord(name, accuracy=e.accuracy, evaluation=e,
                         cost=Cost(size_bytes=size, latency=Latency(ms, iqr_ms=0.001, **latency)))


BASE_WRONG = set(range(0, len(LABELS), 40))  # 13 errors spread over the classes: 97.4%


def test_one_image_difference_is_a_tie_broken_by_size():
    recs = [_record("fp32", BASE_WRONG, 250_000, 0.30),
            _record("int8", BASE_WRONG | {7}, 65_000, 0.20),  # one image worse: within noise
            _record("int4", BASE_WRONG | set(range(1, 400, 10)), 35_000, 0.15)]  # 40 images worse
    recs = with_statistics(recs, Constraints())
    assert recs[0].accuracy_ci is not None and recs[0].accuracy_ci.low < 0.974 < recs[0].accuracy_ci.high
    assert recs[1].vs_base is not None and (recs[1].vs_base.lost, recs[1].vs_base.gained) == (1, 0)
    s = select(recs)
    assert s.leader == "fp32" and s.best == "int8"
    assert s.reason.startswith("ties fp32 on accuracy (p=0.50") and "smaller than fp32 (65.0 KB vs 250.0 KB)" in s.reason
    assert s.verdict("fp32").kind == "tie" and s.verdict("int4").kind == "pareto"
    assert "p=0.00" in s.verdict("int4").reason
    # Without the paired test (plain records) the one image decides, as exact accuracies do.
    assert select([r.replace(vs_leader=None) for r in recs]).best == "fp32"


def test_slower_than_fp32_is_never_recommended_for_latency():
    # Same size and accuracy: only latency could break the tie, and int8's is slower than fp32's runtime.
    recs = [_record("fp32", BASE_WRONG, 100_000, 0.022),
            _record("int8_a", BASE_WRONG, 65_000, 0.012, slower_than_fp32=True),
            _record("int8_b", BASE_WRONG, 65_000, 0.050)]
    s = select(with_statistics(recs, Constraints()))
    assert s.best == "int8_b" and s.verdict("int8_a").kind == "tie"
    assert "latency" not in s.verdict("int8_a").reason.split(";")[0]
    # Unmarked, its 12 µs would win the same tie: the mark is what keeps it out.
    unmarked = [r.replace(cost=r.cost.replace(latency=Latency(r.latency_ms, iqr_ms=0.001))) for r in recs]
    assert select(with_statistics(unmarked, Constraints())).best == "int8_a"


def test_the_reason_states_the_trade_off_against_the_leader_and_names_the_tie_partner():
    # The demo's case: the smallest tied variant is slower than fp32; two tied variants share its size.
    recs = [_record("fp32", BASE_WRONG, 250_000, 0.016),
            _record("int8", BASE_WRONG | {7}, 75_000, 0.036),
            _record("ternary", BASE_WRONG | {9}, 27_000, 0.098, slower_than_fp32=True),
            _record("binary", BASE_WRONG | {11}, 27_000, 0.098, slower_than_fp32=True)]
    recs = with_statistics(recs, Constraints())
    recs = [r.replace(evaluation=r.evaluation.replace(robustness={"noise": [0.90 if r.name == "ternary" else 0.85]}))
            for r in recs]
    s = select(recs)
    assert s.best == "ternary"
    assert "smaller than fp32 (27.0 KB vs 250.0 KB)" in s.reason
    assert "but slower (98 µs vs 16 µs; slower than fp32 on its runtime)" in s.reason
    assert "as small as binary and no slower, more robust" in s.reason


def test_a_slower_winner_is_never_called_faster_than_a_leader_marked_slower_than_fp32():
    # The demo's case: the leader's INT8 file is marked slower than fp32; the smaller winner is slower still.
    recs = [_record("fp32", BASE_WRONG | {1, 3}, 250_000, 0.020),
            _record("int8_qat", BASE_WRONG, 70_000, 0.0346, slower_than_fp32=True),
            _record("deep_compression", BASE_WRONG | {5}, 8_900, 0.118)]
    s = select(with_statistics(recs, Constraints()))
    assert s.leader == "int8_qat" and s.best == "deep_compression"
    assert "faster" not in s.reason and "but slower (118 µs vs 34.6 µs)" in s.reason, s.reason


def test_robustness_constraint_and_tie_break():
    recs = with_statistics([_record("fp32", BASE_WRONG, 100_000, 0.3),
                            _record("int8", BASE_WRONG | {7}, 65_000, 0.2)], Constraints())
    robust = {"fp32": 0.9, "int8": 0.7}
    recs = [r.replace(evaluation=r.evaluation.replace(robustness={"noise": [robust[r.name]]})) for r in recs]
    s = select(recs, Constraints(min_robustness=0.8))
    assert s.best == "fp32" and "mean corrupted accuracy 70.00% < min 80.00%" in s.verdict("int8").reason


def test_planted_class_harm_is_flagged_and_noise_is_not():
    base = _evaluation({i for i in range(len(LABELS)) if i % PER_CLASS < 5})  # 90% in every class
    # Noise: in every class 2 examples fixed (positions 0, 1) and 2 broken (5, 6), a wash.
    noise = {i for i in range(len(LABELS)) if 2 <= i % PER_CLASS <= 6}
    unharmed = _evaluation(noise)
    dropped = {3 * PER_CLASS + k for k in range(7, 22)}  # class 3 loses 15 of 50 more: -30 pp
    harmed = _evaluation(noise | dropped)
    h = ev.compare(base, harmed)
    assert h.flagged == ["3"]
    g3 = next(g for g in h.classes if g.name == "3")
    assert round(g3.delta, 2) == -0.3 and g3.p_value < 0.05 and g3.broken == 17
    assert ev.compare(base, unharmed).flagged == []
    # Each class states the smallest drop its test could see at n=50: far above 1 image (2 pp).
    assert all(g.min_detectable_drop is not None and 0.1 < g.min_detectable_drop < 0.3 for g in h.classes)


def test_planted_contended_measurement_is_flagged():
    from effai.profile.latency import _summarise
    from effai.report.markdown import render_markdown
    from effai.results import BaseModelInfo, StudyResult

    # 50 calls of 20 µs wall time in which the timed thread ran 10 µs: it waited for a core half the time.
    # The load average (0.3) and the run queue (1) say nothing: the measurement itself does.
    busy = _summarise([(20_000, 10_000, 10_000)] * 50, "onnxruntime", 1, 1, 0, 0.001, 0.3, 1)
    calm = _summarise([(20_000, 19_900, 19_900)] * 50, "onnxruntime", 1, 1, 0, 0.001, 0.3, 1)
    assert busy.contended and "ran 50% of the wall time" in busy.contention and busy.cpu_wall_ratio == 0.5
    assert not calm.contended and calm.contention == ""
    assert _summarise([(20_000, 19_900, 19_900)] * 5, "torch", 1, 1, 0, 0.001, 0.3, 9).contended  # run queue
    rec = VariantRecord("int8", accuracy=0.9, cost=Cost(size_bytes=1, latency=Latency.measured(busy, "int8 graph")))
    assert rec.cost.latency.contended and VariantRecord.from_dict(rec.to_dict()).cost.latency.cpu_wall_ratio == 0.5
    md = render_markdown(StudyResult("t", BaseModelInfo("lenet5"), variants=(rec,), selection=select([rec])))
    assert "⚠ contended (the timed thread ran 50% of the wall time)" in md


def test_planted_slower_than_fp32_int8_is_marked_and_never_wins_on_latency():
    from effai.study.runner import mark_slower_than_fp32

    def timed(name, size, ms, runtime):
        r = _record(name, BASE_WRONG, size, ms)
        return r.replace(cost=r.cost.replace(latency=r.cost.latency.replace(runtime=runtime)))

    # INT8 LeNet-5 in ONNX Runtime: 56.8 µs against fp32's 22.4 µs. OpenVINO has no fp32 row to compare with.
    recs = [timed("fp32", 250_000, 0.0224, "onnxruntime"), timed("int8_ort", 65_000, 0.0568, "onnxruntime"),
            timed("int8_ov", 65_000, 0.0600, "openvino"), timed("fp16", 125_000, 0.0225, "onnxruntime")]
    marked = mark_slower_than_fp32(recs)
    assert [r.cost.latency.slower_than_fp32 for r in marked] == [False, True, False, False]
    assert "slower than fp32 on onnxruntime (56.8 µs vs 22.4 µs)" in marked[1].cost.latency.how
    s = select(with_statistics(marked, Constraints()))
    assert s.best == "int8_ov" and s.verdict("int8_ort").kind == "tie"
    assert select(with_statistics(recs, Constraints())).best == "int8_ort"  # unmarked, its 56.8 µs would win
