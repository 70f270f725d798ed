"""A float PyTorch model plus calibration inputs -> the int8 Graph of ir.py.

Three passes: trace with torch.fx into float ops (BatchNorm and ReLU still separate), fuse
(BatchNorm folded into the conv or dense layer before it, ReLU/ReLU6 into the op before it),
then calibrate (min/max of every tensor over the calibration inputs, run through the float ops
themselves) and quantize (per-channel symmetric weights, asymmetric int8 activations).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError
from effai.mcu.ir import Graph, Op, Tensor, quantize_multiplier


@dataclass
class FOp:
    kind: str  # conv, dwconv, fc, bn, relu, relu6, add, avgpool, maxpool
    name: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    w: Any = None  # float weight tensor (conv, dense, BatchNorm scale)
    b: Any = None  # float bias tensor
    act: str = "none"  # none | relu | relu6


_ALIAS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
_ALIAS_FUNCS = {torch.flatten, F.dropout}
_ALIAS_METHODS = {"flatten", "contiguous"}
_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6"}
_ADD_FUNCS = {operator.add, torch.add, operator.iadd}


def trace(model: nn.Module) -> tuple[list[FOp], str, str]:
    """Float ops in execution order, the input name and the output name."""
    try:
        gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # noqa: BLE001 - any tracing failure is the user's model, reported in one line
        raise InputError(f"model: cannot trace with torch.fx for the microcontroller compiler ({str(e).splitlines()[0][:120]})") from None
    mods = dict(gm.named_modules())
    alias: dict[str, str] = {}
    ops: list[FOp] = []
    inp = out = None

    def src(a) -> str:
        if not isinstance(a, torch.fx.Node):
            raise InputError(f"model: constant operand {a!r} is not supported on the microcontroller path")
        return alias.get(a.name, a.name)

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            if inp is not None:
                raise InputError("model: the microcontroller path takes models with one input")
            inp = n.name
        elif n.op == "output":
            out = src(n.args[0])
        elif n.op == "call_module" and isinstance(mods[n.target], _ALIAS_MODULES) or _is_alias(n):
            alias[n.name] = src(n.args[0])
        elif n.op == "call_module":
            ops.append(_module_op(mods[n.target], n.target, src(n.args[0]), n.name))
        else:
            ops.append(_function_op(n, src))
    if inp is None or out is None:
        raise InputError("model: the traced graph has no input or no output")
    return ops, inp, out


def _is_alias(n) -> bool:
    return (n.op == "call_function" and n.target in _ALIAS_FUNCS) or (n.op == "call_method" and n.target in _ALIAS_METHODS)


def _function_op(n, src) -> FOp:
    """A float op for a call_function / call_method node (ReLU, add, global average pooling)."""
    fn, method = n.op == "call_function", n.op == "call_method"
    if (fn and n.target in _RELU_FUNCS) or (method and n.target == "relu"):
        return FOp(_RELU_FUNCS.get(n.target, "relu"), n.name, [src(n.args[0])], n.name)
    if (fn and n.target in _ADD_FUNCS) or (method and n.target == "add"):
        return FOp("add", n.name, [src(n.args[0]), src(n.args[1])], n.name)
    if fn and n.target is F.adaptive_avg_pool2d and _is_one(n.args[1]):
        return FOp("avgpool", n.name, [src(n.args[0])], n.name, {"global": True})
    what = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
    raise InputError(f"model: operation {what!r} ({n.name}) is not supported on the microcontroller path")


class _Tracer(torch.fx.Tracer):
    """Keeps effai's quantized layers (QuantLayer) whole: they lower like the float layer they wrap."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m).__name__ == "QuantLayer" or super().is_leaf_module(m, qualname)


def _is_one(size) -> bool:
    return size in (1, (1, 1), [1, 1])


def _module_op(module: nn.Module, fqn: str, x: str, out: str) -> FOp:
    m: Any = module
    w: Any = getattr(m, "weight", None)
    if type(m).__name__ == "QuantLayer":  # effai.quantize: its int8 weights, dequantized, re-quantize to the same codes
        _check_quant_layer(m, fqn)
        w = m.dequantized_weight()
        m = m.layer
    w = w.detach().float().clone() if isinstance(w, torch.Tensor) else None
    bias: Any = getattr(m, "bias", None)
    b = bias.detach().clone() if isinstance(bias, torch.Tensor) else None
    if isinstance(m, nn.Conv2d):
        return _conv_op(m, fqn, x, out, w, b)
    if isinstance(m, nn.Linear):
        return FOp("fc", fqn, [x], out, {}, w, b)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return FOp("bn", fqn, [x], out, {"mean": _buffer(m, "running_mean"), "var": _buffer(m, "running_var"), "eps": m.eps},
                   w, b)
    if isinstance(m, (nn.ReLU, nn.ReLU6)):
        return FOp("relu6" if isinstance(m, nn.ReLU6) else "relu", fqn, [x], out)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _is_one(m.output_size):
            return FOp("avgpool", fqn, [x], out, {"global": True})
        return FOp("avgpool", fqn, [x], out, {"global": False, "adaptive": _pair(m.output_size)})
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        return _pool_op(m, fqn, x, out)
    raise InputError(f"model: layer {fqn} ({type(m).__name__}) is not supported on the microcontroller path")


def _check_quant_layer(m: nn.Module, fqn: str) -> None:
    if getattr(m, "fmt", None) != "int8":
        raise InputError(f"model: {fqn}: {getattr(m, 'fmt', '?')} weights; the microcontroller path takes int8 "
                         "(Int8StaticConfig) or float models")
    act: Any = getattr(m, "act", None)
    if act is not None and act.mode == "dynamic":
        raise InputError(f"model: {fqn}: dynamic int8 quantization has no static activation scales for a microcontroller")


def _buffer(m: nn.Module, name: str) -> torch.Tensor:
    t = getattr(m, name)
    if not isinstance(t, torch.Tensor):
        raise InputError(f"model: {type(m).__name__} without {name} (track_running_stats=False) cannot be folded")
    return t.clone()


def _conv_op(m: nn.Conv2d, fqn: str, x: str, out: str, w, b) -> FOp:
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or m.dilation != (1, 1):
        raise InputError(f"model: {fqn}: only zero-padded, undilated convolutions with explicit padding are supported")
    attrs = {"kernel": m.kernel_size, "stride": m.stride, "pad": m.padding}
    if m.groups == 1:
        return FOp("conv", fqn, [x], out, attrs, w, b)
    if m.groups == m.in_channels == m.out_channels:
        return FOp("dwconv", fqn, [x], out, attrs, w, b)
    raise InputError(f"model: {fqn}: grouped convolution (groups={m.groups}) is not supported on the microcontroller path")


def _pool_op(m: nn.AvgPool2d | nn.MaxPool2d, fqn: str, x: str, out: str) -> FOp:
    k, s, p = (_pair(v) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding))
    if isinstance(m, nn.AvgPool2d) and p != (0, 0):
        raise InputError(f"model: {fqn}: padded average pooling is not supported on the microcontroller path")
    if getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
        raise InputError(f"model: {fqn}: ceil_mode/dilated pooling is not supported on the microcontroller path")
    kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
    return FOp(kind, fqn, [x], out, {"kernel": k, "stride": s, "pad": p, "global": False})


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def fuse(ops: list[FOp], keep: set[str]) -> list[FOp]:
    """Fold BatchNorm into the conv/dense layer before it and ReLU/ReLU6 into the op before it,
    when that op's output has no other reader (`keep`: tensors that must survive, e.g. the output)."""
    out: list[FOp] = []
    gone: set[int] = set()
    for op in ops:
        prev = next((p for p in reversed(out) if p.output == op.inputs[0]), None) if op.kind in ("bn", "relu", "relu6") else None
        readers = sum(op.inputs[0] in o.inputs for o in ops if id(o) not in gone)
        if prev is None or readers != 1 or prev.output in keep or prev.act != "none":
            prev = None
        if op.kind == "bn" and prev is not None and prev.kind in ("conv", "dwconv", "fc"):
            _fold_bn(prev, op)
        elif op.kind in ("relu", "relu6") and prev is not None and prev.kind in ("conv", "dwconv", "fc", "add"):
            prev.act = op.kind
        elif op.kind == "bn":
            raise InputError(f"model: BatchNorm {op.name} does not follow a convolution or dense layer; it cannot be folded")
        else:
            out.append(op)
            continue
        gone.add(id(op))
        if op.output in keep:  # the fused op takes the kept name (the graph's output keeps its name)
            _rename(ops, prev.output, op.output)
            prev.output = op.output
        else:
            _rename(ops, op.output, prev.output)
    return out


def _rename(ops: list[FOp], old: str, new: str) -> None:
    for o in ops:
        o.inputs = [new if i == old else i for i in o.inputs]


def _fold_bn(op: FOp, bn: FOp) -> None:
    gamma = bn.w if bn.w is not None else torch.ones_like(bn.attrs["mean"])
    beta = bn.b if bn.b is not None else torch.zeros_like(bn.attrs["mean"])
    factor = gamma / torch.sqrt(bn.attrs["var"] + bn.attrs["eps"])
    op.w = op.w * factor.reshape(-1, *([1] * (op.w.dim() - 1)))
    b = op.b if op.b is not None else torch.zeros_like(factor)
    op.b = (b - bn.attrs["mean"]) * factor + beta


def run_float(ops: list[FOp], inp: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor of the float graph for a batch `x` (NCHW, as the model takes it)."""
    env = {inp: x}
    for op in ops:
        a = env[op.inputs[0]]
        if op.kind == "conv":
            y = F.conv2d(a, op.w, op.b, op.attrs["stride"], op.attrs["pad"])
        elif op.kind == "dwconv":
            y = F.conv2d(a, op.w, op.b, op.attrs["stride"], op.attrs["pad"], groups=a.shape[1])
        elif op.kind == "fc":
            y = F.linear(a.flatten(1), op.w, op.b)
        elif op.kind == "add":
            y = a + env[op.inputs[1]]
        elif op.kind == "avgpool":
            if op.attrs["global"]:
                y = a.mean((2, 3), keepdim=True)
            elif "adaptive" in op.attrs:
                y = F.adaptive_avg_pool2d(a, op.attrs["adaptive"])
            else:
                y = F.avg_pool2d(a, op.attrs["kernel"], op.attrs["stride"])
        elif op.kind == "maxpool":
            y = F.max_pool2d(a, op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"])
        else:  # standalone relu / relu6
            y = a
        env[op.output] = _activate(y, op.kind if op.kind in ("relu", "relu6") else op.act)
    return env


def _activate(y, act):
    return y.clamp_min(0) if act == "relu" else y.clamp(0, 6) if act == "relu6" else y


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    s = tuple(t.shape[1:])
    return (s[1], s[2], s[0]) if len(s) == 3 else s  # CHW -> HWC


def _act_qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0 / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def lower(model: nn.Module, calibration: torch.Tensor) -> Graph:
    """The int8 Graph of `model` calibrated on `calibration` (a batch, NCHW or (N, features)).

    >>> g = lower(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()).eval(), torch.randn(4, 1, 6, 6))
    >>> [(op.kind, op.act_min) for op in g.ops], g.tensors[g.output].shape
    ([('conv', -128)], (6, 6, 4))
    """
    model = model.eval()
    ops, inp, out = trace(model)
    ops = fuse(ops, keep={out})
    with torch.no_grad():
        env = run_float(ops, inp, calibration.float())
    tensors = {}
    for name, t in env.items():
        scale, zp = _act_qparams(float(t.min()), float(t.max()))
        tensors[name] = Tensor(name, _shape(t), scale, zp)
    q_ops = [_quantize_op(op, tensors, env) for op in ops]
    return Graph(tensors, q_ops, inp, out)


def _act_range(act: str, t: Tensor) -> tuple[int, int]:
    lo = t.zp if act in ("relu", "relu6") else -128
    hi = min(127, t.zp + int(round(6.0 / t.scale))) if act == "relu6" else 127
    return max(lo, -128), hi


def _quantize_op(op: FOp, tensors: dict[str, Tensor], env) -> Op:
    x, y = tensors[op.inputs[0]], tensors[op.output]
    lo, hi = _act_range(op.kind if op.kind in ("relu", "relu6") else op.act, y)
    if op.kind in ("conv", "dwconv", "fc"):
        return _quantize_weighted(op, x, y, lo, hi)
    if op.kind == "add":
        b = tensors[op.inputs[1]]
        mult, shift = add_multipliers(x.scale / y.scale, b.scale / y.scale, op.name)
        return Op("add", op.name, op.inputs, op.output, {}, mult=mult, shift=shift, act_min=lo, act_max=hi,
                  macs=y.size)
    if op.kind == "avgpool":
        h, w, _ = x.hwc
        k: tuple[int, int] = (h, w) if op.attrs["global"] else op.attrs.get("kernel", (1, 1))
        s: tuple[int, int] = (1, 1) if op.attrs["global"] else op.attrs.get("stride", (1, 1))
        if "adaptive" in op.attrs:  # an adaptive pool that tiles its input evenly is a plain average pool
            (oh, ow) = op.attrs["adaptive"]
            if h % oh or w % ow:
                raise InputError(f"model: {op.name}: adaptive pooling {h}x{w} -> {oh}x{ow} does not tile evenly")
            k = s = (h // oh, w // ow)
        m, sh = quantize_multiplier(x.scale / (y.scale * k[0] * k[1]))
        return Op("avgpool", op.name, op.inputs, op.output, {"kernel": k, "stride": s, "pad": (0, 0)},
                  mult=np.array([m], np.int32), shift=np.array([sh], np.int32), act_min=lo, act_max=hi, macs=x.size)
    # maxpool and standalone relu keep the input's quantization (exact: they only select values)
    tensors[op.output] = Tensor(y.name, y.shape, x.scale, x.zp)
    lo, hi = _act_range(op.kind if op.kind in ("relu", "relu6") else op.act, tensors[op.output])
    if op.kind == "maxpool":
        return Op("maxpool", op.name, op.inputs, op.output, {"kernel": op.attrs["kernel"], "stride": op.attrs["stride"],
                  "pad": op.attrs["pad"]}, act_min=lo, act_max=hi, macs=y.size)
    return Op("relu", op.name, op.inputs, op.output, {}, act_min=lo, act_max=hi, macs=y.size)


def add_multipliers(ra: float, rb: float, where: str = "add") -> tuple[np.ndarray, np.ndarray]:
    """Multipliers below 2**22 (so (a-za)*Ma + (b-zb)*Mb stays in int32) and their common shift.

    >>> add_multipliers(0.5, 0.25)
    (array([2097152, 1048576], dtype=int32), array([22], dtype=int32))
    """
    shift = int(min(31, np.floor(np.log2((2**22 - 1) / max(ra, rb)))))
    if shift < 1:
        raise InputError(f"model: {where}: input scales {max(ra, rb):.3g}x the output's are not supported")
    mult = np.array([round(ra * 2**shift), round(rb * 2**shift)], dtype=np.int32)
    return mult, np.array([shift], np.int32)


def _quantize_weighted(op: FOp, x: Tensor, y: Tensor, lo: int, hi: int) -> Op:
    w = op.w.double().numpy()
    cout = w.shape[0]
    if op.kind == "fc":
        if len(x.shape) == 3 and x.shape[0] * x.shape[1] > 1:  # weights see a CHW flatten; the MCU tensor is HWC
            h, wd, c = x.shape
            w = w.reshape(cout, c, h, wd).transpose(0, 2, 3, 1)
        w = w.reshape(cout, 1, 1, -1)
        attrs: dict[str, Any] = {"kernel": (1, 1), "stride": (1, 1), "pad": (0, 0), "fc": True}
    else:
        attrs = {"kernel": tuple(op.attrs["kernel"]), "stride": tuple(op.attrs["stride"]), "pad": tuple(op.attrs["pad"])}
        w = w.transpose(0, 2, 3, 1)  # (Cout, kh, kw, Cin/groups)
    flat = w.reshape(cout, -1)
    sw = np.abs(flat).max(axis=1) / 127.0
    sw[sw == 0] = 1.0
    qw = np.clip(np.round(flat / sw[:, None]), -127, 127).astype(np.int8)
    b = op.b.double().numpy() if op.b is not None else np.zeros(cout)
    bias = np.round(b / (x.scale * sw)).astype(np.int64)
    if np.abs(bias).max(initial=0) >= 2**31:
        raise InputError(f"model: {op.name}: a bias does not fit int32 at the calibrated scales")
    ms = [quantize_multiplier(x.scale * s / y.scale) for s in sw]
    kind = "conv" if op.kind == "fc" else op.kind
    if kind == "dwconv":
        qw = np.ascontiguousarray(qw.T)  # (kh*kw, C): TFLite's depthwise layout
    kh, kw = attrs["kernel"]
    oh, ow, _ = y.hwc
    macs = oh * ow * cout * kh * kw * (1 if kind == "dwconv" else x.hwc[2])
    return Op(kind, op.name, op.inputs, op.output, attrs, qw, bias.astype(np.int32),
              np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.int32), lo, hi, macs)
