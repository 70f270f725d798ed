"""Measured latency for pruning decisions: interleaved ONNX Runtime timing and the
latency-aware channel allocation.

MACs are not latency: on a CPU a 1x1 conv with few channels, a depthwise conv or a layer
whose channel count is not a multiple of the SIMD width saves far less time than its MACs
promise. So the allocation measures, with ONNX Runtime at batch 1, how much time removing
channels from each group saves in the whole model (fusions and memory effects included), and
spends the channel budget where a removed channel saves the most time.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effai.errors import InputError


def ort_session(model: nn.Module, example: torch.Tensor, path: Path, threads: int = 1):
    """Export `model` to ONNX at `path` and open a CPU ONNX Runtime session on it."""
    from effai.profile.latency import export_onnx
    from effai.profile.latency import ort_session as open_session

    export_onnx(model, example, path)
    return open_session(path, threads)


def measure_models(models: list[nn.Module], example: torch.Tensor, threads: int = 1, rounds: int = 5,
                   runs: int = 10, statistic: str = "median") -> list[float]:
    """ONNX Runtime latency (ms, batch of `example`) of several models, timed side by side in
    `rounds` interleaved rounds of `runs` calls: each model's median round, or its fastest with
    `statistic="min"` (effai.profile.latency.interleaved)."""
    from effai.profile.latency import interleaved

    feed = example.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = [ort_session(m, example, Path(tmp) / f"m{i}.onnx", threads) for i, m in enumerate(models)]
        calls = {i: (lambda s=s, n=s.get_inputs()[0].name: s.run(None, {n: feed})) for i, s in enumerate(sessions)}
        ms = interleaved(calls, rounds=rounds, inner=runs, warmup=3, statistic=statistic)
    return [ms[i] for i in range(len(models))]


def latency_allocation(model: nn.Module, dg, config) -> dict[int, int]:
    """Channels to keep per group (root -> count) spending `config.ratio` of all prunable
    channels where the measured time saved per removed channel is largest."""
    from effai.prune.graph import analyse
    from effai.prune.structured import apply_plan, example_input, keep_count

    example = example_input(model, config.input_shape)
    cap = max(config.max_ratio, config.ratio)
    probes, removed = [], {}
    for g in dg.groups:
        k = keep_count(g.size, cap, config.round_to, g.name)
        removed[g.root] = g.size - k
        probe = copy.deepcopy(model).eval()
        pdg = analyse(probe, example)
        pdg.groups = [pg for pg in pdg.groups if pg.root == g.root]
        if not pdg.groups:
            raise InputError(f"layer {g.name!r}: the analysis is not deterministic; cannot measure it")
        apply_plan(probe, pdg, {g.root: torch.arange(k)})
        probes.append(probe)
    # each probe's saving is a small difference of two timings: judge each by its quietest round
    ms = measure_models([copy.deepcopy(model).eval(), *probes], example, threads=config.threads, rounds=7,
                        statistic="min")
    base = ms[0]
    per_channel = {g.root: (base - t) / max(1, removed[g.root]) for g, t in zip(dg.groups, ms[1:], strict=False)}

    budget = config.ratio * sum(g.size for g in dg.groups)
    keep = {g.root: g.size for g in dg.groups}
    for g in sorted(dg.groups, key=lambda g: -per_channel[g.root]):
        if budget <= 0:
            break
        want = min(removed[g.root], int(np.ceil(budget)))
        k = keep_count(g.size, want / g.size, config.round_to, g.name) if want > 0 else g.size
        keep[g.root] = k
        budget -= g.size - k
    return keep
