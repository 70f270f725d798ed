"""Accuracy after structured pruning and fine-tuning, at equal measured latency: effai
(uniform and latency-aware allocation; L1, group L1 and Taylor importance) against Torch-Pruning's
MagnitudePruner (L1 and Taylor importance) on trained Fashion-MNIST models.

Budget (fits a shared 2-core machine): MobileNetV2 (0.5 width) and ResNet-8, 28x28 inputs, a
5,000-image training subset, batch 64, BatchNorm momentum 0.1 (ResNet-8's Keras 0.01 would leave
the running statistics unconverged after so few steps), 1 torch thread. One base model per network
is trained 3 epochs (seed 0); every method prunes that same base, re-estimates its BatchNorm
statistics (16 batches; effai.prune.recalibrate_batchnorm) and fine-tunes it with the same budget
(1 epoch on the first 3,000 images of the subset, AdamW 2e-3, cosine) for 3 seeds (fine-tuning
order, BN and Taylor batches change with the seed). Accuracy: 1,000 held-out test images.

Equal latency: effai's latency-aware allocation prunes 50% of the channels (per-layer ONNX
Runtime timings at 1 thread). For uniform allocations (effai uniform, Torch-Pruning) the channel
ratio (grid 0.3-0.7, step 0.025) whose latency, over the latency-aware model's timed in the same
interleaved rounds, is closest to 1 is picked (two stages: the grid, then the best three ratios
again). The final fine-tuned models are exported and timed again side by side; the table shows
each one's latency over the latency-aware model's from those rounds. Latency: ONNX Runtime CPU,
batch 1, 1 thread, the median of 15 interleaved rounds of the calling thread's CPU time
(effai.prune.latency.clock_for: other processes' load is left out, so this runs on a shared
machine).
Run: .venv/bin/python benchmarks/prune_accuracy.py [--quick], or one process per network:
  prune_accuracy.py --part resnet8 & prune_accuracy.py --part mobilenet_v2; prune_accuracy.py --merge
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from common import RESULTS, load, machine, machine_line, table, write_results
from common import commit as git_commit
from torch.utils.data import DataLoader, TensorDataset

import effai
from effai import zoo
from effai.data.splits import DataSplits
from effai.fileio import write_json
from effai.prune import ChannelConfig, prune_, recalibrate_batchnorm
from effai.prune.graph import analyse
from effai.prune.latency import conv_macs, measure_models
from effai.prune.structured import prune_to_counts, weigh_allocations
from effai.train import TrainConfig, fit, score

NETS = {"mobilenet_v2": {"width_mult": 0.5}, "resnet8": {}}
RES = 28
SHAPE = (1, 1, RES, RES)
RATIO_GRID = tuple(round(0.3 + 0.025 * i, 3) for i in range(17))  # 0.3 ... 0.7
TAYLOR_BATCHES = 4


def subset(ds: TensorDataset, n: int) -> TensorDataset:
    return TensorDataset(*(t[:n] for t in ds.tensors))


def splits(n_train: int, n_test: int, seed: int) -> DataSplits:
    ds = effai.data.load("fashion_mnist", seed=0)
    return DataSplits("fashion_mnist", subset(ds.train, n_train), subset(ds.val, 500), subset(ds.test, n_test),
                      ds.class_names, seed=seed)


def taylor_loader(data: DataSplits, seed: int) -> DataLoader:
    return DataLoader(data.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))


def last_linear(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def torch_pruning(model, ratio: float, importance: str, data=None, seed: int = 0):
    import torch_pruning as tp

    imp = tp.importance.MagnitudeImportance(p=1) if importance == "l1" else tp.importance.TaylorImportance()
    pruner = tp.pruner.MagnitudePruner(model, torch.zeros(SHAPE), importance=imp, pruning_ratio=ratio,
                                       ignored_layers=[last_linear(model)])
    if importance == "taylor":  # Torch-Pruning's Taylor reads the gradients of the loss
        model.zero_grad()
        for i, (x, y) in enumerate(taylor_loader(data, seed)):
            if i == TAYLOR_BATCHES:
                break
            torch.nn.functional.cross_entropy(model(x), y).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def latency_aware(model, counts: dict[str, int], importance: str, data=None, seed: int = 0):
    """Prune `model` to the kept channel counts of the latency-aware allocation (group name ->
    count), the channels ranked by `importance` (effai's own ranking)."""
    dg = analyse(model, torch.zeros(SHAPE))
    loader = taylor_loader(data, seed) if importance == "taylor" else None
    return prune_to_counts(model, dg, {g.root: counts[g.name] for g in dg.groups}, importance, loader,
                           TAYLOR_BATCHES)


def effai_uniform(model, ratio: float, importance: str, data=None, seed: int = 0):
    extra = {"data": taylor_loader(data, seed), "batches": TAYLOR_BATCHES} if importance == "taylor" else {}
    return prune_(model, ChannelConfig(ratio, importance=importance, input_shape=SHAPE, allocation="uniform", **extra))


def equal_latency(base, rounds: int) -> dict:
    """The latency-aware allocation at 50% of channels, and for each uniform method the grid ratio
    whose latency, measured in the same interleaved rounds as the latency-aware model, is closest
    to it. Two stages: the whole grid, then the best three ratios per tool timed again side by
    side with the latency-aware model; the match uses the mean of the two stages' latency ratios
    (each against the latency-aware model of its own rounds, so load drift between stages cancels)."""
    x = torch.zeros(SHAPE)
    t0 = time.perf_counter()
    dg = analyse(copy.deepcopy(base), x)
    weighed = weigh_allocations(copy.deepcopy(base), dg, ChannelConfig(0.5, input_shape=SHAPE, allocation="latency"))
    chosen = next(a for a in weighed if a.chosen)
    counts = {g.name: chosen.keep[g.root] for g in dg.groups}
    probe_s = time.perf_counter() - t0
    la = latency_aware(copy.deepcopy(base), counts, "l1")
    grid = {(tool, r): prune(copy.deepcopy(base), r, "l1") for r in RATIO_GRID
            for tool, prune in (("effai", effai_uniform), ("tp", torch_pruning))}
    stages = []
    for keys in (list(grid), None):
        if keys is None:  # stage 2: the three closest ratios of each tool, timed again
            keys = [k for tool in ("effai", "tp") for k in sorted(
                (k for k in grid if k[0] == tool), key=lambda k: abs(stages[0][k] - 1))[:3]]
        ms = measure_models([la, *(grid[k] for k in keys)], x, rounds=rounds, runs=20,
                            min_round_ms=5.0)
        stages.append({k: t / ms[0] for k, t in zip(keys, ms[1:], strict=True)})
    ratio = {k: statistics.mean(st[k] for st in stages if k in st) for k in stages[1]}
    pick = {tool: min((k for k in ratio if k[0] == tool), key=lambda k: abs(ratio[k] - 1))[1] for tool in ("effai", "tp")}
    return {"counts": counts, "chosen": chosen.label, "probe_seconds": probe_s, "grid": RATIO_GRID,
            "uniform_ratio": pick, "grid_latency_ratio": {f"{k[0]} {k[1]}": v for k, v in stages[0].items()},
            "refined_latency_ratio": {f"{k[0]} {k[1]}": v for k, v in ratio.items()}}


def methods(plan: dict) -> dict:
    r_e, r_t = plan["uniform_ratio"]["effai"], plan["uniform_ratio"]["tp"]
    return {
        "effai latency-aware L1": lambda m, d, s: latency_aware(m, plan["counts"], "l1", d, s),
        "effai latency-aware group L1": lambda m, d, s: latency_aware(m, plan["counts"], "group_l1", d, s),
        "effai latency-aware Taylor": lambda m, d, s: latency_aware(m, plan["counts"], "taylor", d, s),
        f"effai uniform L1 (ratio {r_e})": lambda m, d, s: effai_uniform(m, r_e, "l1", d, s),
        f"effai uniform group L1 (ratio {r_e})": lambda m, d, s: effai_uniform(m, r_e, "group_l1", d, s),
        f"effai uniform Taylor (ratio {r_e})": lambda m, d, s: effai_uniform(m, r_e, "taylor", d, s),
        f"Torch-Pruning L1 (ratio {r_t})": lambda m, d, s: torch_pruning(m, r_t, "l1", d, s),
        f"Torch-Pruning Taylor (ratio {r_t})": lambda m, d, s: torch_pruning(m, r_t, "taylor", d, s),
    }


def run_net(name: str, args) -> dict:
    data = splits(args.train, args.test, 0)
    torch.manual_seed(0)
    base = zoo.create(name, resolution=RES, in_channels=1, num_classes=10, **NETS[name])
    for bn in base.modules():  # ResNet-8 has Keras' BN momentum (0.01): too slow for a few hundred steps
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = 0.1
    t0 = time.perf_counter()
    base_acc = fit(base, data, TrainConfig(epochs=args.base_epochs, lr=3e-3, batch_size=64, seed=0),
                   progress=False).test_accuracy
    base_s = time.perf_counter() - t0
    base.eval()
    print(name, "base", base_acc, f"{base_s:.0f} s", flush=True)
    plan = equal_latency(base, args.rounds)
    print(name, plan["chosen"], plan["uniform_ratio"], plan["refined_latency_ratio"], flush=True)
    rows, finals = {}, {}
    for label, prune in methods(plan).items():
        accs, before, recal = [], [], []
        for seed in range(args.seeds):
            d = splits(args.ft_train, args.test, seed)
            m = prune(copy.deepcopy(base), d, seed)
            before.append(score(m, d.loaders()[2]).accuracy)
            if args.bn_batches:  # every method alike: BN statistics of the pruned network, then fine-tuning
                recalibrate_batchnorm(m, taylor_loader(d, seed), args.bn_batches)
            recal.append(score(m, d.loaders()[2]).accuracy)
            accs.append(fit(m, d, TrainConfig(epochs=args.ft_epochs, lr=2e-3, batch_size=64, seed=seed),
                            progress=False).test_accuracy)
            finals.setdefault(label, m)
        rows[label] = {"accuracy": accs, "before_finetune": before, "after_bn": recal, "macs": conv_macs(finals[label].eval(),
                                                                                     torch.zeros(SHAPE))}
        print(name, label, [f"{a:.4f}" for a in accs], flush=True)
    x = torch.zeros(SHAPE)
    load0 = load()[0]
    ms = measure_models([base, copy.deepcopy(base), *finals.values()], x, rounds=args.rounds, runs=20,
                        min_round_ms=5.0)
    la_ms = ms[2 + list(rows).index("effai latency-aware L1")]
    for r, t in zip(rows.values(), ms[2:], strict=True):  # the final files, side by side in the same rounds
        r["latency_ms"] = t
        r["latency_vs_latency_aware"] = t / la_ms
    return {"base_accuracy": base_acc, "base_train_seconds": base_s, "base_macs": conv_macs(base, x),
            "dense_ms": ms[0], "noise_ms": ms[1], "plan": plan, "methods": rows, "load_avg": [load0, load()[0]]}


def _pct(values) -> tuple[float, float]:
    acc = [100 * a for a in values]
    return statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0


def markdown(results: dict, args, m: dict, commit: str, wall: float) -> str:
    rows = []
    for net, r in results.items():
        rows.append([net, "dense (not pruned)", f"{100 * r['base_accuracy']:.2f}", "-", "-", "-",
                     f"{r['base_macs'] / 1e6:.2f} M", f"{r['dense_ms']:.3f}", "-"])
        rows.append([net, "dense (noise control)", "-", "-", "-", "-", "-", f"{r['noise_ms']:.3f}",
                     f"noise {100 * abs(r['noise_ms'] / r['dense_ms'] - 1):.1f}%"])
        for label, v in r["methods"].items():
            mean, sd = _pct(v["accuracy"])
            after_bn = f"{_pct(v['after_bn'])[0]:.1f}" if "after_bn" in v else "-"
            rows.append([net, label, f"{mean:.2f}", f"{sd:.2f}", f"{_pct(v['before_finetune'])[0]:.1f}", after_bn,
                         f"{v['macs'] / 1e6:.2f} M", f"{v['latency_ms']:.3f}",
                         f"{v.get('latency_vs_latency_aware', float('nan')):.2f}"])
    plans = "; ".join(f"{net}: latency-aware candidate `{r['plan']['chosen']}` ({r['plan']['probe_seconds']:.0f} s "
                      f"of probing); uniform ratios matched to its latency: effai {r['plan']['uniform_ratio']['effai']}"
                      f", Torch-Pruning {r['plan']['uniform_ratio']['tp']} (refined latency ratios: " + ", ".join(
                          f"{k} {v:.2f}" for k, v in r['plan'].get('refined_latency_ratio', {}).items()) + ")"
                      for net, r in results.items())
    verdicts = []
    for net, r in results.items():
        def best(prefix, r=r):
            label, v = max(((k, v) for k, v in r["methods"].items() if k.startswith(prefix)),
                           key=lambda kv: statistics.mean(kv[1]["accuracy"]))
            return (label, *_pct(v["accuracy"]), v["latency_ms"])

        (la, aa, sa, ta), (lb, ab, sb, tb) = best("effai latency-aware"), best("Torch-Pruning")
        verdicts.append(f"- {net}: effai's best latency-aware ({la}) {aa:.2f} ± {sa:.2f}% at {ta:.3f} ms vs "
                        f"Torch-Pruning's best ({lb}) {ab:.2f} ± {sb:.2f}% at {tb:.3f} ms: {aa - ab:+.2f} pp, "
                        f"latency {ta / tb:.2f}x (same rounds)")
    loads = ", ".join(f"{net} {r['load_avg'][0]:.1f}-{r['load_avg'][1]:.1f}" for net, r in results.items())
    bn = (f"BatchNorm statistics re-estimated after pruning on {args.bn_batches} batches of 64 (every method), then "
          if getattr(args, "bn_batches", 0) else "")
    return (
        "## Structured pruning: accuracy after fine-tuning at equal latency (`benchmarks/prune_accuracy.py`)\n\n"
        f"Fashion-MNIST, {RES}x{RES} grey images; training subset {args.train:,} images, test {args.test:,} held-out "
        f"images, BatchNorm momentum 0.1, batch 64, 1 torch thread. One base per network trained {args.base_epochs} "
        f"epochs (AdamW 3e-3, seed 0); each method prunes that base; {bn}fine-tuning "
        f"{args.ft_epochs} epoch(s) on the first {args.ft_train:,} images of the subset "
        f"(AdamW 2e-3, cosine), {args.seeds} seeds "
        "(fine-tuning order, BN and Taylor batches). Equal latency: effai's latency-aware allocation removes 50% of "
        "the channels; each uniform method takes the channel ratio (grid 0.3-0.7, step 0.025) whose latency, "
        "measured in the same interleaved rounds as the latency-aware model, is closest to it (two stages: the "
        "grid, then the best three ratios again). Taylor importance: |weight x gradient| summed over 4 batches of "
        "64 (effai) / Torch-Pruning's `TaylorImportance` on the same batches; L1: filter L1 norms (effai `l1`); group "
        "L1: the filter's L1 plus that of every weight the channel feeds downstream and its BatchNorm |gamma| (effai "
        "`group_l1`, what Torch-Pruning's `MagnitudeImportance(p=1)` sums). Accuracy: mean and standard deviation over seeds, in %; *pruned*: right "
        "after pruning; *after BN*: after the BatchNorm re-estimation, before fine-tuning (means). Latency: the "
        f"final pruned models exported to ONNX and timed again side by side (ONNX Runtime CPU, batch 1, 1 thread, "
        f"{args.rounds} interleaved rounds of at least 20 runs and 5 ms, the median round of the calling thread's CPU "
        "time: the cost on a core of its own, other processes' load left out), "
        "with a second dense copy as noise control; *vs LA* is each model's latency over effai latency-aware L1's, "
        "from those same rounds.\n\n"
        + table(["network", "method", "accuracy %", "sd", "pruned %", "after BN %", "MACs", "latency ms", "vs LA"],
                rows)
        + "\n\n" + "\n".join(verdicts) + f"\n\n{plans}.\n\nWall time {wall / 60:.1f} min; load average (1 min) "
        f"around the final timing: {loads} (2 cores, shared). {machine_line(m)} Torch-Pruning "
        f"{m.get('torch_pruning')}. Commit {commit}.\n"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", default="resnet8,mobilenet_v2")
    ap.add_argument("--train", type=int, default=5_000)
    ap.add_argument("--test", type=int, default=1_000)
    ap.add_argument("--ft-train", type=int, default=3_000, help="fine-tuning images (the first of the subset)")
    ap.add_argument("--base-epochs", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bn-batches", type=int, default=16,
                    help="batches of 64 that re-estimate BatchNorm statistics after pruning (0: none)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--part", help="run only these nets and save their results to benchmarks/results/NAME.json "
                    "(networks can run in parallel processes); --merge writes the table from the parts")
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (1: the machine is shared)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny subsets, 1 seed, no doc update")
    args = ap.parse_args()
    if args.quick:
        args.train, args.ft_train, args.test, args.base_epochs, args.seeds, args.rounds = 512, 256, 256, 1, 1, 3
    torch.set_num_threads(args.threads)
    import torch_pruning as tp

    t0 = time.perf_counter()
    m = machine()
    m["torch_pruning"] = tp.__version__
    commit = git_commit()
    if args.merge:
        parts = [json.loads((RESULTS / f"prune_accuracy_{net}.json").read_text()) for net in args.nets.split(",")]
        results = {net: p["results"][net] for net, p in zip(args.nets.split(","), parts, strict=True)}
        wall = max(p["wall_seconds"] for p in parts)
        md = markdown(results, argparse.Namespace(**parts[0]["args"]), parts[0]["machine"], parts[0]["commit"], wall)
        write_results("prune_accuracy", {"machine": parts[0]["machine"], "commit": parts[0]["commit"],
                                         "args": parts[0]["args"], "results": results}, md)
        return
    results = {}
    for net in (args.part or args.nets).split(","):  # written after each network: a long run keeps what it has
        results[net] = run_net(net, args)
        md = markdown(results, args, m, commit, time.perf_counter() - t0)
        print(md, flush=True)
        if not args.quick:
            name = f"prune_accuracy_{args.part}" if args.part else "prune_accuracy"
            data = {"machine": m, "commit": commit, "args": vars(args), "results": results,
                    "wall_seconds": time.perf_counter() - t0}
            if args.part:
                write_json(RESULTS / f"{name}.json", data)
            else:
                write_results(name, data, md)


if __name__ == "__main__":
    main()
