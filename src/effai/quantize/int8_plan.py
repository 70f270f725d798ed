"""Where a deployed static-INT8 graph holds int8 tensors, found on the torch model (torch.fx),
so that the simulation rounds at exactly those places and the exported file, run on fast
kernels, computes what the torch model computes.

The fast CPU graph (ONNX Runtime's QLinearConv / QLinearAdd / QLinearGlobalAveragePool, OpenVINO's
INT8 pipeline) keeps every tensor between quantized layers in int8: a layer writes int8, a
residual Add reads two int8 tensors and writes int8, pooling reads and writes int8. So:

- a quantized layer's input is rounded (its ActQuant, calibrated on the layer's input);
- its output is rounded too where it reaches something other than quantized layers (an Add, a
  pooling, a concatenation): with the range of the quantized layer it also feeds (the same
  numbers), else with the range of the tensor after the ReLU/ReLU6 that follows it (what a
  QLinearConv with the activation fused writes);
- a residual Add whose two operands are int8 writes int8: its result (after the ReLU that
  follows it) is rounded by the module that returns it (`round_module_output`, a forward hook
  and an ActQuant child named `effai_output_quant`), with the range of the quantized layer
  reading it, else its own; an Add inside a module, followed there by other ops, stays float;
- layers reading the same tensor share one input range (one QuantizeLinear feeds them all).

A model that torch.fx cannot trace keeps the layer-input-only scheme (every plan entry empty).
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn as nn

OUTPUT_QUANT = "effai_output_quant"

_COMMUTING_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Flatten,
                      nn.Dropout, nn.Identity)
_COMMUTING_CALLS = {"relu", "relu_", "flatten", "view", "reshape", "max_pool2d", "hardtanh", "relu6", "dropout"}
_ADDS = {operator.add, operator.iadd, torch.add}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Int8Plan:
    """Where the simulation rounds, besides each quantized layer's input.

    `layer_outputs`: layer -> the quantized layer whose input range rounds its output, or None
    (its own output range, clamped to `output_clamps[layer]`: the bounds of the ReLU/ReLU6 after it);
    `module_outputs`: module returning a residual Add -> the quantized layer whose range rounds
    it, or None (its own); `shared_inputs`: layer -> the first layer reading the same tensor.
    """

    layer_outputs: dict[str, str | None] = field(default_factory=dict)
    output_clamps: dict[str, tuple[float, float]] = field(default_factory=dict)
    module_outputs: dict[str, str | None] = field(default_factory=dict)
    shared_inputs: dict[str, str] = field(default_factory=dict)


def _clamp_of(node, mods) -> tuple[float, float]:
    """The value bounds an elementwise op imposes ((-inf, inf) for pooling and reshapes)."""
    m = mods.get(node.target) if node.op == "call_module" else None
    name = getattr(node.target, "__name__", node.target) if m is None else None
    if isinstance(m, nn.ReLU6) or name == "relu6":
        return 0.0, 6.0
    if isinstance(m, nn.ReLU) or name in ("relu", "relu_"):
        return 0.0, math.inf
    if isinstance(m, nn.Hardtanh):
        return float(m.min_val), float(m.max_val)
    if name == "hardtanh":
        return float(node.kwargs.get("min_val", -1.0)), float(node.kwargs.get("max_val", 1.0))
    return -math.inf, math.inf


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


def _chain_end(node, mods):
    """The last node of the single-use chain of commuting ops after `node`, and their bounds."""
    lo, hi, end = -math.inf, math.inf, node
    while len(end.users) == 1 and _commutes(next(iter(end.users)), mods):
        end = next(iter(end.users))
        a, b = _clamp_of(end, mods)
        lo, hi = max(lo, a), min(hi, b)
    return end, (lo, hi)


def _stack(node) -> list[str]:
    return [v[0] if isinstance(v, tuple) else k for k, v in (node.meta.get("nn_module_stack") or {}).items()]


def _returned_by(gm, mods, calls: dict[str, int]) -> dict:
    """fx node -> the innermost module (called once, not a container) whose forward returns it:
    the one node of the module's region that nodes outside the region read."""
    regions: dict[str, list] = {}
    for n in gm.graph.nodes:
        for path in _stack(n):
            regions.setdefault(path, []).append(n)
    out: dict = {}
    for path, nodes in regions.items():
        inside = set(nodes)
        leaving = [n for n in nodes if any(u not in inside for u in n.users)]
        if (len(leaving) != 1 or calls.get(path) != 1 or path not in mods
                or isinstance(mods[path], _CONTAINERS)):
            continue
        depth = path.count(".") + 1
        if leaving[0] not in out or out[leaving[0]][1] < depth:
            out[leaving[0]] = (path, depth)
    return {n: p for n, (p, _) in out.items()}


def _call_counts(model: nn.Module, example) -> dict[str, int]:
    counts: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda mod, a, y, _n=n: counts.__setitem__(_n, counts.get(_n, 0) + 1))
             for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(**example) if isinstance(example, dict) else model(example)
    finally:
        for h in hooks:
            h.remove()
    return counts


def plan(model: nn.Module, names: list[str], example) -> Int8Plan:
    """Where the deployed INT8 graph of `model`, with the layers `names` quantized, holds int8
    (see the module doc); empty where the model does not trace with torch.fx. `example`: an
    input tensor, or a dict of them (a model with several inputs)."""
    try:
        import torch.fx
        from torch.fx.passes.shape_prop import ShapeProp

        gm = torch.fx.symbolic_trace(model)
        placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
        args = [example[p] for p in placeholders] if isinstance(example, dict) else [example]
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints the traceback
            ShapeProp(gm).propagate(*args)
    except Exception:  # noqa: BLE001 - untraceable models keep the layer-input-only scheme
        return Int8Plan()
    mods, wanted = dict(gm.named_modules()), set(names)
    returned = _returned_by(gm, mods, _call_counts(model, example))
    result = Int8Plan()
    int8 = set()  # fx nodes the deployed graph holds in int8
    readers: dict = {}  # fx node -> the first quantized layer reading it

    def quantized(n) -> bool:
        return n.op == "call_module" and n.target in wanted

    for node in gm.graph.nodes:
        if quantized(node):
            src = node.args[0]
            if src in readers:
                result.shared_inputs[node.target] = readers[src]
            readers.setdefault(src, node.target)
            end, bounds = _chain_end(node, mods)
            users = list(end.users)
            layers = [u.target for u in users if quantized(u)]
            if len(layers) == len(users) or all(u.op == "output" for u in users):
                continue  # rounded exactly by the consumers' input rounding already, or the model's output
            result.layer_outputs[node.target] = layers[0] if layers else None
            result.output_clamps[node.target] = bounds
            int8.add(end)
        elif _commutes(node, mods) and node.args and node.args[0] in int8:
            int8.add(node)  # an Identity shortcut, a reshape: still int8
        elif (node.op == "call_function" and node.target in _ADDS and len(node.args) == 2
              and all(a in int8 for a in node.args)):
            end, _ = _chain_end(node, mods)
            path = returned.get(end)
            if path is None:
                continue  # the Add's result is used inside its module: it stays float
            layers = [u.target for u in end.users if quantized(u)]
            result.module_outputs[path] = layers[0] if layers else None
            int8.add(end)
    return result


def _round_output(module: nn.Module, args, output):
    """Forward hook: the module's output rounded by its `effai_output_quant` (see the module doc)."""
    act = module._modules.get(OUTPUT_QUANT)
    return act(output) if act is not None and isinstance(output, torch.Tensor) else output


def round_module_output(module: nn.Module, act: nn.Module) -> None:
    """Round `module`'s output with `act` from now on (an INT8 kernel writes it in int8)."""
    module.add_module(OUTPUT_QUANT, act)
    module.register_forward_hook(_round_output)
