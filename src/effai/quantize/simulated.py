"""The ONNX file a `quantize_`-d model simulates, with effai's own scales, zero points and codes.

No calibration happens here: every number comes from the QuantLayers. How each layer deploys
(its `LayerExport` says which):

- a static INT8 input quantizer (Int8StaticConfig, any calibration method) becomes
  QuantizeLinear -> DequantizeLinear with effai's scale and its zero point shifted to uint8
  (effai's int8 code q and the uint8 code q + 128 are the same number), the INT8 activation
  type that x86 VNNI kernels multiply (u8 x s8); a dynamic one (Int8DynamicConfig, QAT with
  act_bits=8) becomes DynamicQuantizeLinear, whose formula is effai's; fp16/bf16 rounding of
  the input becomes a Cast pair;
- integer weights (int8, and int4/int2/ternary/binary codes, which fit in int8) are stored as
  int8 codes with DequantizeLinear per output channel; ONNX Runtime fuses DQ -> Conv -> Q into
  QLinearConv (and MatMul into QLinearMatMul / MatMulIntegerToFloat); OpenVINO reads the pairs as
  FakeQuantize and runs its own INT8 kernels;
- weight-only Linear layers at 2, 4 or 8 bits (per channel, or per group of a power of two
  >= 16) become MatMulNBits (com.microsoft), ONNX Runtime's low-bit kernel, with effai's codes
  and scales (a per-channel scale is repeated for every block of the row);
- float formats (fp16, bf16, fp8, fp4) and group-quantized convolutions keep their exact
  values in fp32 weights: the numbers are the format's, the kernel is fp32 (and says so).

The simulation rounds where the deployed INT8 graph holds int8 (`effai.quantize.int8_plan`:
layer inputs, layer outputs that reach other ops, residual Adds), and those roundings become Q/DQ
pairs with the same scales; `effai.quantize.qdq_graph` then moves and merges the pairs through
the ops rounding commutes with (Relu, MaxPool, reshapes), without changing a value, into the
form whose every op ONNX Runtime runs on int8 (DQ -> Conv -> Q: QLinearConv; DQ, DQ -> Add -> Q:
QLinearAdd; DQ -> GlobalAveragePool -> Q: QLinearGlobalAveragePool). So the file computes what
the torch model computes, up to float summation order and the int32 rounding of biases.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

import effai.numerics as nx
from effai.errors import InputError
from effai.quantize.core import QuantLayer, convert_
from effai.quantize.qdq_graph import attr as _attr
from effai.quantize.qdq_graph import int8_normal_form

_LINEAR_OPS = ("Conv", "Gemm", "MatMul")
_NBITS = {"int8": 8, "int4": 4, "int2": 2, "ternary": 2, "binary": 2}
_CAST_TO = {"fp16": 10, "bf16": 16}  # onnx.TensorProto.FLOAT16, BFLOAT16


@dataclass(frozen=True)
class LayerExport:
    """What one QuantLayer became in the ONNX file.

    `activation`: how its input is rounded ("int8 static", "int8 dynamic", "fp16", "bf16", or
    "float"); `weights`: how the weight is stored; `op`: the ONNX op computing it; `output`: the
    name of its output tensor (for per-layer checks).
    """

    name: str
    fmt: str
    activation: str
    weights: str
    op: str
    output: str


def is_quantized(model: nn.Module) -> bool:
    """True when `model` holds a QuantLayer (it went through `quantize_`)."""
    return any(isinstance(m, QuantLayer) for m in model.modules())


class _Marked(nn.Module):
    """A QuantLayer's float twin for tracing: a placeholder Q/DQ pair (replaced in the graph)
    and the layer with its dequantized weight. Records the call order, which is the order of
    the pairs in the traced graph."""

    def __init__(self, ql: QuantLayer, name: str, calls: list):
        super().__init__()
        layer: Any = copy.deepcopy(ql.layer)
        layer.weight = nn.Parameter(ql.dequantized_weight().reshape(ql.weight_shape))
        if layer.bias is not None:
            bias = layer.bias.detach().float()
            if "bias" in layer._buffers:
                del layer._buffers["bias"]
            layer.bias = nn.Parameter(bias)
        self.layer, self.name, self.calls = layer, name, calls

    def forward(self, x):
        return self.layer(_placeholder(x, self.name, self.calls))

    # A parent that reads the weights instead of calling the layer (nn.MultiheadAttention's
    # out_proj) gets the dequantized weight, as the torch simulation's QuantLayer gives it.
    @property
    def weight(self):
        return self.layer.weight

    @property
    def bias(self):
        return self.layer.bias


class _MarkedOutput(nn.Module):
    """A module output's rounding (`int8_plan.round_module_output`) as a placeholder Q/DQ pair."""

    def __init__(self, name: str, calls: list):
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x):
        return _placeholder(x, self.name, self.calls)


def _placeholder(x, name: str, calls: list):
    """A Q/DQ pair in the traced graph, replaced there by the real rounding; each with its own
    scale (the call's number), so that the exporter never merges two of them reading one tensor."""
    calls.append(name)
    return torch.fake_quantize_per_tensor_affine(x, float(len(calls)), 0, 0, 255)


def _traceable_copy(model: nn.Module) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """The float twin, and by marker name: the QuantLayers, and the ActQuants rounding module
    outputs (named "MODULE:output")."""
    from effai.quantize.core import set_module
    from effai.quantize.int8_plan import OUTPUT_QUANT

    twin = convert_(copy.deepcopy(model)).eval()  # QAT layers frozen into their codes
    calls: list[str] = []
    layers: dict[str, Any] = {n: m for n, m in twin.named_modules() if isinstance(m, QuantLayer)}
    for name, ql in list(layers.items()):
        set_module(twin, name, _Marked(ql, name, calls))
    for name, m in list(twin.named_modules()):
        if OUTPUT_QUANT in m._modules:
            marker = f"{name}:output"
            layers[marker] = m._modules[OUTPUT_QUANT]
            m._modules[OUTPUT_QUANT] = _MarkedOutput(marker, calls)
    return twin, layers, calls


def _activation(ql: QuantLayer) -> str:
    if ql.act is None:
        return "float"
    mode = ql.act.mode
    if mode in ("static", "dynamic"):
        return f"int8 {mode}"
    if mode in _CAST_TO:
        return mode
    raise InputError(f"export_onnx: a layer rounds its input to {mode!r}; ONNX has no op for that on CPU "
                     "(export weight-only, or INT8/fp16/bf16 activations)")


class _Graph:
    """The graph being rewritten: nodes in order, initializers by name, fresh names."""

    def __init__(self, model):
        import onnx.numpy_helper as nh

        self.model, self.g = model, model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.nh, self.n = nh, 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}__effai{self.n}"

    def const(self, hint: str, array: Any) -> str:
        name = self.name(hint)
        t = self.nh.from_array(np.asarray(array), name)
        self.g.initializer.append(t)
        self.inits[name] = t
        return name

    def array(self, name: str) -> np.ndarray:
        """An initializer's values, through the Identity nodes the exporter puts in front of
        initializers it shares between equal weights."""
        p = self.producer(name) if name not in self.inits else None
        while p is not None and p.op_type == "Identity":
            name = p.input[0]
            p = self.producer(name) if name not in self.inits else None
        return self.nh.to_array(self.inits[name])

    def consumers(self, tensor: str) -> list:
        return [n for n in self.g.node if tensor in n.input]

    def producer(self, tensor: str):
        return next((n for n in self.g.node if tensor in n.output), None)

    def rename_input(self, old: str, new: str) -> None:
        for n in self.g.node:
            for i, t in enumerate(n.input):
                if t == old:
                    n.input[i] = new
        for o in self.g.output:
            if o.name == old:
                o.name = new


def simulated_onnx(model: nn.Module, example_inputs, opset: int = 17):
    """The ONNX model (an onnx.ModelProto) computing what the quantized `model` computes, and a
    `LayerExport` per QuantLayer call in graph order.

    >>> import torch, torch.nn as nn
    >>> from effai.quantize import quantize_, Int8StaticConfig
    >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    >>> q = quantize_(m, Int8StaticConfig(calibration=torch.randn(32, 8)))
    >>> proto, layers = simulated_onnx(q, torch.randn(1, 8))
    >>> [(l.name, l.activation, l.op) for l in layers]
    [('0', 'int8 static', 'Gemm'), ('2', 'int8 static', 'Gemm')]
    """
    import onnx

    from effai.profile.latency import export_fp32_onnx

    twin, qlayers, calls = _traceable_copy(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_fp32_onnx(twin, Path(tmp) / "sim.onnx", example_inputs, opset=opset)
        proto = onnx.load(str(path))
    g = _Graph(proto)
    markers = [n for n in g.g.node if n.op_type == "QuantizeLinear"]
    if len(markers) != len(calls):
        raise InputError(f"export_onnx: traced {len(calls)} quantized layer calls but found {len(markers)} in "
                         "the ONNX graph (a layer inside a loop or a branch?)")
    out = []
    for q, name in zip(markers, calls, strict=True):
        if isinstance(qlayers[name], QuantLayer):
            out.append(_rewrite_layer(g, q, qlayers[name], name))
        else:  # a module output rounded like the INT8 kernel writing it
            _set_qdq(g, q, g.consumers(q.output[0])[0], qlayers[name], name)
    int8_normal_form(g.g)
    _drop_unused(g)
    if any(layer.op == "MatMulNBits" for layer in out):
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return proto, out


def _rewrite_layer(g: _Graph, q, ql: QuantLayer, name: str) -> LayerExport:
    """Replace one placeholder Q/DQ pair by the layer's real input rounding and its weights."""
    import onnx.helper as oh

    dq = g.consumers(q.output[0])[0]
    x, y = q.input[0], dq.output[0]
    node = next(n for n in g.consumers(y) if n.op_type in _LINEAR_OPS)
    act = _activation(ql)
    if act == "int8 static":
        _set_qdq(g, q, dq, ql.act, f"{name}.input")
    elif act == "int8 dynamic":
        qy, s, z = g.name(f"{name}.input_q"), g.name(f"{name}.input_scale"), g.name(f"{name}.input_zp")
        q.CopyFrom(oh.make_node("DynamicQuantizeLinear", [x], [qy, s, z], name=q.name))
        dq.input[:] = [qy, s, z]
    elif act in _CAST_TO:
        q.CopyFrom(oh.make_node("Cast", [x], [q.output[0]], name=q.name, to=_CAST_TO[act]))
        dq.CopyFrom(oh.make_node("Cast", [q.output[0]], [y], name=dq.name, to=1))
    else:
        g.g.node.remove(q)
        g.g.node.remove(dq)
        g.rename_input(y, x)
    output = node.output[0] if node.op_type != "MatMul" else _output_after_bias(g, node.output[0])
    weights, op = _rewrite_weight(g, node, ql, name, act)
    if ql.out_act is not None:
        output = _round_output(g, output, ql, name)
    return LayerExport(name, ql.fmt, act, weights, op, output)


def _set_qdq(g: _Graph, q, dq, act: Any, name: str) -> None:
    """A placeholder Q/DQ pair given the scale and (uint8) zero point of a static ActQuant."""
    scale, zp = _uint8_params(act)
    s, z = g.const(f"{name}_scale", scale), g.const(f"{name}_zp", zp)
    q.input[1:], dq.input[1:] = [s, z], [s, z]


def _uint8_params(act: Any) -> tuple[np.float32, np.uint8]:
    """An ActQuant's scale and its int8 zero point as the same value's uint8 code (+ 128)."""
    return np.float32(float(act.scale)), np.uint8(int(act.zero_point) + 128)


def _round_output(g: _Graph, tensor: str, ql: QuantLayer, name: str) -> str:
    """Q/DQ after the layer with its output rounding (QLinearConv's int8 output)."""
    import onnx.helper as oh

    scale, zp = _uint8_params(ql.out_act)
    s, z = g.const(f"{name}.output_scale", scale), g.const(f"{name}.output_zp", zp)
    qt, dqt = g.name(f"{name}.output_q"), g.name(f"{name}.output")
    consumers = g.consumers(tensor)
    at = list(g.g.node).index(g.producer(tensor)) + 1
    g.g.node.insert(at, oh.make_node("QuantizeLinear", [tensor, s, z], [qt]))
    g.g.node.insert(at + 1, oh.make_node("DequantizeLinear", [qt, s, z], [dqt]))
    for c in consumers:
        c.input[list(c.input).index(tensor)] = dqt
    for o in g.g.output:
        if o.name == tensor:
            raise InputError(f"export_onnx: layer {name} rounds the model's output; nothing to deploy it with")
    return dqt


def _output_after_bias(g: _Graph, tensor: str) -> str:
    """A MatMul's bias is a following Add with a constant: the layer's output is the Add's."""
    nxt = g.consumers(tensor)
    if len(nxt) == 1 and nxt[0].op_type == "Add" and any(t in g.inits for t in nxt[0].input):
        return nxt[0].output[0]
    return tensor


def _codes(ql: QuantLayer) -> nx.QTensor | None:
    """The layer's integer codes, scales and zero points (None for float formats)."""
    if nx.get(ql.fmt).kind == "float":
        return None
    codes = np.asarray(ql._buffers["w_codes"])
    n = int(np.prod(ql.weight_shape))
    c = codes if nx.get(ql.fmt).bits == 8 else nx.unpack(codes.tobytes(), ql.fmt, n)
    zp: Any = ql._buffers.get("w_zero_point")
    scale = np.asarray(ql._buffers["w_scale"])
    gran = "group" if ql.group_size else ql.granularity
    return nx.QTensor(np.asarray(c).reshape(ql.weight_shape).astype(np.int8), scale,
                      zp.numpy() if zp is not None else np.zeros(scale.size, np.int32), ql.fmt, ql.weight_shape,
                      gran, 0, ql.group_size)


def _rewrite_weight(g: _Graph, node, ql: QuantLayer, name: str, act: str) -> tuple[str, str]:
    """Store the weight as codes (DequantizeLinear or MatMulNBits); returns (description, op)."""
    import onnx.helper as oh

    q = _codes(ql)
    w_name = node.input[1]
    if q is None:
        return f"fp32 holding {ql.fmt} values (no {ql.fmt} kernel on CPU)", node.op_type
    matmul_like = node.op_type in ("Gemm", "MatMul")
    block = _nbits_block(q, ql)
    if matmul_like and act == "float" and ql.fmt in _NBITS and block is not None:
        return _to_matmul_nbits(g, node, q, ql, name, block), "MatMulNBits"
    if q.granularity == "group":
        return f"fp32 holding {ql.fmt} values (per-group scales need a blocked DequantizeLinear)", node.op_type
    transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attr(node, "transB", 0))
    axis: int | None
    codes, axis = (q.codes.T, 1) if transposed else (q.codes, 0)
    scale = q.scale.astype(np.float32)
    zp = q.zero_point.astype(np.int8)
    if q.granularity == "tensor":
        scale, zp, axis = scale.reshape(()), zp.reshape(()), None
    if g.array(w_name).shape != codes.shape:
        raise InputError(f"export_onnx: layer {name}: weight shape {g.array(w_name).shape} in the graph, "
                         f"{codes.shape} in the model")
    c = g.const(f"{name}.weight_codes", np.ascontiguousarray(codes, dtype=np.int8))
    s, z = g.const(f"{name}.weight_scale", scale), g.const(f"{name}.weight_zp", zp)
    wq = g.name(f"{name}.weight")
    kw: dict[str, Any] = {} if axis is None else {"axis": axis}
    g.g.node.insert(list(g.g.node).index(node), oh.make_node("DequantizeLinear", [c, s, z], [wq], **kw))
    node.input[1] = wq
    if act == "int8 static" and len(node.input) > 2 and node.input[2] in g.inits:
        _int32_bias(g, node, name, scale)
    per = "per tensor" if axis is None else "per channel"
    return f"{ql.fmt} codes in int8, {per}, DequantizeLinear", node.op_type


def _int32_bias(g: _Graph, node, name: str, w_scale: np.ndarray) -> None:
    """The bias as int32 codes at scale input_scale x weight_scale (what QLinearConv/QGemm add;
    ONNX Runtime fuses a quantized Conv/Gemm only when its bias comes from such a DequantizeLinear)."""
    import onnx.helper as oh

    from effai.quantize.core import int32_bias

    dq_in = g.producer(node.input[0])
    codes, scale = int32_bias(g.array(node.input[2]), float(g.array(dq_in.input[1])), w_scale)
    c, s = g.const(f"{name}.bias_codes", codes), g.const(f"{name}.bias_scale", scale)
    b = g.name(f"{name}.bias")
    kw: dict[str, Any] = {"axis": 0} if codes.ndim else {}
    g.g.node.insert(list(g.g.node).index(node), oh.make_node("DequantizeLinear", [c, s], [b], **kw))
    node.input[2] = b


def _drop_unused(g: _Graph) -> None:
    """Initializers and Constant nodes nothing reads any more (the float weights replaced by codes)."""
    while True:
        used = {t for n in g.g.node for t in n.input} | {o.name for o in g.g.output}
        dead = [n for n in g.g.node if n.op_type == "Constant" and n.output[0] not in used]
        for n in dead:
            g.g.node.remove(n)
        if not dead:
            break
    for t in [t for t in g.g.initializer if t.name not in used]:
        g.g.initializer.remove(t)


def _nbits_block(q: nx.QTensor, ql: QuantLayer) -> int | None:
    """MatMulNBits' block size for these codes: the group size when it is a power of two >= 16,
    or (per channel) a block spanning K, its scale repeated; None when they do not fit."""
    k = int(np.prod(ql.weight_shape[1:]))
    if len(ql.weight_shape) != 2 or q.granularity == "tensor" or np.any(q.zero_point):
        return None
    if q.granularity == "group":
        gs = ql.group_size or 0
        return gs if gs >= 16 and gs & (gs - 1) == 0 and k % gs == 0 else None
    return min(256, max(16, 1 << (k - 1).bit_length()))  # any power of two; blocks share the row's scale


def _to_matmul_nbits(g: _Graph, node, q: nx.QTensor, ql: QuantLayer, name: str, block: int) -> str:
    import onnx.helper as oh

    bits = _NBITS[ql.fmt]
    n_out, k = ql.weight_shape
    n_blocks = -(-k // block)
    half = 1 << (bits - 1)
    codes = np.full((n_out, n_blocks * block), half, np.uint8)
    codes[:, :k] = (q.codes.astype(np.int16) + half).astype(np.uint8)
    if q.granularity == "group":
        scales = q.scale.reshape(n_out, n_blocks)
    else:
        scales = np.repeat(q.scale.reshape(n_out, 1), n_blocks, axis=1)
    per = 8 // bits
    c = codes.reshape(n_out, n_blocks, block // per, per)
    packed = np.zeros(c.shape[:-1], np.uint8)
    for j in range(per):  # element j of each byte sits at bits [bits*j, bits*(j+1))
        packed |= (c[..., j] << (bits * j)).astype(np.uint8)
    b = g.const(f"{name}.weight_nbits", packed)
    s = g.const(f"{name}.weight_scales", scales.astype(np.float32).reshape(-1))
    y = g.name(f"{name}.matmul")
    nb = oh.make_node("MatMulNBits", [node.input[0], b, s], [y], domain="com.microsoft", K=k, N=n_out,
                      bits=bits, block_size=block, name=f"{node.name}_nbits")
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    at = list(g.g.node).index(node)
    new = [nb] if bias is None else [nb, oh.make_node("Add", [y, bias], [node.output[0]])]
    if bias is None:
        nb.output[0] = node.output[0]
    g.g.node.remove(node)
    for i, n in enumerate(new):
        g.g.node.insert(at + i, n)
    how = f"per group of {ql.group_size}" if q.granularity == "group" else "per channel"
    return f"{ql.fmt} codes as {bits}-bit MatMulNBits, {how}"
