"""Calibration (activation ranges from data) and BatchNorm folding.

Ranges per layer input, from a sample of the values seen on the calibration batches:
- minmax: the smallest and largest value seen;
- percentile: the `p`-th and (100-p)-th percentiles (clips rare outliers);
- entropy: the clipping threshold minimising the KL divergence between the 2048-bin
  histogram and its 256-level quantized version (TensorRT's method, Migacz 2017), never
  below the 99.9th percentile (KL over-clips histograms with spikes inside the range);
- mse: the clipping ratio (of the min/max range) minimising the mean squared error of the
  fake-quantized sample.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sized

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from effai.errors import InputError

_SAMPLE_PER_BATCH = 65_536
_SAMPLE_MAX = 1_048_576


def batches(calibration, max_batches: int | None = None):
    """Input tensors from a DataLoader, a tensor, a DataSplits, or a list of tensors / (x, y) pairs;
    a dict of named tensors (token ids + attention mask) gives dicts of 64-row chunks, which the
    model is called with as keyword arguments."""
    if isinstance(calibration, dict):
        return _named_batches(calibration, max_batches)
    if hasattr(calibration, "loaders") and hasattr(calibration, "train"):  # effai.data.DataSplits
        calibration = calibration.loaders(64)[0] if callable(calibration.loaders) else calibration.train
    if isinstance(calibration, torch.Tensor):
        if calibration.numel() == 0 or calibration.shape[0] == 0:
            raise InputError("calibration: the tensor is empty (0 samples); give at least one batch")
        it = calibration.split(64)
    elif isinstance(calibration, torch.utils.data.Dataset) and isinstance(calibration, Sized):
        if len(calibration) == 0:
            raise InputError("calibration: the data set is empty (0 samples)")
        it = torch.utils.data.DataLoader(calibration, batch_size=64)
    else:
        it = calibration
    out = []
    for i, b in enumerate(it):
        if max_batches is not None and i >= max_batches:
            break
        x = b[0] if isinstance(b, (tuple, list)) else b
        if not isinstance(x, torch.Tensor):
            raise InputError(f"calibration: batch {i} is a {type(x).__name__}, expected a tensor or (x, y)")
        if x.numel():
            out.append(x)
    if not out:
        raise InputError("calibration: the calibration set is empty (0 batches); give at least one batch")
    return out


def _named_batches(calibration: dict, max_batches: int | None) -> list[dict]:
    if not calibration or not all(isinstance(v, torch.Tensor) for v in calibration.values()):
        raise InputError("calibration: a dict of inputs maps names to tensors")
    n = len(next(iter(calibration.values())))
    if n == 0:
        raise InputError("calibration: the tensors are empty (0 samples); give at least one batch")
    chunks = [{k: v[i:i + 64] for k, v in calibration.items()} for i in range(0, n, 64)]
    return chunks[:max_batches] if max_batches is not None else chunks


class _Stats:
    def __init__(self, seed: int):
        self.lo = np.inf
        self.hi = -np.inf
        self.samples: list[np.ndarray] = []
        self.n = 0
        self.rng = np.random.default_rng(seed)

    def update(self, x: torch.Tensor):
        v = x.detach().float().reshape(-1).numpy()
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))
        if self.n < _SAMPLE_MAX:
            take = v if v.size <= _SAMPLE_PER_BATCH else self.rng.choice(v, _SAMPLE_PER_BATCH, replace=False)
            self.samples.append(take)
            self.n += take.size

    def sample(self) -> np.ndarray:
        return np.concatenate(self.samples)


def collect(model: nn.Module, layers: list[tuple[str, nn.Module]], calibration, max_batches=None,
            outputs: frozenset[str] = frozenset()) -> dict:
    """Run the calibration batches and gather input statistics for each layer (and output
    statistics, under "NAME:output", for the layers named in `outputs`)."""
    stats = {fqn: _Stats(i) for i, (fqn, _) in enumerate(layers)}
    stats.update({f"{fqn}:output": _Stats(len(layers) + i) for i, fqn in enumerate(sorted(outputs))})
    hooks = [m.register_forward_pre_hook(lambda mod, args, _f=fqn: stats[_f].update(args[0])) for fqn, m in layers]
    hooks += [m.register_forward_hook(lambda mod, args, y, _f=fqn: stats[f"{_f}:output"].update(y))
              for fqn, m in layers if fqn in outputs]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in batches(calibration, max_batches):
                model(**x) if isinstance(x, dict) else model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return stats


def _qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zp


def _fq(v, lo, hi):
    s, zp = _qparams(lo, hi)
    return (np.clip(np.round(v / s) + zp, -128, 127) - zp) * s


def choose_range(st: _Stats, method: str, percentile: float = 99.99) -> tuple[float, int]:
    """(scale, zero_point) for asymmetric int8 from the statistics and the method."""
    lo, hi = st.lo, st.hi
    if method == "minmax" or hi <= lo:
        return _qparams(lo, hi)
    v = st.sample()
    if method == "percentile":
        return _qparams(float(np.percentile(v, 100 - percentile)) if lo < 0 else lo,
                        float(np.percentile(v, percentile)))
    if method == "mse":
        best, best_err = (lo, hi), np.inf
        for r in np.linspace(0.3, 1.0, 36):
            err = float(np.mean((_fq(v, lo * r, hi * r) - v) ** 2))
            if err < best_err:
                best, best_err = (lo * r, hi * r), err
        return _qparams(*best)
    if method == "entropy":  # clip the top of the range [lo, hi] where KL says the tail is not worth it
        # KL alone can clip far too hard where the histogram has spikes inside the range (a
        # constant background gives one), because merging bins smears the spike; so the
        # threshold never goes below the 99.9th percentile of the non-minimum values.
        t = _kl_threshold(v - lo)
        rest = v[v > lo]
        floor = float(np.percentile(rest, 99.9)) - lo if rest.size else hi - lo
        return _qparams(lo, lo + max(t, floor))
    raise InputError(f"method must be minmax, percentile, entropy or mse, got {method!r}")


def _kl_threshold(v: np.ndarray, bins: int = 2048, levels: int = 256) -> float:
    """Threshold on non-negative data minimising KL(P || Q), P the clipped histogram, Q its
    `levels`-level quantization (mass of each level spread over its non-empty bins)."""
    amax = float(v.max()) if v.size else 0.0
    if amax <= 0:
        return 1e-8
    hist, edges = np.histogram(v, bins=bins, range=(0, amax))
    hist = hist.astype(np.float64)
    hist[0] = 0  # the spike at the range start (ReLU zeros, background) is exact in any range
    best_i, best_kl = bins, np.inf
    for i in range(levels, bins + 1, 16):
        if not hist[:i].any():
            continue
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # outliers clipped into the last bin
        idx = np.floor(np.arange(i) * levels / i).astype(int)
        nonempty = (hist[:i] > 0).astype(float)
        sums = np.bincount(idx, weights=hist[:i], minlength=levels)
        cnts = np.bincount(idx, weights=nonempty, minlength=levels)
        q = nonempty * sums[idx] / np.maximum(cnts[idx], 1)
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-12)
        m = pn > 0
        kl = float(np.sum(pn[m] * np.log(pn[m] / np.maximum(qn[m], 1e-12))))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(edges[min(best_i, bins)])


# ------------------------------------------------------------------ where INT8 kernels write int8
_COMMUTING_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten,
                      nn.Dropout, nn.Identity)
_COMMUTING_CALLS = {"relu", "relu_", "flatten", "view", "reshape", "max_pool2d", "hardtanh", "relu6", "dropout"}


def _commutes(node, mods) -> bool:
    """Rounding commutes with this fx node (monotone, or moving values only; an adaptive average
    pool whose output has its input's size is an identity)."""
    if node.op == "call_module":
        m = mods.get(node.target)
        if isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd):
            meta = node.meta.get("tensor_meta"), node.args[0].meta.get("tensor_meta")
            return all(meta) and tuple(meta[0].shape) == tuple(meta[1].shape)
        return isinstance(m, _COMMUTING_MODULES)
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", node.target) in _COMMUTING_CALLS
    return False


def rounded_outputs(model: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, str | None]:
    """The quantized layers (of `names`) whose output an INT8 kernel writes in int8 although the
    simulation so far did not round it: those whose output, through ops rounding commutes with,
    reaches something other than quantized layers (a residual Add, a concatenation), and not only
    the model's output. Each maps to the quantized layer it also feeds (its input rounding is the
    same numbers, and keeps the two exact), or None (round with the output's own range).
    Empty where the model does not trace with torch.fx."""
    try:
        import torch.fx
        from torch.fx.passes.shape_prop import ShapeProp

        gm = torch.fx.symbolic_trace(model)
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints the traceback
            ShapeProp(gm).propagate(*example.values()) if isinstance(example, dict) else ShapeProp(gm).propagate(example)
    except Exception:  # noqa: BLE001 - untraceable models keep the layer-input-only scheme
        return {}
    mods, wanted, out = dict(gm.named_modules()), set(names), {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in wanted:
            continue
        end = node
        while len(end.users) == 1 and _commutes(next(iter(end.users)), mods):
            end = next(iter(end.users))
        users = list(end.users)
        quantized = [u.target for u in users if u.op == "call_module" and u.target in wanted]
        if len(quantized) == len(users) or all(u.op == "output" for u in users):
            continue  # rounded exactly by the consumers' input rounding already, or the model's output
        out[node.target] = quantized[0] if quantized else None
    return out


# ------------------------------------------------------------------ BatchNorm folding
def fold_bn_(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every BatchNorm that directly follows a Conv (and is its only consumer) into the conv.

    The BN is replaced by Identity; returns the (conv, bn) pairs folded. Uses torch.fx to find
    pairs; where the model does not trace, pairs adjacent in an nn.Sequential are folded.

    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> x = torch.randn(2, 3, 8, 8); y = m(x)
    >>> fold_bn_(m), torch.allclose(m(x), y, atol=1e-5), type(m[1]).__name__
    ([('0', '1')], True, 'Identity')
    """
    pairs = _pairs_fx(model)
    if pairs is None:
        pairs = _pairs_sequential(model)
    from effai.quantize.core import set_module

    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        assert isinstance(conv, _ConvNd) and isinstance(bn, _BatchNorm)  # what the pair finders match
        _fold(conv, bn)
        set_module(model, bn_name, nn.Identity())
    return pairs


def _fold(conv: _ConvNd, bn: _BatchNorm) -> None:
    if bn.running_var is None or bn.running_mean is None:
        raise InputError("a BatchNorm without running statistics cannot be folded into its conv; pass fold_bn=False")
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
        factor = gamma / std
        conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_b = (b - bn.running_mean) * factor + beta
        conv.bias = nn.Parameter(new_b.detach().clone())


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _pairs_fx(model):
    try:
        import torch.fx

        gm = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - untraceable models fall back to Sequential scanning
        return None
    mods = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), _BNS):
            src = node.args[0]
            if (getattr(src, "op", None) == "call_module" and isinstance(mods.get(src.target), _CONVS)
                    and len(src.users) == 1 and mods[src.target].out_channels == mods[node.target].num_features):
                pairs.append((src.target, node.target))
    # a conv shared by several call sites must not be folded twice
    seen, out = set(), []
    for c, b in pairs:
        if c not in seen:
            seen.add(c)
            out.append((c, b))
    return out


def _pairs_sequential(model):
    pairs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:], strict=False):
                if isinstance(a, _CONVS) and isinstance(b, _BNS) and a.out_channels == b.num_features:
                    pre = f"{name}." if name else ""
                    pairs.append((pre + n1, pre + n2))
    return pairs
