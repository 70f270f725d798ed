"""An int8 ONNX file in QOperator form -> the int8 Graph of ir.py, with the file's own scales,
zero points, int8 weights and int32 biases (no re-calibration).

Supported: QuantizeLinear at the input, QLinearConv (int8 symmetric weights, per tensor or per
channel; groups 1 or depthwise), com.microsoft QLinearAdd, QLinearGlobalAveragePool,
QLinearAveragePool (unpadded), QGemm (with int32 bias), MaxPool, Flatten/Reshape, Clip on int8,
DequantizeLinear at the output. uint8 tensors and asymmetric weights are refused: the
microcontroller kernels are int8 with symmetric weights. QDQ files are not read: their float ops
between DequantizeLinear and QuantizeLinear have no single integer meaning."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np

from effai.errors import InputError
from effai.mcu.ir import Graph, Op, Tensor, quantize_multiplier
from effai.mcu.lower import add_multipliers


def load(path) -> Graph:
    """The Graph of the QOperator int8 file at `path`."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    g = m.graph
    inp = next(i for i in g.input if i.name not in init)
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    if not dims or not all(dims):
        raise InputError(f"{path}: the input {inp.name!r} needs fixed dimensions (besides the batch)")
    shape = (dims[1], dims[2], dims[0]) if len(dims) == 3 else tuple(dims)
    b = _Builder(path, init)
    for node in g.node:
        for name in node.input:
            b.readers[name] = b.readers.get(name, 0) + 1
    b.tensors[inp.name] = Tensor(inp.name, shape)
    b.float_input = inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for node in g.node:
        b.node(node)
    out = b.alias.get(g.output[0].name, g.output[0].name)
    first = b.alias.get(inp.name, inp.name)
    return Graph(b.tensors, b.ops, first, out)


_FLOAT_OPS = {"Conv", "Gemm", "MatMul", "Add", "Relu", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Mul"}


class _Builder:
    def __init__(self, path: Path, init: dict):
        self.path, self.init = path, init
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.alias: dict[str, str] = {}
        self.flat: set[str] = set()  # tensors that are a flatten of an (H, W, C) tensor
        self.readers: dict[str, int] = {}  # how many nodes read each tensor name
        self.float_input = False

    def fail(self, node, why: str) -> NoReturn:
        raise InputError(f"{self.path}: node {node.name or node.op_type!r} ({node.op_type}): {why}")

    def const(self, node, name: str) -> np.ndarray:
        if name not in self.init:
            self.fail(node, f"{name!r} must be a constant")
        return self.init[name]

    def src(self, name: str) -> Tensor:
        return self.tensors[self.alias.get(name, name)]

    def qparams(self, node, s: str, z: str) -> tuple[float, int]:
        zp = self.const(node, z)
        if zp.dtype != np.int8:
            self.fail(node, f"{zp.dtype} tensors are not supported on the microcontroller path (int8 only)")
        return float(self.const(node, s)), int(zp)

    def out(self, name: str, shape, s: float, z: int) -> Tensor:
        t = Tensor(name, tuple(shape), s, z)
        self.tensors[name] = t
        return t

    def node(self, n) -> None:
        handler = getattr(self, f"_{n.op_type}", None)
        if handler is None and n.op_type in _FLOAT_OPS:
            self.fail(n, "a float operator: effai deploy reads int8 QOperator files (QDQ files and float files: deploy "
                         "the PyTorch model, or quantize with onnxruntime's quantize_static in QOperator format, int8 "
                         "activations and weights)")
        if handler is None:
            self.fail(n, "not supported on the microcontroller path")
        else:
            handler(n, {a.name: a for a in n.attribute})

    # ------------------------------------------------------------------ ops
    def _QuantizeLinear(self, n, attrs):
        s, z = self.qparams(n, n.input[1], n.input[2])
        x = self.src(n.input[0])
        self.tensors[x.name] = Tensor(x.name, x.shape, s, z)  # the float input, quantized at the file's scale
        self.alias[n.output[0]] = x.name

    def _DequantizeLinear(self, n, attrs):
        self.alias[n.output[0]] = self.alias.get(n.input[0], n.input[0])

    def _Flatten(self, n, attrs):
        x = self.src(n.input[0])
        self.alias[n.output[0]] = x.name
        if len(x.shape) == 3 and x.shape[0] * x.shape[1] > 1:
            self.flat.add(x.name)

    _Reshape = _Flatten

    def _QLinearConv(self, n, attrs):
        x = self.src(n.input[0])
        xs, xz = self.qparams(n, n.input[1], n.input[2])
        w = self.const(n, n.input[3])
        ws, wz = np.atleast_1d(self.const(n, n.input[4])).astype(np.float64), self.const(n, n.input[5])
        ys, yz = self.qparams(n, n.input[6], n.input[7])
        if w.dtype != np.int8 or np.any(wz != 0):
            self.fail(n, "weights must be int8 and symmetric (zero point 0)")
        bias = bias_of(self, n, 8, w.shape[0])
        cout, cin_g, kh, kw = w.shape
        if (kh, kw) == (1, 1) and cin_g == x.size and x.hwc[2] != cin_g:  # a dense layer on a flattened tensor
            self._dense(n, x, xs, w.reshape(cout, -1), ws, bias_of(self, n, 8, cout), *self.qparams(n, n.input[6], n.input[7]))
            return
        group = attrs["group"].i if "group" in attrs else 1
        stride = tuple(attrs["strides"].ints) if "strides" in attrs else (1, 1)
        pads = tuple(attrs["pads"].ints) if "pads" in attrs else (0, 0, 0, 0)
        if pads[:2] != pads[2:]:
            self.fail(n, "asymmetric padding is not supported")
        ws = np.broadcast_to(ws, (cout,))
        h, wd, c = x.hwc
        oh, ow = (h + 2 * pads[0] - kh) // stride[0] + 1, (wd + 2 * pads[1] - kw) // stride[1] + 1
        y = self.out(n.output[0], (oh, ow, cout), ys, yz)
        ms = [quantize_multiplier(xs * s / ys) for s in ws]
        mult, shift = np.array([a for a, _ in ms], np.int32), np.array([b for _, b in ms], np.int32)
        attrs_ = {"kernel": (kh, kw), "stride": stride, "pad": pads[:2]}
        if group == 1:
            weights = w.transpose(0, 2, 3, 1).reshape(cout, -1)
            op = Op("conv", n.name or n.output[0], [x.name], y.name, attrs_, weights, bias, mult, shift,
                    macs=oh * ow * cout * kh * kw * c)
        elif group == c == cout and cin_g == 1:
            op = Op("dwconv", n.name or n.output[0], [x.name], y.name, attrs_, np.ascontiguousarray(w.reshape(cout, -1).T),
                    bias, mult, shift, macs=oh * ow * cout * kh * kw)
        else:
            self.fail(n, f"grouped convolution (group={group}) is not supported")
        self.ops.append(op)

    def _QGemm(self, n, attrs):
        x = self.src(n.input[0])
        xs, xz = self.qparams(n, n.input[1], n.input[2])
        w = self.const(n, n.input[3])
        ws, wz = np.atleast_1d(self.const(n, n.input[4])).astype(np.float64), self.const(n, n.input[5])
        if w.dtype != np.int8 or np.any(wz != 0):
            self.fail(n, "weights must be int8 and symmetric (zero point 0)")
        if "transB" not in attrs or attrs["transB"].i != 1:
            w = w.T  # (N, K)
        if len(n.input) < 9:
            self.fail(n, "QGemm without an int8 output (y_scale, y_zero_point) is not supported")
        bias = bias_of(self, n, 6, w.shape[0])
        self._dense(n, x, xs, w, ws, bias, *self.qparams(n, n.input[7], n.input[8]))

    def _dense(self, n, x, xs, w, ws, bias, ys, yz):
        if x.name in self.flat:  # the file flattens CHW; our tensors are HWC
            h, wd, c = x.shape
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(len(w), -1)
        y = self.out(n.output[0], (w.shape[0],), ys, yz)
        ms = [quantize_multiplier(xs * s / ys) for s in np.broadcast_to(ws, (w.shape[0],))]
        self.ops.append(Op("conv", n.name or n.output[0], [x.name], y.name,
                           {"kernel": (1, 1), "stride": (1, 1), "pad": (0, 0), "fc": True}, np.ascontiguousarray(w), bias,
                           np.array([a for a, _ in ms], np.int32), np.array([b for _, b in ms], np.int32),
                           macs=int(w.size)))

    def _QLinearAdd(self, n, attrs):
        a, b = self.src(n.input[0]), self.src(n.input[3])
        ys, yz = self.qparams(n, n.input[6], n.input[7])
        y = self.out(n.output[0], a.shape, ys, yz)
        mult, shift = add_multipliers(a.scale / ys, b.scale / ys, n.name or "QLinearAdd")
        self.ops.append(Op("add", n.name or n.output[0], [a.name, b.name], y.name, {}, mult=mult, shift=shift, macs=y.size))

    def _QLinearGlobalAveragePool(self, n, attrs):
        if attrs.get("channels_last") and attrs["channels_last"].i:
            self.fail(n, "channels_last=1 is not supported")
        x = self.src(n.input[0])
        h, w, c = x.hwc
        self._pool(n, x, (h, w), (1, 1), (1, 1, c))

    def _QLinearAveragePool(self, n, attrs):
        x = self.src(n.input[0])
        if "pads" in attrs and any(attrs["pads"].ints):
            self.fail(n, "padded average pooling is not supported")
        k = tuple(attrs["kernel_shape"].ints)
        s = tuple(attrs["strides"].ints) if "strides" in attrs else k
        h, w, c = x.hwc
        self._pool(n, x, k, s, ((h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1, c))

    def _pool(self, n, x, k, s, shape):
        ys, yz = self.qparams(n, n.input[3], n.input[4])
        y = self.out(n.output[0], shape, ys, yz)
        mult, shift = quantize_multiplier(x.scale / (ys * k[0] * k[1]))
        self.ops.append(Op("avgpool", n.name or n.output[0], [x.name], y.name, {"kernel": k, "stride": s, "pad": (0, 0)},
                           mult=np.array([mult], np.int32), shift=np.array([shift], np.int32), macs=x.size))

    def _MaxPool(self, n, attrs):
        x = self.src(n.input[0])
        k = tuple(attrs["kernel_shape"].ints)
        s = tuple(attrs["strides"].ints) if "strides" in attrs else (1, 1)
        p = tuple(attrs["pads"].ints) if "pads" in attrs else (0, 0, 0, 0)
        h, w, c = x.hwc
        shape = ((h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1, c)
        y = self.out(n.output[0], shape, x.scale, x.zp)
        self.ops.append(Op("maxpool", n.name or n.output[0], [x.name], y.name, {"kernel": k, "stride": s, "pad": p[:2]},
                           macs=y.size))

    def _Clip(self, n, attrs):
        x = self.src(n.input[0])
        lo = int(self.const(n, n.input[1])) if len(n.input) > 1 and n.input[1] else -128
        hi = int(self.const(n, n.input[2])) if len(n.input) > 2 and n.input[2] else 127
        prev = self.ops[-1] if self.ops and self.ops[-1].output == x.name else None
        if prev is not None and prev.kind in ("conv", "dwconv", "add", "avgpool") and self.readers.get(n.input[0], 0) == 1:
            prev.act_min, prev.act_max = max(prev.act_min, lo), min(prev.act_max, hi)  # fused, as the kernels clamp anyway
            self.alias[n.output[0]] = x.name
            return
        y = self.out(n.output[0], x.shape, x.scale, x.zp)
        self.ops.append(Op("relu", n.name or n.output[0], [x.name], y.name, {}, act_min=lo, act_max=hi, macs=y.size))


def bias_of(b: _Builder, n, index: int, count: int) -> np.ndarray:
    """The int32 bias input `index` of node `n`, zeros when absent."""
    if len(n.input) > index and n.input[index]:
        return b.const(n, n.input[index]).astype(np.int32)
    return np.zeros(count, np.int32)
