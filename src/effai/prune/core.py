"""`prune_(model, config)`: frozen config dataclasses and a decorator registry of handlers.

As in torchao's `quantize_`, each method is a frozen dataclass; `prune_` looks up the handler
registered for the config's type and applies it. New methods are added with
`@register_handler(MyConfig)`, never by growing an if/elif chain.

Unstructured methods zero weights and keep a boolean mask as a plain attribute
(`module._effai_mask`), not a buffer, hook or parametrization: the model stays an ordinary
`nn.Module` (its state dict loads into a fresh model; QAT can wrap it), `apply_masks` re-zeroes
pruned weights after an optimizer step, and `make_permanent` drops the masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from effai.errors import InputError
from effai.prune.layers import find_handler
from effai.registry import Registry

FilterFn = Callable[[nn.Module, str], bool]
MASK = "_effai_mask"
_HANDLERS: Registry[type, Callable] = Registry("pruning method", argument="config")


def register_handler(config_type: type):
    """Decorator registering `fn(model, config, filter_fn) -> model` as the handler of
    `config_type` (and its subclasses); a type registered twice raises `DuplicateRegistration`."""
    return _HANDLERS.register(config_type)


def prunable(module: nn.Module, fqn: str = "") -> bool:
    """Default filter: the weights of layers whose output channels structured pruning can remove
    (those with a layer handler that produces channels: Conv1d/2d/3d, Linear, and any registered
    with `effai.prune.layers.register_layer`); not biases, not norms.

    >>> prunable(nn.Linear(2, 2)), prunable(nn.Conv3d(2, 2, 1)), prunable(nn.BatchNorm2d(2))
    (True, True, False)
    """
    handler = find_handler(module)
    return handler is not None and handler.produces_channels


def check_sparsity(value: float, what: str = "sparsity") -> float:
    """Validate a fraction in [0, 1).

    >>> check_sparsity(0.5)
    0.5
    >>> check_sparsity(1.0)
    Traceback (most recent call last):
    ...
    effai.errors.InputError: sparsity=1.0: expected a fraction in [0, 1)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise InputError(f"{what}={value!r}: expected a fraction in [0, 1)")
    return float(value)


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


def prune_(model: nn.Module, config, filter_fn: FilterFn | None = None) -> nn.Module:
    """Prune `model` in place with the method `config` names; returns the model.

    >>> from effai.prune import MagnitudeConfig, sparsity
    >>> net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> _ = prune_(net, MagnitudeConfig(sparsity=0.75))
    >>> round(sparsity(net), 2)
    0.75
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return _HANDLERS.lookup(type(config))(model, config, filter_fn or prunable)


def weight_of(module: nn.Module) -> torch.Tensor:
    """`module.weight` as the tensor it is (modules chosen by `targets` have one)."""
    w = module.weight
    if not isinstance(w, torch.Tensor):
        raise InputError(f"{type(module).__name__}: has no weight tensor to prune")
    return w


def targets(model: nn.Module, filter_fn: FilterFn) -> list[tuple[str, nn.Module]]:
    """(fqn, module) pairs whose `.weight` the filter selects."""
    out = [(n, m) for n, m in model.named_modules()
           if isinstance(getattr(m, "weight", None), torch.Tensor) and filter_fn(m, n)]
    if not out:
        raise InputError("filter_fn: selects no layer with a weight to prune")
    return out


@torch.no_grad()
def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Keep `mask` (True = kept) on the module and zero the pruned weights now."""
    mask = mask.to(torch.bool)
    old = getattr(module, MASK, None)
    if old is not None:
        mask = mask & old  # once pruned, a weight stays pruned
    setattr(module, MASK, mask)
    weight_of(module).mul_(mask)


@torch.no_grad()
def apply_masks(model: nn.Module) -> None:
    """Re-zero pruned weights (call after each optimizer step; `fit(after_step=...)`)."""
    for m in model.modules():
        mask = getattr(m, MASK, None)
        if mask is not None:
            weight_of(m).mul_(mask)


def make_permanent(model: nn.Module) -> nn.Module:
    """Drop masks (ours and `torch.nn.utils.prune`'s), leaving plain zeros in the weights.

    >>> from effai.prune import MagnitudeConfig
    >>> net = nn.Linear(8, 8)
    >>> _ = make_permanent(prune_(net, MagnitudeConfig(0.5)))
    >>> hasattr(net, "_effai_mask"), int((net.weight == 0).sum())
    (False, 32)
    """
    import torch.nn.utils.prune as tprune

    apply_masks(model)
    for m in model.modules():
        if hasattr(m, MASK):
            delattr(m, MASK)
        for name in [k[: -len("_orig")] for k, _ in list(m.named_parameters(recurse=False)) if k.endswith("_orig")]:
            tprune.remove(m, name)
    return model


def sparsity(model: nn.Module, filter_fn: FilterFn | None = None) -> float:
    """Fraction of zero weights over the layers `filter_fn` selects (default: conv + linear).

    >>> net = nn.Linear(4, 4)
    >>> with torch.no_grad():
    ...     _ = net.weight[:2].zero_()
    >>> sparsity(net)
    0.5
    """
    filter_fn = filter_fn or prunable
    zeros = total = 0
    for _, m in targets(model, filter_fn):
        w = weight_of(m)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


@dataclass(frozen=True)
class _Base:
    """Fields every unstructured config shares."""

    sparsity: float = 0.5
    scope: str = "layer"  # "layer": each layer to `sparsity`; "global": one threshold for all

    def __post_init__(self):
        check_sparsity(self.sparsity)
        if self.scope not in ("layer", "global"):
            raise InputError(f"scope={self.scope!r}: expected 'layer' or 'global'")
