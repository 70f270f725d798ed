"""Structured pruning at 50% of channels: MAC reduction against measured latency speedup.

MobileNetV2 and ResNet-18 (effai zoo, torchvision layouts), pruned three ways in the same run:
- Torch-Pruning's MagnitudePruner (L1, pruning_ratio=0.5, classifier kept);
- effai uniform: `ChannelConfig(0.5, importance="l1")`, every group loses half its channels;
- effai latency-aware: `ChannelConfig(0.5, allocation="latency", round_to=16)`, the same
  channel budget spent where ONNX Runtime measured the largest time saved per channel.
All models are exported to ONNX and timed with ONNX Runtime (CPU, batch 1, 1 thread) in
interleaved rounds (median of the per-round means, effai.profile.latency.interleaved). Weights are random: this benchmark is
about deployment cost, not accuracy. Goal: speedup >= 0.8 x MAC reduction on both models.
Run: .venv/bin/python benchmarks/prune_peers.py [--resolution 224] [--rounds 7]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import machine, machine_line, table, write_results

import effai.profile as P
from effai import zoo
from effai.prune import ChannelConfig, prune_
from effai.prune.latency import measure_models


def torch_pruning(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    import torch_pruning as tp

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.5, ignored_layers=[last])
    pruner.step()
    return model


def run(name: str, resolution: int, rounds: int) -> dict:
    torch.manual_seed(0)
    base = zoo.create(name, resolution=resolution).eval()
    shape = (1, 3, resolution, resolution)
    x = torch.randn(shape)
    # a second copy of the dense model: its "speedup" shows the measurement noise
    variants = {"dense": base, "dense (noise control)": copy.deepcopy(base)}
    t0 = time.perf_counter()
    variants["torch-pruning L1"] = torch_pruning(copy.deepcopy(base), x)
    t_tp = time.perf_counter() - t0
    t0 = time.perf_counter()
    variants["effai uniform L1"] = prune_(copy.deepcopy(base), ChannelConfig(0.5, input_shape=shape))
    t_uni = time.perf_counter() - t0
    t0 = time.perf_counter()
    variants["effai latency-aware"] = prune_(copy.deepcopy(base), ChannelConfig(
        0.5, input_shape=shape, allocation="latency", round_to=16))
    t_lat = time.perf_counter() - t0
    ms = measure_models(list(variants.values()), x, threads=1, rounds=rounds, runs=10)
    out = {}
    for (k, m), t in zip(variants.items(), ms, strict=True):
        with torch.no_grad():
            assert m(x).shape == base(x).shape, k
        prof = P.profile(m, example_inputs=x, latency=False)
        out[k] = {"params": prof.total.params, "macs": prof.total.macs, "latency_ms": t}
    for r in out.values():
        r["mac_reduction"] = out["dense"]["macs"] / r["macs"]
        r["speedup"] = out["dense"]["latency_ms"] / r["latency_ms"]
        r["speedup_per_mac_reduction"] = r["speedup"] / r["mac_reduction"]
    out["dense"]["prune_seconds"] = out["dense (noise control)"]["prune_seconds"] = 0.0
    out["torch-pruning L1"]["prune_seconds"] = t_tp
    out["effai uniform L1"]["prune_seconds"] = t_uni
    out["effai latency-aware"]["prune_seconds"] = t_lat
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import torch_pruning as tp

    results = {}
    rows = []
    for name in args.models.split(","):
        results[name] = run(name, args.resolution, args.rounds)
        for k, r in results[name].items():
            rows.append([name, k, f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e6:.0f} M", f"{r['latency_ms']:.2f}",
                         f"{r['mac_reduction']:.2f}x", f"{r['speedup']:.2f}x", f"{r['speedup_per_mac_reduction']:.2f}",
                         f"{r['prune_seconds']:.1f}"])
            print(rows[-1], flush=True)
    m = machine()
    m["torch_pruning"] = tp.__version__
    data = {"machine": m, "resolution": args.resolution, "rounds": args.rounds, "threads": 1, "batch": 1,
            "results": results}
    md = (
        "## Structured pruning: MACs against measured latency (`benchmarks/prune_peers.py`)\n\n"
        f"50% of channels removed from MobileNetV2 and ResNet-18 (1.0 width, {args.resolution}x{args.resolution}, "
        "random weights: deployment cost only, not accuracy). Latency: ONNX Runtime CPU, batch 1, 1 thread, "
        f"{args.rounds} interleaved rounds x 10 runs, median of the per-round means; all variants of one model "
        "are timed in the same rounds. *speedup / MAC reduction* is how much of the MAC saving turns "
        "into real time (goal >= 0.8). The *noise control* row is a second copy of the dense model: its 'speedup' shows the timing noise. Torch-Pruning: `MagnitudePruner` with L1 importance, "
        "`pruning_ratio=0.5`, classifier ignored. effai latency-aware: the same 50% channel budget, "
        "allocated by measured ONNX Runtime time saved per channel, channel counts rounded to 16.\n\n"
        + table(["model", "method", "params", "MACs", "latency ms", "MAC reduction", "speedup",
                 "speedup / MAC reduction", "prune s"], rows)
        + f"\n\n{machine_line(m)} Torch-Pruning {tp.__version__}.\n"
    )
    write_results("prune_peers", data, md)


if __name__ == "__main__":
    main()
