"""Search on digits: ~20 trials of `effai search` against the study's default base (LeNet-5, FP32).

Acceptance: the search finds a variant that dominates the FP32 base on test accuracy and
stored size. The base is trained exactly like every trial (same data, seed and schedule).
Run: .venv/bin/python benchmarks/search_digits.py [--trials 20] [--workers 2]
"""

import argparse
import tempfile
import time

from common import machine, machine_line, table, write_results

from effai.results import dominates, fmt_bytes, fmt_count, fmt_fraction
from effai.search import SearchConfig, run
from effai.search.trial import evaluate_variant

BASE = {"family": "lenet5", "width_mult": 1.0, "resolution_mult": 1.0, "prune_ratio": 0.0, "bits": 32,
        "layer_bits": None, "kd": False, "qat": False}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="effai-search-digits-")
    cfg = SearchConfig(
        dataset="digits", n_trials=args.trials, population=8, seed=0, sampler="nsga2",
        objectives=["accuracy", "size"], workers=args.workers, out=out,
        train={"epochs": 15, "finetune_epochs": 3, "lr": 3e-3, "batch_size": 64},
        space={"family": ["lenet5"], "width_mult": [0.25, 0.5, 0.75, 1.0], "resolution_mult": [1.0],
               "prune_ratio": [0.0, 0.25, 0.5], "bits": [32, 8, 4], "kd": [False, True], "qat": [False, True]},
        # The uncompressed base as the first trial: the anchor of the front (and of NSGA-II's crossover).
        initial=[{"family": "lenet5", "width_mult": 1.0, "prune_ratio": 0.0, "bits": 32, "kd": False,
                  "qat": False}],
    )
    t0 = time.perf_counter()
    result = run(cfg)
    wall = time.perf_counter() - t0
    same = [t for t in result.trials if t.variant == BASE]  # the queued first trial is the base itself
    base_rec = same[0].record if same else evaluate_variant(BASE, cfg)
    base = {"test_accuracy": base_rec.accuracy, "size": base_rec.size_bytes}
    rows, trials = [], []
    for t in sorted(result.trials, key=lambda t: t.record.size_bytes):
        r = t.record
        dom = dominates(r, base_rec, ["size"])  # on test accuracy and size
        on = any(f.number == t.number for f in result.front)
        trials.append({"number": t.number, "name": t.name, "val_accuracy": r.val_accuracy,
                       "test_accuracy": r.accuracy, "size": r.size_bytes, "macs": r.macs,
                       "on_front": on, "dominates_base": dom})
        if on or dom:
            rows.append([t.number, t.name, fmt_fraction(r.val_accuracy), fmt_fraction(r.accuracy),
                         fmt_bytes(r.size_bytes), fmt_count(r.macs), "yes" if on else "",
                         "**yes**" if dom else ""])
    winners = [t for t in trials if t["dominates_base"]]
    best = max(winners, key=lambda t: (t["test_accuracy"], -t["size"])) if winners else None
    m = machine()
    verdict = (f"**{len(winners)} of {len(trials)} trials dominate the FP32 base**; e.g. #{best['number']} "
               f"`{best['name']}`: {best['test_accuracy']:.2%} test accuracy (base {base['test_accuracy']:.2%}) at "
               f"{fmt_bytes(best['size'])} (base {fmt_bytes(base['size'])}, {base['size'] / best['size']:.1f}x "
               "smaller)." if best else "**No trial dominates the FP32 base in this run.**")
    md = (
        "## Search: Pareto front on digits (`benchmarks/search_digits.py`)\n\n"
        f"`effai.search.run`: {len(trials)} complete trials, NSGA-II (population 8, seed 0), objectives validation "
        "accuracy (max) and stored weight size (min), SQLite storage, local backend with "
        f"{cfg.workers} worker processes (1 torch thread each). Space: LeNet-5 width x{{0.25, 0.5, 0.75, 1}} "
        "(digits' 8x8 images upsampled to LeNet-5's minimum 12x12), channel pruning "
        "{0, 25, 50}%, weight bits {32, 8, 4}, KD from the width-1.0 teacher on/off, QAT on/off; the first trial "
        "is the uncompressed base (queued with `initial:`), the other 19 are NSGA-II's. "
        "Each trial trains 15 epochs (AdamW 3e-3, batch 64) plus 3 fine-tuning epochs after pruning / for QAT. "
        f"Base: the study's default variant, LeNet-5 FP32 width 1.0 trained the same way: "
        f"{base['test_accuracy']:.2%} test accuracy, {fmt_bytes(base['size'])}.\n\n"
        + verdict + "\n\nTrials on the Pareto front (by validation accuracy) or dominating the base "
        "(by test accuracy and size):\n\n"
        + table(["#", "variant", "val acc", "test acc", "size", "MACs", "on front", "dominates base"], rows)
        + f"\n\nSearch wall time {wall:.0f} s. " + machine_line(m)
    )
    write_results("search_digits", {"machine": m, "config": cfg.model_dump(), "base": base, "trials": trials,
                                    "wall_seconds": wall, "n_dominating": len(winners)}, md)
    print(md)


if __name__ == "__main__":
    main()
