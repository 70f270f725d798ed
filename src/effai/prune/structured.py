"""Structured pruning that physically removes channels: smaller tensors, fewer MACs, a graph
that stays consistent (see `effai.prune.graph` for the dependency analysis).

`allocation="uniform"` removes `ratio` of every prunable group's channels.
`allocation="latency"` spends the same channel budget where removing channels saves the most
*measured* ONNX Runtime time per MAC removed (see `effai.prune.latency`).
`allocation="auto"` (the default) is "latency" for a model large enough that its layers' times
stand out from the runtime's per-call overhead (`AUTO_MIN_MACS`), where probing takes seconds,
and "uniform" for smaller ones, whose per-layer timings would be noise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError
from effai.prune import latency
from effai.prune.channels import PRODUCER, Channels
from effai.prune.core import check_sparsity, keep_count, prunable, register_handler
from effai.prune.graph import DepGraph, Group, analyse
from effai.prune.layers import find_handler, handler_for
from effai.prune.unstructured import _batches

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "group_l1")
ALLOCATIONS = ("auto", "latency", "uniform")
# `allocation="auto"` measures (allocation="latency") models with at least this many MACs per
# example: about 1 ms a call on one core, where single layers take tens of microseconds or more.
AUTO_MIN_MACS = 20_000_000


@dataclass(frozen=True)
class ChannelConfig:
    """Remove `ratio` of the channels of each prunable group (conv/linear outputs and
    everything tied to them), ranked by `importance`.

    `input_shape` is one example input's shape, batch included, e.g. (1, 3, 224, 224)
    (needed to trace shapes through flatten); `round_to` rounds the kept channel count to a
    multiple CPU kernels like (8 or 16); `data` feeds the "taylor" importance.
    `allocation="latency"` spends the same channel budget where ONNX Runtime, run with
    `threads` threads (the thread count you deploy with; 0 = ONNX Runtime's default, one per
    physical core), measures the most time saved per MAC removed, and lets no group lose more
    than `max_ratio` of its channels: of the allocations it weighs, the fastest whose measured
    speedup / MAC reduction is at least `min_efficiency` (MACs removed must turn into time;
    0 = the fastest, whatever its MACs). `allocation="auto"` (default) does that for models of at
    least `AUTO_MIN_MACS` MACs and is uniform below; `allocation="uniform"` asks for uniform.

    >>> ChannelConfig(0.5, input_shape=(1, 3, 32, 32)).importance
    'l1'
    """

    ratio: float = 0.5
    importance: str = "l1"
    input_shape: tuple | None = None
    round_to: int = 1
    allocation: str = "auto"  # auto | latency | uniform
    max_ratio: float = 0.75  # latency allocation: the most any one group may lose
    data: object = None
    batches: int = 4
    threads: int = 1  # latency allocation: ONNX Runtime threads used for the measurements (0: its default)
    min_efficiency: float = 0.85  # latency allocation: the least speedup / MAC reduction it accepts

    def __post_init__(self):
        check_sparsity(self.ratio, "ratio")
        if self.importance not in IMPORTANCES:
            raise InputError(f"importance={self.importance!r}: expected one of {', '.join(IMPORTANCES)}")
        if self.importance == "taylor" and self.data is None:
            raise InputError("importance='taylor': needs data (a DataLoader or DataSplits)")
        if self.allocation not in ALLOCATIONS:
            raise InputError(f"allocation={self.allocation!r}: expected one of {', '.join(ALLOCATIONS)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise InputError(f"threads={self.threads!r}: expected a thread count >= 1, or 0 for the runtime's default")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise InputError(f"round_to={self.round_to!r}: expected a positive integer")
        check_sparsity(self.max_ratio, "max_ratio")
        if isinstance(self.min_efficiency, bool) or not isinstance(self.min_efficiency, (int, float)) \
                or not 0 <= self.min_efficiency <= 2:
            raise InputError(f"min_efficiency={self.min_efficiency!r}: expected a number in [0, 2]")


def example_input(model: nn.Module, shape) -> torch.Tensor:
    """A zero tensor of `shape`, or (1, C, 32, 32) with C from the first conv/linear."""
    if shape is not None:
        return torch.zeros(tuple(shape))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return torch.zeros(1, m.in_channels, 32, 32)
        if isinstance(m, nn.Linear):
            return torch.zeros(1, m.in_features)
    raise InputError("input_shape: cannot guess the model's input; pass input_shape=(1, C, H, W)")


# How a criterion scores each channel from its filter rows (and their gradients, for taylor).
CRITERIA: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "l1": lambda w, g: w.abs().sum(1),
    "l2": lambda w, g: w.pow(2).sum(1),
    "taylor": lambda w, g: (w * _given(g)).sum(1).abs(),  # first-order loss change (Molchanov et al. 2019)
}


def _given(g: torch.Tensor | None) -> torch.Tensor:
    if g is None:
        raise InputError("importance='taylor': needs the gradients of the filters (config.data)")
    return g


def importance(group: Group, kind: str, grads: dict | None = None, dg: DepGraph | None = None) -> torch.Tensor:
    """Score of each channel of `group` (higher = keep): the criterion summed over the filters of
    every member; "bn_scale" sums the members' |gamma| (l1 where the group has no BatchNorm);
    "group_l1" (needs `dg`) adds to l1 the L1 norm of every weight the channel feeds in its
    consumers and its BatchNorm |gamma| (DepGraph's group importance, Fang et al. 2023, as
    Torch-Pruning's MagnitudeImportance sums it): behind a BatchNorm a filter's norm says
    little, since the norm rescales it; what the channel's output is multiplied by downstream
    does (on a trained ResNet-8, 1-2 pp more accuracy after fine-tuning than l1)."""
    if kind == "group_l1":
        return _group_l1(group, dg)
    if kind == "bn_scale":
        scales = [_rows(group, mem, handler_for(mem.module).scale(mem.module)) for mem in group.members]
        found = [s.abs() for s in scales if s is not None]
        if found:
            return torch.stack(found).sum(0)
        kind = "l1"
    score = torch.zeros(group.size)
    for mem in group.members:
        rows = _rows(group, mem, handler_for(mem.module).filters(mem.module))
        if rows is not None:
            g = _rows(group, mem, grads[mem.fqn]) if grads is not None else None
            score += CRITERIA[kind](rows, g)
    return score


def _group_l1(group: Group, dg: DepGraph | None) -> torch.Tensor:
    if dg is None:
        raise InputError("importance='group_l1': needs the dependency graph")
    terms = []
    for mem in group.members:
        h = handler_for(mem.module)
        for t in (h.filters(mem.module), h.scale(mem.module)):
            rows = _rows(group, mem, t)
            if rows is not None:
                terms.append(rows.abs().sum(1) if rows.dim() > 1 else rows.abs())
    for module, x in dg.consumers.values():
        if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
            continue  # a depthwise conv is a member: its filters are counted above
        w = handler_for(module).filters(module)
        offset = 0
        for seg in x.segments:
            root, m = dg.spaces.find(seg.space), seg.multiplier
            size = dg.spaces.size[root]
            if root == group.root and w is not None and w.dim() >= 2:
                cols = w.detach().transpose(0, 1)[offset:offset + size * m]  # (size * m, out, ...)
                terms.append(cols.reshape(size, -1).abs().sum(1))
            offset += size * m
    return torch.stack(terms).sum(0) if terms else torch.zeros(group.size)


def _rows(group: Group, mem, t: torch.Tensor | None) -> torch.Tensor | None:
    """The rows of a per-channel tensor (dim 0 over the member's channels) that belong to `group`."""
    if t is None:
        return None
    t = t.detach().flatten(1) if t.dim() > 1 else t.detach()
    return t[mem.offset:mem.offset + group.size]


@torch.enable_grad()
def _taylor_grads(model: nn.Module, data, batches: int) -> dict:
    """Gradient of the loss for every layer's filters, summed over `batches` batches of `data`."""
    filters = {n: w for n, m in model.named_modules()
               if (h := find_handler(m)) is not None and (w := h.filters(m)) is not None}
    grads = {n: torch.zeros_like(w) for n, w in filters.items()}
    was = model.training
    model.eval()
    for x, y in _batches(data, batches):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, w in filters.items():
            if w.grad is not None:
                grads[n] += w.grad
    model.zero_grad(set_to_none=True)
    model.train(was)
    return grads


def plan(model: nn.Module, config: ChannelConfig, filter_fn=None) -> tuple[DepGraph, dict[int, int]]:
    """The dependency graph and how many channels each group keeps (root -> count)."""
    dg = analyse(model, example_input(model, config.input_shape))
    if filter_fn is not None:  # a group is prunable only if all its producers are selected
        dg.groups = [g for g in dg.groups if all(filter_fn(m.module, m.fqn) for m in g.members if m.role == PRODUCER)]
    if not dg.groups:
        raise InputError("model: no channel group can be pruned (all are pinned by the input, output or filter_fn)")
    if allocation_of(model, config) == "latency":
        return dg, latency_allocation(model, dg, config)
    return dg, {g.root: keep_count(g.size, config.ratio, config.round_to, g.name) for g in dg.groups}


@dataclass(frozen=True)
class Allocation:
    """One allocation the latency-aware search weighed: kept channels per group (root -> count),
    the pruned model's measured latency and conv/linear MACs, and speedup / MAC reduction
    against the dense model timed in the same rounds."""

    label: str
    keep: dict
    latency_ms: float
    macs: int
    efficiency: float
    chosen: bool = False


def weigh_allocations(model: nn.Module, dg: DepGraph, config: ChannelConfig) -> list[Allocation]:
    """The candidates `effai.prune.latency.candidates` builds from per-layer timings, pruned and
    timed as whole models side by side with the dense one; the fastest whose speedup / MAC
    reduction reaches `config.min_efficiency` is marked chosen (`latency.choose`)."""
    example = example_input(model, config.input_shape)
    cands = latency.candidates(model, dg, example, config.ratio, max(config.max_ratio, config.ratio),
                               config.round_to, config.threads)
    models = [copy.deepcopy(model).eval()]
    for _, keep in cands:
        m = copy.deepcopy(model).eval()
        mdg = analyse(m, example)
        apply_plan(m, mdg, {g.root: torch.arange(keep[g.root]) for g in mdg.groups})  # timing: any channels
        models.append(m)
    # the quietest of 7 rounds: on a busy machine load only adds time, and a burst must not
    # push the fastest candidate below min_efficiency
    ms = latency.measure_models(models, example, threads=config.threads, rounds=7, statistic="min")
    macs = [latency.conv_macs(m, example) for m in models]
    best = latency.choose(ms[1:], macs[1:], ms[0], macs[0], config.min_efficiency)
    return [Allocation(label, keep, t, n, (ms[0] / t) / (macs[0] / max(1, n)), i == best)
            for i, ((label, keep), t, n) in enumerate(zip(cands, ms[1:], macs[1:], strict=True))]


def latency_allocation(model: nn.Module, dg: DepGraph, config: ChannelConfig) -> dict[int, int]:
    """Kept channels per group (root -> count) of the allocation `weigh_allocations` chooses."""
    return next(a.keep for a in weigh_allocations(model, dg, config) if a.chosen)


def allocation_of(model: nn.Module, config: ChannelConfig) -> str:
    """The allocation `config` asks for, with "auto" resolved for `model` ("latency" or "uniform")."""
    if config.allocation != "auto":
        return config.allocation
    example = example_input(model, config.input_shape)
    return "latency" if latency.conv_macs(model, example) >= AUTO_MIN_MACS else "uniform"




@torch.no_grad()
def apply_plan(model: nn.Module, dg: DepGraph, keep: dict[int, torch.Tensor]) -> nn.Module:
    """Slice every group's producers to the kept channel indices (sorted LongTensors, root ->
    indices), then every consumer's input to the entries that survive."""
    for g in dg.groups:
        idx = keep.get(g.root)
        if idx is None or len(idx) == g.size:
            continue
        for mem in g.members:
            if mem.role == PRODUCER:
                handler_for(mem.module).prune_out(mem.module, idx)
    for module, x in dg.consumers.values():
        entries = _kept_entries(dg, x, keep)
        if entries is not None:
            handler_for(module).prune_in(module, entries)
    return model


def _kept_entries(dg: DepGraph, x: Channels, keep: dict[int, torch.Tensor]) -> torch.Tensor | None:
    """Indices along a consumer's channel axis that survive `keep`; None when all do."""
    cols, offset, changed = [], 0, False
    for seg in x.segments:
        root = dg.spaces.find(seg.space)
        size = dg.spaces.size[root]
        idx = keep.get(root)
        if idx is None or len(idx) == size:
            idx = torch.arange(size)
        else:
            changed = True
        # a flattened (C, H, W) input: channel c owns entries c*m ... c*m + m - 1 (m = H*W)
        m = seg.multiplier
        cols.append(offset + (idx[:, None] * m + torch.arange(m)[None]).flatten())
        offset += size * m
    return torch.cat(cols) if changed else None


def channel_indices(g: Group, n_keep: int, kind: str, grads=None, dg: DepGraph | None = None) -> torch.Tensor:
    """The `n_keep` most important channels of `g`, in their original order."""
    return importance(g, kind, grads, dg).topk(n_keep).indices.sort().values


def prune_to_counts(model: nn.Module, dg: DepGraph, counts: dict[int, int], kind: str = "l1", data=None,
                    batches: int = 4) -> nn.Module:
    """Keep `counts[root]` channels of each group of `dg` (analysed on `model`), the most
    important by `kind` ("taylor" reads `batches` batches of `data`)."""
    grads = _taylor_grads(model, data, batches) if kind == "taylor" else None
    return apply_plan(model, dg, {g.root: channel_indices(g, counts[g.root], kind, grads, dg) for g in dg.groups})


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data, batches: int = 16) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from `batches` batches of `data`
    (a DataLoader of (x, y) or DataSplits; the average over all of them), weights unchanged.

    Removing channels changes what each layer sees, so the statistics a BatchNorm learned on the
    dense model no longer match its input; re-estimating them right after pruning recovers much
    of the accuracy before any fine-tuning (Li et al. 2020, EagleEye, adaptive BN).

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    >>> data = [(torch.randn(8, 1, 6, 6) + 3.0, torch.zeros(8, dtype=torch.long))]
    >>> float(recalibrate_batchnorm(net, data)[1].running_mean.abs().sum()) > 0
    True
    """
    from torch.optim.swa_utils import update_bn

    was = model.training
    update_bn(_batches(data, batches), model)  # cumulative average over the batches, momentum restored
    model.train(was)
    return model


@register_handler(ChannelConfig)
def _prune_channels(model: nn.Module, config: ChannelConfig, filter_fn) -> nn.Module:
    dg, counts = plan(model, config, None if filter_fn is prunable else filter_fn)
    return prune_to_counts(model, dg, counts, config.importance, config.data, config.batches)
