"""Structured pruning that physically removes channels: smaller tensors, fewer MACs, a graph
that stays consistent (see `effai.prune.graph` for the dependency analysis).

`allocation="uniform"` removes `ratio` of every prunable group's channels.
`allocation="latency"` spends the same channel budget where removing channels saves the most
*measured* ONNX Runtime time (see `effai.prune.latency`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError
from effai.prune.core import check_sparsity, register_handler
from effai.prune.graph import DepGraph, Group, analyse

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


def importance(group: Group, kind: str, grads: dict | None = None) -> torch.Tensor:
    """Score of each channel of `group` (higher = keep)."""
    score = torch.zeros(group.size)
    if kind == "bn_scale":
        bns = [m for k, _, m in group.members if k == "bn"]
        if bns:
            for bn in bns:
                score += bn.weight.detach().abs()
            return score
        kind = "l1"  # no BatchNorm in this group: fall back to filter norms
    for k, fqn, m in group.members:
        if k not in ("out", "dw"):
            continue
        w = m.weight.detach().flatten(1)
        if len(w) != group.size:  # a depthwise conv over a concatenation: spans several groups
            continue
        if kind == "taylor":
            g = grads[fqn].flatten(1)
            score += (w * g).sum(1).abs()
        elif kind == "l2":
            score += w.pow(2).sum(1)
        else:
            score += w.abs().sum(1)
    return score


@torch.enable_grad()
def _taylor_grads(model: nn.Module, data, batches: int) -> dict:
    from effai.prune.unstructured import _batches

    mods = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))}
    grads = {n: torch.zeros_like(m.weight) for n, m in mods.items()}
    was = model.training
    model.eval()
    for x, y in _batches(data, batches):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for n, m in mods.items():
            if m.weight.grad is not None:
                grads[n] += m.weight.grad
    model.zero_grad(set_to_none=True)
    model.train(was)
    return grads


def plan(model: nn.Module, config: ChannelConfig, filter_fn=None) -> tuple[DepGraph, dict[int, int]]:
    """The dependency graph and how many channels each group keeps (root -> count)."""
    dg = analyse(model, example_input(model, config.input_shape))
    if filter_fn is not None:  # a group is prunable only if all its producers are selected
        dg.groups = [g for g in dg.groups if all(filter_fn(m, f) for k, f, m in g.members if k == "out")]
    if not dg.groups:
        raise InputError("model: no channel group can be pruned (all are pinned by the input, output or filter_fn)")
    if config.allocation == "latency":
        from effai.prune.latency import latency_allocation

        return dg, latency_allocation(model, dg, config)
    return dg, {g.root: keep_count(g.size, config.ratio, config.round_to, g.name) for g in dg.groups}


@torch.no_grad()
def apply_plan(model: nn.Module, dg: DepGraph, keep: dict[int, torch.Tensor]) -> nn.Module:
    """Slice every member of every group to the kept channel indices (sorted LongTensors)."""
    touched_in = set()
    for g in dg.groups:
        idx = keep.get(g.root)
        if idx is None or len(idx) == g.size:
            continue
        for kind, _fqn, m in g.members:
            if kind == "out":
                _slice_param(m, "weight", 0, idx)
                _slice_param(m, "bias", 0, idx)
                if isinstance(m, nn.Linear):
                    m.out_features = len(idx)
                else:
                    m.out_channels = len(idx)
            elif kind == "bn":
                for name in ("weight", "bias", "running_mean", "running_var"):
                    _slice_param(m, name, 0, idx)
                m.num_features = len(idx)
    # Consumers: rebuild each one's input index list from its (possibly concatenated) segments.
    for fqn, (m, segs) in dg.inputs.items():
        if not segs or fqn in touched_in:
            continue
        cols, offset, changed = [], 0, False
        for space, mult in segs:
            root = dg.uf.find(space)
            size = dg.uf.size[root]
            idx = keep.get(root)
            if idx is None or len(idx) == size:
                idx = torch.arange(size)
            else:
                changed = True
            # a flattened (C, H, W) input: channel c owns features c*mult ... c*mult + mult - 1
            cols.append(offset + (idx[:, None] * mult + torch.arange(mult)[None]).flatten())
            offset += size * mult
        touched_in.add(fqn)
        if not changed:
            continue
        cols = torch.cat(cols)
        if _is_depthwise(m):  # depthwise: filters follow the channels (dim 0), groups shrink
            _slice_param(m, "weight", 0, cols)
            _slice_param(m, "bias", 0, cols)
            m.in_channels = m.out_channels = m.groups = len(cols)
        else:
            _slice_param(m, "weight", 1, cols)
            if isinstance(m, nn.Linear):
                m.in_features = len(cols)
            else:
                m.in_channels = len(cols)
    return model


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _slice_param(m: nn.Module, name: str, dim: int, idx: torch.Tensor) -> None:
    t = getattr(m, name, None)
    if t is None:
        return
    new = t.detach().index_select(dim, idx).clone()
    if isinstance(t, nn.Parameter):
        setattr(m, name, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        setattr(m, name, new)  # a buffer: module.__setattr__ keeps it registered


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
