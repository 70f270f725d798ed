"""Knowledge distillation on Fashion-MNIST, judged as a reviewer would: a small student trained
with KD against the same student trained alone, over seeds, with a paired test on 10,500 test
images; T and alpha chosen on the validation split, never on the test split.

Data: `effai.data.load("fashion_mnist", test_fraction=0.15)`: 10,500 test / 7,000 validation
images; the first 5,000 of the (seeded, shuffled) training split train, and the first 3,000 of the
validation split choose epochs and (T, alpha), to keep the run affordable on a shared 2-core machine. Teacher: LeNet-300-100 (an MLP, 266 k parameters);
student: the same at width 0.1 (784-30-10-10, 23,970 parameters): a big MLP distilled into a small
one, as in Hinton et al.'s MNIST experiment (MLPs train ~10x cheaper than LeNet-5 on CPU).
KD: Hinton soft targets with the T^2 scaling (`effai.distill.distill`).
Three experiments: A, the teacher trains on the student's 5,000 images; B, on all 52,500 training
images of the split (its soft targets then carry what the student's images do not show); C, that
teacher and a student that sees only 1,000 images (where soft targets are said to help most).
Protocol, in each: a grid of (T, alpha) is trained on seed 0 and the setting with the best validation
accuracy is kept; then seeds 0..4 train the student alone and with KD at that setting (same
initial weights, data order, epochs and optimizer in both arms). Statistics (effai.evaluate.stats):
Wilson intervals, exact mid-p McNemar per seed, a paired bootstrap over seeds and test images.
Run: .venv/bin/python benchmarks/distill_fashion.py [--render-only]
The CI check (`make bench-check`) reruns `reproduce()`: one seed at a reduced setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, begin, provenance, table, write_results  # noqa: E402

from effai import data, train, zoo  # noqa: E402
from effai.distill import KDConfig, distill  # noqa: E402
from effai.evaluate import stats  # noqa: E402
from effai.fileio import write_json  # noqa: E402

NAME = "distill"
THREADS = 1  # per training run; independent runs go to WORKERS forked processes
WORKERS = 4
LR = 3e-3


@dataclasses.dataclass(frozen=True)
class Setting:
    train_images: int
    teacher_epochs: int
    student_epochs: int
    seeds: tuple[int, ...]
    grid: tuple[tuple[float, float], ...]  # (T, alpha) candidates, chosen on validation data
    val_images: int | None = None  # None: the whole validation split
    teacher_images: int | None = None  # None: the teacher trains on the student's images


FULL = Setting(train_images=5_000, teacher_epochs=12, student_epochs=12, seeds=(0, 1, 2, 3, 4),
               grid=((2.0, 0.5), (4.0, 0.5), (4.0, 0.9), (8.0, 0.9)), val_images=3_000)
# The same student, but the teacher learned from every training image of the split
BIG_TEACHER = dataclasses.replace(FULL, teacher_images=52_500)
# Scarce data: the student sees 1,000 images (30 epochs, as many steps as 6 epochs of 5,000), the same teacher
SCARCE = dataclasses.replace(BIG_TEACHER, train_images=1_000, student_epochs=30)
# What CI reruns (well under a minute on 2 cores): seed 0 at KDConfig's own T and alpha, so a changed default shows.
CHECK = Setting(train_images=2_000, teacher_epochs=5, student_epochs=5, seeds=(0,), grid=(), val_images=1_000)
TEACHER = ("lenet300_100", 1.0)
STUDENT = ("lenet300_100", 0.1)


def splits(s: Setting):
    """(the student's data, the teacher's data): the same validation and test images, the first
    `train_images` (teacher: `teacher_images`) of the seeded training split."""
    ds = data.load("fashion_mnist", seed=0, test_fraction=0.15)

    def cut(n):
        return dataclasses.replace(ds, train=TensorDataset(*(t[:n] for t in ds.train.tensors)),
                                   val=TensorDataset(*(t[: s.val_images] for t in ds.val.tensors)),
                                   meta={**ds.meta, "train_pool": len(ds.train)})

    return cut(s.train_images), cut(s.teacher_images or s.train_images)


def test_predictions(model, ds) -> str:
    """The predicted class of every test image, one digit each (the JSON keeps them for the paired tests)."""
    logits, _ = train.predict(model, ds.loaders(512)[2])
    return "".join(str(int(c)) for c in logits.argmax(1))


_TEACHERS: dict = {}  # experiments that share a teacher's data and epochs share the trained teacher


def teacher_for(ds, epochs: int):
    key = (len(ds.train), len(ds.val), epochs)
    if key not in _TEACHERS:
        _TEACHERS[key] = _train_teacher(ds, epochs)
    return _TEACHERS[key]


def _train_teacher(ds, epochs: int):
    torch.manual_seed(0)
    teacher = zoo.create(TEACHER[0], width_mult=TEACHER[1])
    r = train.fit(teacher, ds, train.TrainConfig(epochs=epochs, lr=LR, seed=0), progress=False)
    return teacher, {"val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy,
                     "predictions": test_predictions(teacher, ds)}


def student(ds, teacher, seed: int, epochs: int, kd: KDConfig | None) -> dict:
    """Train the student from seed `seed`'s initial weights, alone (kd=None) or distilled."""
    torch.manual_seed(seed)
    net = zoo.create(STUDENT[0], width_mult=STUDENT[1])
    if kd is None:
        r = train.fit(net, ds, train.TrainConfig(epochs=epochs, lr=LR, seed=seed), progress=False)
    else:
        r = distill(teacher, net, ds, dataclasses.replace(kd, epochs=epochs, lr=LR, seed=seed)).distill_result
    return {"seed": seed, "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy,
            "predictions": test_predictions(net, ds)}


_SHARED: dict = {}  # the data and teacher, inherited by the forked workers


def _run(job: tuple[int, tuple[float, float] | None]) -> dict:
    seed, kd = job
    torch.set_num_threads(THREADS)
    cfg = None if kd is None else (KDConfig() if kd == "default" else KDConfig(temperature=kd[0], alpha=kd[1]))
    return student(_SHARED["ds"], _SHARED["teacher"], seed, _SHARED["epochs"], cfg)


def run_all(jobs: list, parallel: bool) -> list[dict]:
    """Train the student for each (seed, KD setting) job: in forked processes (one thread each, so
    each run is deterministic and independent of the others), or one after the other."""
    if not parallel or len(jobs) == 1:
        return [_run(job) for job in jobs]
    with multiprocessing.get_context("fork").Pool(min(WORKERS, len(jobs))) as pool:
        return pool.map(_run, jobs, chunksize=1)


def measure(s: Setting, parallel: bool = False) -> dict:
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    ds, teacher_ds = splits(s)
    teacher, t = teacher_for(teacher_ds, s.teacher_epochs)
    print("teacher", t["val_accuracy"], t["test_accuracy"], flush=True)
    _SHARED.update(ds=ds, teacher=teacher, epochs=s.student_epochs)
    grid = [{"temperature": g[0], "alpha": g[1], **r} for g, r in zip(s.grid, run_all([(s.seeds[0], g) for g in s.grid], parallel),
                                                                       strict=True)]
    for g in grid:
        print("grid", g["temperature"], g["alpha"], g["val_accuracy"], flush=True)
    # the best validation accuracy; ties go to the earlier setting in the grid
    best = max(grid, key=lambda g: g["val_accuracy"]) if grid else None
    chosen = (best["temperature"], best["alpha"]) if best else "default"
    kd_seeds = [seed for seed in s.seeds if not (best and seed == s.seeds[0])]  # the grid already trained seed 0
    runs = run_all([(seed, None) for seed in s.seeds] + [(seed, chosen) for seed in kd_seeds], parallel)
    alone, with_kd = runs[: len(s.seeds)], runs[len(s.seeds):]
    if best:
        with_kd.insert(0, {k: v for k, v in best.items() if k not in ("temperature", "alpha")})
    for a, k in zip(alone, with_kd, strict=True):
        print("seed", a["seed"], a["test_accuracy"], k["test_accuracy"], flush=True)
    kd = KDConfig() if chosen == "default" else KDConfig(temperature=chosen[0], alpha=chosen[1])
    labels = "".join(str(int(c)) for c in ds.test.tensors[1])
    params = {m: sum(p.numel() for p in zoo.create(m[0], width_mult=m[1]).parameters()) for m in (TEACHER, STUDENT)}
    return {"setting": dataclasses.asdict(s),
            "teacher_model": {"name": TEACHER[0], "width_mult": TEACHER[1], "params": params[TEACHER],
                              "train_images": len(teacher_ds.train)},
            "student": {"name": STUDENT[0], "width_mult": STUDENT[1], "params": params[STUDENT]},
            "split": {"train": len(ds.train), "train_pool": ds.meta["train_pool"], "val": len(ds.val),
                      "test": len(ds.test)},
            "class_names": ds.class_names, "test_labels": labels, "teacher": t, "grid": grid,
            "chosen": {"temperature": kd.temperature, "alpha": kd.alpha}, "alone": alone, "kd": with_kd,
            "threads_per_run": THREADS, "seconds": time.perf_counter() - t0}


def correct_matrix(runs: list[dict], labels: str) -> np.ndarray:
    """(seeds, test images) correctness of a list of runs."""
    y = np.frombuffer(labels.encode(), np.uint8)
    return np.stack([np.frombuffer(r["predictions"].encode(), np.uint8) == y for r in runs])


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def verdict(boot) -> str:
    gain = f"{100 * boot.difference:+.2f} pp (95% interval [{100 * boot.low:+.2f}, {100 * boot.high:+.2f}], p = {boot.p_value:.3f})"
    if boot.low > 0:
        return f"**KD gains {gain}: beyond noise**, the interval over seeds and test images excludes zero"
    if boot.high < 0:
        return f"**KD costs accuracy: {gain}**, the interval over seeds and test images excludes zero"
    return f"**No gain beyond noise: {gain}**; the interval over seeds and test images includes zero"


def render_experiment(r: dict, title: str) -> tuple[list[str], object]:
    """One experiment's tables, and its bootstrap result."""
    s, tm = r["setting"], r["teacher_model"]
    alone, kd = correct_matrix(r["alone"], r["test_labels"]), correct_matrix(r["kd"], r["test_labels"])
    teacher = stats.accuracy_interval(correct_matrix([r["teacher"]], r["test_labels"])[0])
    seed_rows = []
    for i, seed in enumerate(s["seeds"]):
        a, k, m = stats.accuracy_interval(alone[i]), stats.accuracy_interval(kd[i]), stats.mcnemar(alone[i], kd[i])
        seed_rows.append([seed, f"{pct(a.estimate)} [{pct(a.low)}, {pct(a.high)}]",
                          f"{pct(k.estimate)} [{pct(k.low)}, {pct(k.high)}]", f"{100 * m.difference:+.2f}",
                          f"{m.a_only} / {m.b_only}", f"{m.p_value:.3f}"])
    boot = stats.paired_bootstrap(alone, kd, n_resamples=10_000, seed=0)
    wins = int(((kd.mean(1) - alone.mean(1)) > 0).sum())
    chosen = (r["chosen"]["temperature"], r["chosen"]["alpha"])
    grid = [[f"{g['temperature']:g}", f"{g['alpha']:g}", pct(g["val_accuracy"]),
             "**chosen**" if (g["temperature"], g["alpha"]) == chosen else ""] for g in r["grid"]]
    y = np.frombuffer(r["test_labels"].encode(), np.uint8) - ord("0")
    class_rows = []
    for c, name in enumerate(r["class_names"]):
        idx = y == c
        base, with_kd = float(alone[:, idx].mean()), float(kd[:, idx].mean())
        class_rows.append([name, int(idx.sum()), pct(base), pct(with_kd), f"{100 * (with_kd - base):+.2f}",
                           f"{100 * stats.min_detectable_drop(int(idx.sum()), base):.1f}"])
    lines = [
        f"### {title}",
        "",
        f"Student trained on {s['train_images']:,} images for {s['student_epochs']} epochs; teacher on "
        f"{tm['train_images']:,} images for {s['teacher_epochs']} epochs: {pct(teacher.estimate)} test "
        f"accuracy [{pct(teacher.low)}, {pct(teacher.high)}]. (T, alpha) grid, seed {s['seeds'][0]} with KD, judged "
        "on the validation split only:",
        "",
        table(["T", "alpha", "validation accuracy", ""], grid),
        "",
        f"Seeds {', '.join(map(str, s['seeds']))} at T = {chosen[0]:g}, alpha = {chosen[1]:g}:",
        "",
        table(["seed", "student alone", "student with KD", "KD gain (pp)", "only alone / only KD", "McNemar p"],
              seed_rows),
        "",
        f"{verdict(boot)}. KD is ahead on {wins} of {len(s['seeds'])} seeds.",
        "",
        table(["class", "test images", "alone", "with KD", "change (pp)", "detectable drop (pp)"], class_rows),
        "",
    ]
    return lines, boot


def render(r: dict) -> str:
    """The doc section, from the results JSON alone (so it can be checked and regenerated)."""
    experiments = r["experiments"]
    e0 = experiments[0]
    split, st, tm = e0["split"], e0["student"], e0["teacher_model"]
    def title(i: int, e: dict) -> str:
        n, m = e["teacher_model"]["train_images"], e["setting"]["train_images"]
        whose = {m: " (the student's)", split["train_pool"]: " (all of the split's)"}
        return f"{chr(65 + i)}. Student on {m:,} training images, teacher on {n:,}{whose.get(n, '')}"

    titles = [title(i, e) for i, e in enumerate(experiments)]
    parts, boots = zip(*(render_experiment(e, t) for e, t in zip(experiments, titles, strict=True)), strict=True)
    gains = [t.split(". ")[0] for t, b in zip(titles, boots, strict=True) if b.low > 0]
    losses = [f"{t.split('. ')[0]} ({100 * b.difference:+.2f} pp)" for t, b in zip(titles, boots, strict=True)
              if b.high < 0]
    c = r["reproduce"]["setting"] if "reproduce" in r else dataclasses.asdict(CHECK)
    summary = ("**Conclusion: " + (f"KD gains beyond noise in {', '.join(gains)} only" if gains else
               "KD gives no gain beyond noise on this student in any setting tried")
               + (f"; it costs accuracy beyond noise in {', '.join(losses)}" if losses else "") + "** (below: each "
               "experiment's paired bootstrap over seeds and test images). The earlier mnist5k table "
               "(+0.68 pp, T and alpha chosen on test accuracy, 500 test images) did not reproduce and is retired.")
    return "\n".join([
        "## Knowledge distillation on Fashion-MNIST: student alone vs with KD (`benchmarks/distill_fashion.py`)",
        "",
        f"Fashion-MNIST from Debian's IDX files, one seeded stratified split: student and teacher train on the first "
        f"images of its {split['train_pool']:,} training images (each experiment says how many); {split['val']:,} validation images "
        f"choose the epoch and (T, alpha); **{split['test']:,} test images** give the final numbers only (one image = "
        f"{100 / split['test']:.3f} pp). Teacher: {tm['name']} at width {tm['width_mult']:g} (an MLP, "
        f"{tm['params']:,} parameters). Student: {st['name']} at width {st['width_mult']:g} (an MLP, "
        f"{st['params']:,} parameters), AdamW {LR:g} with a cosine schedule, batch 128; "
        "both arms start from the same initial weights and see the same batches; KD is Hinton's soft-target loss "
        "with the T^2 scaling (`effai.distill.distill`); the weights with the best validation accuracy are kept. "
        "Test accuracy with Wilson 95% intervals; *only alone / only KD*: test images one arm gets right and the "
        "other wrong; McNemar: exact mid-p test on those; the verdict is a paired bootstrap of the mean gain "
        "resampling seeds and test images (10,000 resamples); per class, *detectable drop* is the smallest drop "
        "from the alone arm's accuracy that a test on that class's images finds with power 0.8 at alpha 0.05 "
        "(all from `effai.evaluate.stats`).",
        "",
        summary,
        "",
        *[line for p in parts for line in p],
        f"`make bench-check` reruns seed 0 at a reduced setting ({c['train_images']:,} training images, teacher "
        f"{c['teacher_epochs']} epochs, student {c['student_epochs']} epochs, KDConfig's own default T and alpha, "
        "so a changed default shows) and compares the number of test images each model gets right.",
    ])


def right(predictions: str, labels: str) -> int:
    return sum(p == y for p, y in zip(predictions, labels, strict=True))


def reproduce() -> dict:
    """The numbers `make bench-check` compares: test images right at the CHECK setting."""
    r = measure(CHECK)
    y = r["test_labels"]
    return {"setting": dataclasses.asdict(CHECK), "rows": {
        "teacher": {"test images right": right(r["teacher"]["predictions"], y)},
        "student alone, seed 0": {"test images right": right(r["alone"][0]["predictions"], y)},
        "student with KD at KDConfig's defaults, seed 0": {"test images right": right(r["kd"][0]["predictions"], y)},
    }}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render-only", action="store_true", help="rewrite the doc section from the results JSON")
    args = ap.parse_args()
    path = RESULTS / f"{NAME}.json"
    if args.render_only:
        results = json.loads(path.read_text())
    else:
        start = begin()
        results = {"experiments": [measure(e, parallel=True) for e in (FULL, BIG_TEACHER, SCARCE)]}
        results["provenance"] = provenance(start, Path(__file__).name, THREADS)
        write_json(path, results)  # the training is kept even if rendering fails
        results["reproduce"] = reproduce()
        write_json(path, results)
    write_results(NAME, results, render(results))


if __name__ == "__main__":
    main()
