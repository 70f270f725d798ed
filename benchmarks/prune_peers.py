"""Structured pruning at 50% of channels: MAC reduction against measured latency speedup, at
1 thread and at ONNX Runtime's default thread count.

MobileNetV2 and ResNet-18 (effai zoo, torchvision layouts), pruned three ways in the same run:
- Torch-Pruning's MagnitudePruner (L1, pruning_ratio=0.5, classifier kept);
- effai uniform: `ChannelConfig(0.5, allocation="uniform")`, every group loses half its channels;
- effai latency-aware: `ChannelConfig(0.5, allocation="latency", round_to=16, threads=T)`, the same
  channel budget spent where ONNX Runtime, at the thread count T it is deployed with, measured
  the most time saved (effai.prune.latency), candidates checked as whole models.
All models are exported to ONNX and timed with ONNX Runtime (CPU, batch 1) in interleaved
rounds (median of the per-round means, effai.profile.latency.interleaved); a second copy of the
dense model is the noise control. At 1 thread the clock is the calling thread's CPU time (ONNX
Runtime computes on it; other processes' load does not enter, effai.prune.latency.clock_for);
at the default thread count it is wall time, which needs a quiet machine. At the default thread count (one per physical core) the
sessions set that count explicitly and stop spinning after each run
(effai.profile.latency.ort_session; docs/decisions.md, "Timing at ONNX Runtime's default thread
count"): ONNX Runtime's own default pins its workers to cores and lets idle pools spin, which on a
shared 2-core machine made identical models differ by up to 52%. Weights are random: this benchmark is about deployment cost,
not accuracy. Goal: speedup >= 0.8 x MAC reduction on both models at both thread counts.
Run: .venv/bin/python benchmarks/prune_peers.py [--resolution 224] [--rounds 7] [--threads 1,0] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from common import RESULTS, load, machine, machine_line, table, write_results
from common import commit as git_commit

import effai.profile as P
from effai import zoo
from effai.prune import ChannelConfig, prune_
from effai.prune.graph import analyse
from effai.prune.latency import measure_models
from effai.prune.structured import prune_to_counts, weigh_allocations

METHODS = ("dense", "dense (noise control)", "torch-pruning L1", "effai uniform L1", "effai latency-aware")


def torch_pruning(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    import torch_pruning as tp

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.5, ignored_layers=[last])
    pruner.step()
    return model


def latency_aware(model, x, cfg):
    """`prune_(model, cfg)` with the candidates it weighed (effai.prune.structured.weigh_allocations)."""
    dg = analyse(model, x)
    weighed = weigh_allocations(model, dg, cfg)
    return prune_to_counts(model, dg, next(a.keep for a in weighed if a.chosen)), weighed


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(name: str, resolution: int, rounds: int, threads: int) -> dict:
    torch.manual_seed(0)
    base = zoo.create(name, resolution=resolution).eval()
    shape = (1, 3, resolution, resolution)
    x = torch.randn(shape)
    built = {"dense": (base, 0.0), "dense (noise control)": (copy.deepcopy(base), 0.0)}
    built["torch-pruning L1"] = timed(lambda: torch_pruning(copy.deepcopy(base), x))
    built["effai uniform L1"] = timed(lambda: prune_(copy.deepcopy(base), ChannelConfig(
        0.5, input_shape=shape, allocation="uniform")))
    cfg = ChannelConfig(0.5, input_shape=shape, allocation="latency", round_to=16, threads=threads)
    (model, weighed), seconds = timed(lambda: latency_aware(copy.deepcopy(base), x, cfg))
    built["effai latency-aware"] = (model, seconds)
    load0 = load()[0]
    ms = measure_models([m for m, _ in built.values()], x, threads=threads, rounds=rounds, runs=10)
    out = {"load_avg_start": load0, "load_avg_end": load()[0], "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "methods": {},
           "candidates": [{"label": a.label, "latency_ms": a.latency_ms, "macs": a.macs, "efficiency": a.efficiency,
                           "chosen": a.chosen} for a in weighed]}
    for (k, (m, seconds)), t in zip(built.items(), ms, strict=True):
        with torch.no_grad():
            assert m(x).shape == base(x).shape, k
        prof = P.profile(m, example_inputs=x, latency=False)
        out["methods"][k] = {"params": prof.total.params, "macs": prof.total.macs, "latency_ms": t,
                             "prune_seconds": seconds}
    rows = out["methods"]
    for r in rows.values():
        r["mac_reduction"] = rows["dense"]["macs"] / r["macs"]
        r["speedup"] = rows["dense"]["latency_ms"] / r["latency_ms"]
        r["speedup_per_mac_reduction"] = r["speedup"] / r["mac_reduction"]
    return out


def thread_label(threads: int) -> str:
    return "1" if threads == 1 else f"ORT default ({threads or 'physical cores'})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    ap.add_argument("--threads", default="1,0", help="ONNX Runtime thread counts; 0 = its default")
    ap.add_argument("--report-only", action="store_true", help="rewrite the table from the saved results")
    ap.add_argument("--keep", action="store_true", help="keep the saved rows of the thread counts / models not rerun")
    ap.add_argument("--quick", action="store_true", help="96x96, 3 rounds, nothing written (proves the script runs)")
    args = ap.parse_args()
    if args.quick:
        args.resolution, args.rounds, args.keep = 96, 3, False
    torch.set_num_threads(1)
    import torch_pruning as tp

    old = RESULTS / "prune_peers.json"
    keep = (args.keep or args.report_only) and old.exists()
    results = json.loads(old.read_text())["results"] if keep else {}
    for threads in [] if args.report_only else [int(t) for t in args.threads.split(",")]:
        for name in args.models.split(","):
            results[f"{name}@{threads}"] = run(name, args.resolution, args.rounds, threads)
            print(json.dumps(results[f"{name}@{threads}"]), flush=True)
    if args.quick:
        return
    rows = []
    for key, r in sorted(results.items(), key=lambda kv: (kv[0].split("@")[1] != "1", kv[0])):
        name, threads = key.split("@")
        for k, v in r["methods"].items():
            rows.append([thread_label(int(threads)), name, k, f"{v['params'] / 1e6:.2f} M", f"{v['macs'] / 1e6:.0f} M",
                         f"{v['latency_ms']:.2f}", f"{v['mac_reduction']:.2f}x", f"{v['speedup']:.2f}x",
                         f"**{v['speedup_per_mac_reduction']:.2f}**" if k == "effai latency-aware"
                         else f"{v['speedup_per_mac_reduction']:.2f}", f"{v['prune_seconds']:.1f}",
                         f"{r['load_avg_start']:.1f}-{r['load_avg_end']:.1f}", r.get("commit", "")])
    m = machine()
    m["torch_pruning"] = tp.__version__
    commit = git_commit()
    data = {"machine": m, "commit": commit, "resolution": args.resolution, "rounds": args.rounds, "batch": 1,
            "results": results}
    md = (
        "## Structured pruning: MACs against measured latency (`benchmarks/prune_peers.py`)\n\n"
        f"50% of channels removed from MobileNetV2 and ResNet-18 (1.0 width, {args.resolution}x{args.resolution}, "
        "random weights: deployment cost only, not accuracy). Latency: ONNX Runtime CPU, batch 1, at 1 thread and "
        "at ONNX Runtime's default thread count (one per physical core, set explicitly: workers not pinned to cores, "
        "spinning stopped after each run, see docs/decisions.md), "
        f"{args.rounds} interleaved rounds x 10 runs, median of the per-round means (at 1 thread the calling thread's "
        "CPU time, which other processes' load leaves out; at the default count wall time); all variants of one model "
        "at one thread count are timed in the same rounds. *speedup / MAC reduction* is how much of the MAC saving "
        "turns into real time (goal >= 0.8). The *noise control* row is a second copy of the dense model: its "
        "'speedup' shows the timing noise. Torch-Pruning: `MagnitudePruner` with L1 importance, "
        "`pruning_ratio=0.5`, classifier ignored. effai latency-aware: `ChannelConfig(0.5, allocation=\"latency\", "
        "round_to=16, threads=T)` with T the thread count of the row: the same 50% channel budget, allocated from "
        "per-layer ONNX Runtime timings at T threads, the candidate allocations timed as whole models (quietest of 7 "
        "interleaved rounds) and the fastest whose speedup / MAC reduction reaches 0.85 kept; *prune s* includes "
        "that probing. Rows of one thread count come from one run (its commit and load are in the row). "
        "*load* is the 1-minute load average before and after the timing (2 cores, shared machine).\n\n"
        + table(["threads", "model", "method", "params", "MACs", "latency ms", "MAC reduction", "speedup",
                 "speedup / MAC reduction", "prune s", "load", "commit"], rows)
        + "\n\nTorch-Pruning L1 and effai uniform L1 remove the same channel counts, so their latency gap is a second "
        "noise measure: " + "; ".join(
            f"{k.split('@')[0]} at threads {thread_label(int(k.split('@')[1]))}: "
            f"{100 * abs(r['methods']['torch-pruning L1']['latency_ms'] / r['methods']['effai uniform L1']['latency_ms'] - 1):.0f}%"
            for k, r in results.items()) + "."
        + "\n\nCandidates the latency-aware allocation weighed (whole-model latency, speedup / MAC reduction over "
        "conv/linear MACs, measured during pruning; * = chosen):\n\n"
        + "\n".join(f"- {k.split('@')[0]}, threads {thread_label(int(k.split('@')[1]))}: " + ", ".join(
            f"{c['label']}{'*' if c['chosen'] else ''} {c['latency_ms']:.2f} ms / {c['efficiency']:.2f}"
            for c in r["candidates"]) for k, r in results.items())
        + f"\n\n{machine_line(m)} Torch-Pruning {tp.__version__}. Commit {commit}.\n"
    )
    write_results("prune_peers", data, md)


if __name__ == "__main__":
    main()
