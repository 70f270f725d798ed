"""Unstructured (weight-level) pruning: magnitude, Optimal Brain Damage, first-order Taylor,
and the gradual polynomial schedule of Zhu & Gupta (2017) run through `effai.train.fit`.

Scores (a weight with a low score is pruned first):
- magnitude: |w| (Han et al. 2015).
- OBD (LeCun et al. 1989): saliency 0.5 * h_kk * w^2. The diagonal Hessian is approximated by
  the diagonal of the empirical Fisher, E[g^2] over mini-batches: for a log-likelihood loss
  it is the expectation of the Gauss-Newton term LeCun backpropagated (second-derivative terms
  of the network dropped, as in the paper).
- Taylor (Molchanov et al. 2017): |E[g] * w|, the first-order change of the loss when w -> 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError
from effai.prune.core import _Base, apply_masks, make_permanent, register_handler, set_mask, targets


@dataclass(frozen=True)
class MagnitudeConfig(_Base):
    """Prune the smallest |w|. `scope="global"` ranks all selected layers together.

    >>> MagnitudeConfig(0.9, scope="global").sparsity
    0.9
    """


@dataclass(frozen=True)
class OBDConfig(_Base):
    """Optimal Brain Damage: saliency 0.5 * diag(H) * w^2 from `batches` batches of `data`
    (a DataLoader, a `DataSplits` or an iterable of (x, y))."""

    data: object = None
    batches: int = 8
    scope: str = "global"

    def __post_init__(self):
        super().__post_init__()
        _check_data(self.data, type(self).__name__)


@dataclass(frozen=True)
class TaylorConfig(OBDConfig):
    """First-order Taylor saliency |E[dL/dw] * w| from `batches` batches of `data`."""


def _check_data(data, who: str) -> None:
    if data is None:
        raise InputError(f"{who}.data: this method needs data (a DataLoader or DataSplits), got None")


def _batches(data, n: int):
    loader = data.loaders(64)[0] if hasattr(data, "loaders") else data
    for i, (x, y) in enumerate(loader):
        if i >= n:
            break
        yield x, y


@torch.enable_grad()
def _grad_stats(model: nn.Module, mods, data, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer E[g] and E[g^2] of the cross-entropy loss over `n` batches."""
    was = model.training
    model.eval()  # fixed BN statistics: the scores describe the deployed network
    g1 = [torch.zeros_like(m.weight) for m in mods]
    g2 = [torch.zeros_like(m.weight) for m in mods]
    seen = 0
    for x, y in _batches(data, n):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for i, m in enumerate(mods):
            g = m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)
            g1[i] += g
            g2[i] += g * g
        seen += 1
    model.zero_grad(set_to_none=True)
    model.train(was)
    if seen == 0:
        raise InputError("data: yielded no batches")
    return [g / seen for g in g1], [g / seen for g in g2]


def scores(model: nn.Module, config, mods) -> list[torch.Tensor]:
    """Saliency of every weight of `mods` under `config` (higher = more important)."""
    if isinstance(config, TaylorConfig):
        g1, _ = _grad_stats(model, mods, config.data, config.batches)
        return [(g * m.weight).abs().detach() for g, m in zip(g1, mods, strict=False)]
    if isinstance(config, OBDConfig):
        _, g2 = _grad_stats(model, mods, config.data, config.batches)
        return [(0.5 * h * m.weight**2).detach() for h, m in zip(g2, mods, strict=False)]
    return [m.weight.detach().abs() for m in mods]


def _kth(values: torch.Tensor, k: int) -> float:
    return float(values.kthvalue(k).values) if k > 0 else -math.inf


@torch.no_grad()
def _prune_unstructured(model: nn.Module, config, filter_fn) -> nn.Module:
    pairs = targets(model, filter_fn)
    mods = [m for _, m in pairs]
    sc = scores(model, config, mods)
    # Weights already pruned stay pruned and count toward the target.
    for s, m in zip(sc, mods, strict=False):
        old = getattr(m, "_effai_mask", None)
        if old is not None:
            s[~old] = -1.0
    if config.scope == "global":
        flat = torch.cat([s.flatten() for s in sc])
        k = int(round(config.sparsity * flat.numel()))
        thr = _kth(flat, k)
        masks = [_mask_at(s, thr, k, flat.numel()) for s in sc]
    else:
        masks = []
        for s in sc:
            k = int(round(config.sparsity * s.numel()))
            masks.append(_topk_mask(s, s.numel() - k))
    for m, mask in zip(mods, masks, strict=False):
        set_mask(m, mask)
    return model


def _topk_mask(s: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros(s.numel(), dtype=torch.bool)
    if keep > 0:
        mask[s.flatten().topk(keep).indices] = True
    return mask.view_as(s)


def _mask_at(s: torch.Tensor, thr: float, k: int, n: int) -> torch.Tensor:
    return s > thr if k > 0 else torch.ones_like(s, dtype=torch.bool)


for _cfg in (MagnitudeConfig, OBDConfig, TaylorConfig):
    register_handler(_cfg)(_prune_unstructured)


@dataclass(frozen=True)
class PolynomialSchedule:
    """Sparsity s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^power for t0 <= t <= t1
    (Zhu & Gupta 2017), in epochs; pruning happens at the start of each epoch.
    `end_epoch=None` ends the ramp at 3/4 of training so the last quarter fine-tunes.

    >>> s = PolynomialSchedule(initial_sparsity=0.0, end_epoch=4)
    >>> [round(s.at(t, 0.8, 8), 3) for t in range(6)]
    [0.0, 0.463, 0.7, 0.788, 0.8, 0.8]
    """

    initial_sparsity: float = 0.0
    begin_epoch: int = 0
    end_epoch: int | None = None
    power: float = 3.0

    def at(self, epoch: int, final: float, epochs: int) -> float:
        t1 = self.end_epoch if self.end_epoch is not None else max(self.begin_epoch + 1, int(0.75 * epochs))
        if epoch <= self.begin_epoch:
            return self.initial_sparsity
        if epoch >= t1:
            return final
        frac = (epoch - self.begin_epoch) / max(1, t1 - self.begin_epoch)
        return final + (self.initial_sparsity - final) * (1 - frac) ** self.power


def gradual(model: nn.Module, data, config, schedule: PolynomialSchedule | None = None, train_config=None,
            filter_fn=None, permanent: bool = True, progress: bool = False):
    """Prune to `config.sparsity` gradually while fine-tuning with `effai.train.fit`.

    Masks are re-applied after every optimizer step (`after_step`) and tightened at the end
    of every epoch (`on_epoch_end`); with `permanent`, masks are dropped at the end.
    Returns the `TrainResult`.

    >>> from effai import data as D, train
    >>> ds = D.load("synthetic", n=200, shape=(1, 8, 8), num_classes=2)
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    >>> from effai.prune import MagnitudeConfig, sparsity
    >>> r = gradual(net, ds, MagnitudeConfig(0.8), train_config=train.TrainConfig(epochs=4))
    >>> round(sparsity(net), 2)
    0.8
    """
    from effai.prune.core import prune_
    from effai.train import TrainConfig, fit

    schedule = schedule or PolynomialSchedule()
    train_config = train_config or TrainConfig(epochs=10)
    epochs = train_config.epochs
    final = config.sparsity

    def step_to(epoch: int):
        import dataclasses

        s = schedule.at(epoch, final, epochs)
        if s > 0:
            prune_(model, dataclasses.replace(config, sparsity=s), filter_fn)

    step_to(0)
    result = fit(model, data, train_config, progress=progress, after_step=apply_masks,
                 on_epoch_end=lambda epoch, m: step_to(epoch + 1))
    if permanent:
        make_permanent(model)
    return result
