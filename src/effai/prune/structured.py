"""Structured pruning that physically removes channels: smaller tensors, fewer MACs, a graph
that stays consistent (see `effai.prune.graph` for the dependency analysis).

`allocation="uniform"` removes `ratio` of every prunable group's channels.
`allocation="latency"` spends the same channel budget where removing channels saves the most
*measured* ONNX Runtime time (see `effai.prune.latency`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError
from effai.prune.channels import PRODUCER, Channels
from effai.prune.core import check_sparsity, register_handler
from effai.prune.graph import DepGraph, Group, analyse
from effai.prune.layers import find_handler, handler_for

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor")


@dataclass(frozen=True)
class ChannelConfig:
    """Remove `ratio` of the channels of each prunable group (conv/linear outputs and
    everything tied to them), ranked by `importance`.

    `input_shape` is one example input's shape, batch included, e.g. (1, 3, 224, 224)
    (needed to trace shapes through flatten); `round_to` rounds the kept channel count to a
    multiple CPU kernels like (8 or 16); `data` feeds the "taylor" importance.
    `allocation="latency"` lets no group lose more than `max_ratio` of its channels and times
    its probes with `threads` ONNX Runtime threads.

    >>> ChannelConfig(0.5, input_shape=(1, 3, 32, 32)).importance
    'l1'
    """

    ratio: float = 0.5
    importance: str = "l1"
    input_shape: tuple | None = None
    round_to: int = 1
    allocation: str = "uniform"  # uniform | latency
    max_ratio: float = 0.75  # latency allocation: the most any one group may lose
    data: object = None
    batches: int = 4
    threads: int = 1  # latency allocation: ONNX Runtime threads used for the measurements

    def __post_init__(self):
        check_sparsity(self.ratio, "ratio")
        if self.importance not in IMPORTANCES:
            raise InputError(f"importance={self.importance!r}: expected one of {', '.join(IMPORTANCES)}")
        if self.importance == "taylor" and self.data is None:
            raise InputError("importance='taylor': needs data (a DataLoader or DataSplits)")
        if self.allocation not in ("uniform", "latency"):
            raise InputError(f"allocation={self.allocation!r}: expected 'uniform' or 'latency'")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise InputError(f"round_to={self.round_to!r}: expected a positive integer")
        check_sparsity(self.max_ratio, "max_ratio")


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


def keep_count(n: int, ratio: float, round_to: int, where: str) -> int:
    """Channels to keep out of `n` when removing `ratio`, rounded to a multiple of `round_to`.

    >>> keep_count(64, 0.5, 1, "conv"), keep_count(100, 0.5, 16, "conv"), keep_count(12, 0.5, 16, "c")
    (32, 48, 12)
    >>> keep_count(4, 0.9, 1, "features.0")
    Traceback (most recent call last):
    ...
    effai.errors.InputError: ratio=0.9 would leave layer 'features.0' with 0 of its 4 channels
    """
    keep = int(round(n * (1 - ratio)))
    if keep < 1:
        raise InputError(f"ratio={ratio} would leave layer {where!r} with 0 of its {n} channels")
    if round_to > 1:
        keep = min(n, max(round_to, int(round(keep / round_to)) * round_to))
    return keep


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


def importance(group: Group, kind: str, grads: dict | None = None) -> torch.Tensor:
    """Score of each channel of `group` (higher = keep): the criterion summed over the filters of
    every member; "bn_scale" sums the members' |gamma| (l1 where the group has no BatchNorm)."""
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


def _rows(group: Group, mem, t: torch.Tensor | None) -> torch.Tensor | None:
    """The rows of a per-channel tensor (dim 0 over the member's channels) that belong to `group`."""
    if t is None:
        return None
    t = t.detach().flatten(1) if t.dim() > 1 else t.detach()
    return t[mem.offset:mem.offset + group.size]


@torch.enable_grad()
def _taylor_grads(model: nn.Module, data, batches: int) -> dict:
    """Gradient of the loss for every layer's filters, summed over `batches` batches of `data`."""
    from effai.prune.unstructured import _batches

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
    if config.allocation == "latency":
        from effai.prune.latency import latency_allocation

        return dg, latency_allocation(model, dg, config)
    return dg, {g.root: keep_count(g.size, config.ratio, config.round_to, g.name) for g in dg.groups}


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


def channel_indices(g: Group, n_keep: int, kind: str, grads=None) -> torch.Tensor:
    """The `n_keep` most important channels of `g`, in their original order."""
    return importance(g, kind, grads).topk(n_keep).indices.sort().values


@register_handler(ChannelConfig)
def _prune_channels(model: nn.Module, config: ChannelConfig, filter_fn) -> nn.Module:
    from effai.prune.core import prunable

    dg, counts = plan(model, config, None if filter_fn is prunable else filter_fn)
    grads = _taylor_grads(model, config.data, config.batches) if config.importance == "taylor" else None
    keep = {g.root: channel_indices(g, counts[g.root], config.importance, grads) for g in dg.groups}
    return apply_plan(model, dg, keep)
