"""Mixed precision: how much each layer minds being quantized, then bit-widths under a budget.

`sensitivity` quantizes one layer at a time (weight-only, each candidate format) and measures
the model's accuracy and the SQNR of its output logits against the float model. `choose`
starts every layer at the cheapest format and, while the budget allows, upgrades the layer
whose upgrade removes the most output noise per extra byte (or per extra bit-operation):
a greedy knapsack on the measured noise 10^(-SQNR/10), which adds up roughly across layers.

Budgets: `budget_bytes` (weight storage: params x bits / 8 plus one fp32 scale per channel)
or `budget_bops` (MACs x weight bits x activation bits, the bit-operation count used by
HAQ/HAWQ as a latency proxy; an estimate, not a measurement).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

import effai.numerics as nx
from effai.errors import InputError
from effai.quantize.config import MixedPrecisionConfig
from effai.quantize.core import SUPPORTED, check_finite, default_filter, quantize_, select

_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8, "fp4_e2m1": 4,
         "int8": 8, "int4": 4, "int2": 2, "ternary": 2, "binary": 1}


@dataclass
class LayerSensitivity:
    layer: str
    type: str
    params: int
    macs: int
    fmt: str
    accuracy: float | None
    accuracy_drop: float | None
    sqnr_db: float

    def to_dict(self):
        return asdict(self)


def _macs(model: nn.Module, layers, x: torch.Tensor) -> dict[str, int]:
    out = {}

    def hook(mod, args, y, _f):
        n = y.shape[0]
        if isinstance(mod, nn.Linear):
            out[_f] = int(y.numel() // n * mod.in_features)
        else:
            k = math.prod(mod.kernel_size) * (mod.in_channels // mod.groups)
            out[_f] = int(y.numel() // n * k)

    hs = [m.register_forward_hook(lambda mod, a, y, _f=f: hook(mod, a, y, _f)) for f, m in layers]
    with torch.no_grad():
        model(x[:1])
    for h in hs:
        h.remove()
    return out


def _accuracy(model, loader) -> float:
    from effai.train import score

    return float(score(model, loader).accuracy)


def sensitivity(model: nn.Module, example: torch.Tensor, loader=None, formats=("int8", "int4", "int2"),
                filter_fn=None) -> list[LayerSensitivity]:
    """Per-layer sensitivity: quantize only that layer (weight-only) to each format.

    `example` is a batch used for output SQNR against the float model (and MAC counts);
    `loader` (optional) adds accuracy.

    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> rows = sensitivity(m, torch.randn(32, 8), formats=("int8", "int2"))
    >>> [(r.layer, r.fmt) for r in rows][:2], rows[0].sqnr_db > rows[1].sqnr_db
    ([('0', 'int8'), ('0', 'int2')], True)
    """
    for f in formats:
        if f not in _BITS:
            raise InputError(f"formats: unknown format {f!r}; expected some of {', '.join(_BITS)}")
    model.eval()
    layers: list[tuple[str, nn.Module]] = [(f, m) for f, m in select(model, filter_fn or default_filter)
                                           if isinstance(m, SUPPORTED)]
    check_finite(layers)
    if not layers:
        raise InputError("model: no Conv/Linear layers to quantize")
    macs = _macs(model, layers, example)
    with torch.no_grad():
        ref = model(example)
    base_acc = _accuracy(model, loader) if loader is not None else None
    rows = []
    for fqn, mod in layers:
        for fmt in formats:
            m2 = copy.deepcopy(model)
            quantize_(m2, MixedPrecisionConfig({}, default=fmt), filter_fn=_only(fqn))
            with torch.no_grad():
                out = m2(example)
            acc = _accuracy(m2, loader) if loader is not None else None
            rows.append(LayerSensitivity(
                fqn, type(mod).__name__, mod.get_parameter("weight").numel(), macs.get(fqn, 0), fmt, acc,
                None if acc is None or base_acc is None else base_acc - acc, nx.sqnr_db(ref, out)))
    return rows


def _only(fqn: str) -> Callable[[nn.Module, str], bool]:
    """A filter selecting the one layer called `fqn`."""
    return lambda module, name: name == fqn


def _cost(row_params, row_macs, out_ch, fmt, kind, act_bits):
    bits = _BITS[fmt]
    if kind == "bytes":
        return row_params * bits / 8 + (4 * out_ch if fmt in ("int8", "int4", "int2", "ternary", "binary") else 0)
    a = 32 if fmt == "fp32" else (16 if bits == 16 else act_bits)
    return row_macs * bits * a


def choose(model: nn.Module, table: list[LayerSensitivity], budget_bytes: float | None = None,
           budget_bops: float | None = None, act_bits: int = 8) -> tuple[MixedPrecisionConfig, dict]:
    """Pick a format per layer under the budget; returns (config, summary).

    The candidate formats are those in `table` plus "fp32" (noise 0). Layers left at fp32
    are the ones `config.layer_formats` names "fp32".
    """
    if (budget_bytes is None) == (budget_bops is None):
        raise InputError("choose: give exactly one of budget_bytes or budget_bops")
    kind = "bytes" if budget_bytes is not None else "bops"
    given = budget_bytes if budget_bytes is not None else budget_bops
    assert given is not None  # exactly one was given (checked above)
    budget = float(given)
    by_layer: dict[str, dict[str, LayerSensitivity]] = {}
    for r in table:
        by_layer.setdefault(r.layer, {})[r.fmt] = r
    mods = dict(model.named_modules())
    opts = {}
    for layer, fm in by_layer.items():
        any_row = next(iter(fm.values()))
        out_ch = mods[layer].weight.shape[0] if layer in mods and getattr(mods[layer], "weight", None) is not None \
            else 1
        cands = []
        for fmt, r in fm.items():
            noise = 0.0 if math.isinf(r.sqnr_db) else 10 ** (-r.sqnr_db / 10)
            cands.append((_cost(r.params, r.macs, out_ch, fmt, kind, act_bits), noise, fmt))
        cands.append((_cost(any_row.params, any_row.macs, out_ch, "fp32", kind, act_bits), 0.0, "fp32"))
        cands.sort()
        opts[layer] = cands
    pick = {layer: 0 for layer in opts}
    total = sum(opts[layer][0][0] for layer in opts)
    if total > budget:
        raise InputError(f"budget {budget:.0f} {kind} is below the cheapest assignment ({total:.0f} {kind})")
    while True:
        best = None
        for layer, cands in opts.items():
            cur = cands[pick[layer]]
            for j in range(pick[layer] + 1, len(cands)):
                c = cands[j]
                extra = c[0] - cur[0]
                gain = cur[1] - c[1]
                if gain <= 0 or total + extra > budget:
                    continue
                score = gain / max(extra, 1e-9)
                if best is None or score > best[0]:
                    best = (score, layer, j, extra)
        if best is None:
            break
        _, layer, j, extra = best
        pick[layer] = j
        total += extra
    formats = {layer: opts[layer][pick[layer]][2] for layer in opts}
    noise = sum(opts[layer][pick[layer]][1] for layer in opts)
    summary = {"budget": budget, "unit": kind, "cost": total, "estimated_output_sqnr_db":
               (math.inf if noise == 0 else 10 * math.log10(1 / noise)), "formats": formats,
               "higher_precision_layers": sorted(k for k, v in formats.items() if _BITS[v] > 8)}
    return MixedPrecisionConfig(formats, default="fp32"), summary


def mixed_precision(model, example, loader=None, budget_bytes=None, budget_bops=None,
                    formats=("int8", "int4", "int2")):
    """Sensitivity table plus a ready-to-apply MixedPrecisionConfig under the budget.

    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    >>> table, cfg, info = mixed_precision(m, torch.randn(16, 64), budget_bytes=4000)
    >>> info["cost"] <= 4000, set(cfg.layer_formats) == {"0", "2"}
    (True, True)
    """
    table = sensitivity(model, example, loader, formats)
    cfg, info = choose(model, table, budget_bytes, budget_bops)
    return table, cfg, info
