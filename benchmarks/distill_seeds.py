"""Knowledge distillation on mnist5k: a small student trained with KD against the same student
trained alone, over several seeds (same data split, same epochs and optimizer).

Teacher: LeNet-5 (61.7 k params). Student: LeNet-5 at width 0.25 (conv 1 -> 4, fc 30 -> 21).
KD: Hinton soft targets, T = 4, alpha = 0.9 (`effai.distill.KDConfig`).
Run: .venv/bin/python benchmarks/distill_seeds.py [--seeds 0,1,2] [--epochs 12]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import machine, machine_line, table, write_results

from effai import data, train, zoo
from effai.distill import KDConfig, distill


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=float, default=0.25)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = data.load("mnist5k", seed=0)
    torch.manual_seed(0)
    teacher = zoo.create("lenet5")
    t = train.fit(teacher, ds, train.TrainConfig(epochs=20, lr=3e-3, seed=0), progress=False)
    print("teacher", t.test_accuracy, flush=True)
    runs, rows = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        alone = zoo.create("lenet5", width_mult=args.width)
        torch.manual_seed(seed)
        kd = zoo.create("lenet5", width_mult=args.width)  # same initial weights as `alone`
        a = train.fit(alone, ds, train.TrainConfig(epochs=args.epochs, lr=3e-3, seed=seed), progress=False)
        distill(teacher, kd, ds, KDConfig(temperature=4, alpha=0.9, epochs=args.epochs, lr=3e-3, seed=seed))
        k = kd.distill_result
        runs.append({"seed": seed, "alone": a.test_accuracy, "kd": k.test_accuracy})
        rows.append([seed, f"{a.test_accuracy:.2%}", f"{k.test_accuracy:.2%}",
                     f"{100 * (k.test_accuracy - a.test_accuracy):+.2f}"])
        print(rows[-1], flush=True)
    mean_a = statistics.mean(r["alone"] for r in runs)
    mean_k = statistics.mean(r["kd"] for r in runs)
    rows.append(["mean", f"{mean_a:.2%}", f"{mean_k:.2%}", f"{100 * (mean_k - mean_a):+.2f}"])
    params = sum(p.numel() for p in zoo.create("lenet5", width_mult=args.width).parameters())
    m = machine()
    md = (
        "## Knowledge distillation: student alone vs with KD (`benchmarks/distill_seeds.py`)\n\n"
        f"mnist5k (4,000 train / 500 test). Teacher: LeNet-5, {t.test_accuracy:.2%} test accuracy. Student: "
        f"LeNet-5 at width {args.width} ({params:,} parameters), the same initial weights, split, "
        f"{args.epochs} epochs and AdamW 3e-3 cosine schedule in both arms; KD uses Hinton soft targets "
        "(T = 4, alpha = 0.9, T^2 scaling) through `effai.train.fit(loss_fn=...)`. Test accuracy of the "
        "weights with the best validation accuracy.\n\n"
        + table(["seed", "student alone", "student with KD", "KD gain (pp)"], rows)
        + f"\n\n{machine_line(m)}\n"
    )
    write_results("distill", {"machine": m, "teacher_test_accuracy": t.test_accuracy, "student_params": params,
                              "epochs": args.epochs, "runs": runs, "mean_alone": mean_a, "mean_kd": mean_k}, md)


if __name__ == "__main__":
    main()
