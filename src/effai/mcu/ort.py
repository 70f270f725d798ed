"""The int8 Graph as an ONNX QOperator file (QLinearConv, com.microsoft QLinearAdd /
QLinearAveragePool / QLinearGlobalAveragePool, MaxPool, Clip), run in ONNX Runtime: a second,
independent implementation of the same integer model. ONNX Runtime requantizes in float32, we in
fixed point, so outputs may differ by a least significant bit or so; `compare` says by how much."""

from __future__ import annotations

import numpy as np

from effai.mcu.ir import Graph, Op

MS = "com.microsoft"


def _real(mult, shift) -> np.ndarray:
    return np.asarray(mult, np.float64) / 2.0 ** (32 + np.asarray(shift, np.float64))


class _Emitter:
    """Builds the ONNX nodes and initializers, one op of the Graph at a time."""

    def __init__(self, graph: Graph):
        self.graph, self.t = graph, graph.tensors
        self.nodes: list = []
        self.inits: list = []
        self.made: set[str] = set()

    def const(self, name: str, value, dtype) -> str:
        from onnx import numpy_helper

        if name not in self.made:
            self.made.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def qp(self, name: str) -> list[str]:  # scale and zero point initializers of a tensor
        return [self.const(f"{name}__s", self.t[name].scale, np.float32), self.const(f"{name}__z", self.t[name].zp, np.int8)]

    def node(self, *args, **kw) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(*args, **kw))

    def op(self, op: Op) -> None:
        """Emit `op`; the output it writes before a clamp, if the clamp is separate."""
        x, y = op.inputs[0], op.output
        clamp = op.kind in ("maxpool", "relu") or (op.kind in ("conv", "dwconv") and (op.act_min, op.act_max) != (-128, 127))
        pre = f"{y}__unclamped" if clamp else y
        if op.kind in ("conv", "dwconv"):
            self.conv(op, x, pre)
        elif op.kind == "add":
            a, b = op.inputs
            self.node("QLinearAdd", [a, *self.qp(a), b, *self.qp(b), *self.qp(y)], [pre], domain=MS)
        elif op.kind == "avgpool":
            h, wd, _ = self.t[x].hwc
            if tuple(op.attrs["kernel"]) == (h, wd):
                self.node("QLinearGlobalAveragePool", [x, *self.qp(x), *self.qp(y)], [pre], domain=MS, channels_last=0)
            else:
                self.node("QLinearAveragePool", [x, *self.qp(x), *self.qp(y)], [pre], domain=MS,
                          kernel_shape=list(op.attrs["kernel"]), strides=list(op.attrs["stride"]))
        elif op.kind == "maxpool":
            (ph, pw) = op.attrs["pad"]
            self.node("MaxPool", [x], [pre], kernel_shape=list(op.attrs["kernel"]), strides=list(op.attrs["stride"]),
                      pads=[ph, pw, ph, pw])
        else:  # relu: a clamp in the integer domain
            pre = x
        if clamp:
            lo, hi = self.const(f"{op.name}__lo", op.act_min, np.int8), self.const(f"{op.name}__hi", op.act_max, np.int8)
            self.node("Clip", [pre, lo, hi], [y])

    def conv(self, op: Op, x: str, out: str) -> None:
        y, fc = op.output, op.attrs.get("fc")
        x_in, w = x, _weights_nchw(self.graph, op)
        if fc:  # a dense layer: flatten (CHW order, as torch) to (N, K, 1, 1)
            x_in = f"{op.name}__flat"
            self.node("Reshape", [x, self.const(f"{op.name}__shape", [0, -1, 1, 1], np.int64)], [x_in])
        w_scale = _real(op.mult, op.shift) * self.t[y].scale / self.t[x].scale  # the per-channel weight scale
        ins = [x_in, *self.qp(x), self.const(f"{op.name}__w", w, np.int8), self.const(f"{op.name}__ws", w_scale, np.float32),
               self.const(f"{op.name}__wz", np.zeros(len(w_scale)), np.int8), *self.qp(y),
               self.const(f"{op.name}__b", op.bias, np.int32)]
        (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"]
        conv_out = f"{op.name}__out" if fc else out
        self.node("QLinearConv", ins, [conv_out], kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
                  group=w.shape[0] if op.kind == "dwconv" else 1)
        if fc:
            self.node("Reshape", [conv_out, self.const(f"{op.name}__oshape", [0, -1], np.int64)], [out])


def to_onnx(graph: Graph, float_io: bool = False):
    """An onnx.ModelProto (NCHW, int8 activations, per-channel int8 weights) of `graph`; with
    `float_io` it takes and returns float tensors (QuantizeLinear in, DequantizeLinear out)."""
    import onnx
    from onnx import TensorProto, helper

    e = _Emitter(graph)
    if float_io:
        e.node("QuantizeLinear", ["input", *e.qp(graph.input)], [graph.input])
    for op in graph.ops:
        e.op(op)
    if float_io:
        e.node("DequantizeLinear", [graph.output, *e.qp(graph.output)], ["output"])

    def vi(name, dtype, as_name=None):
        s = graph.tensors[name].shape
        shape = [1, s[2], s[0], s[1]] if len(s) == 3 else [1, *s]
        return helper.make_tensor_value_info(as_name or name, dtype, shape)

    if float_io:
        ins, outs = [vi(graph.input, TensorProto.FLOAT, "input")], [vi(graph.output, TensorProto.FLOAT, "output")]
    else:
        ins, outs = [vi(graph.input, TensorProto.INT8)], [vi(graph.output, TensorProto.INT8)]
    g = helper.make_graph(e.nodes, "effai_mcu", ins, outs, e.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _weights_nchw(graph: Graph, op: Op) -> np.ndarray:
    """ONNX weights (Cout, Cin/groups, kh, kw) from ours: conv (Cout, kh*kw*Cin), dwconv (kh*kw, C)."""
    kh, kw = op.attrs["kernel"]
    if op.kind == "dwconv":
        return op.weights.T.reshape(-1, 1, kh, kw)
    if op.attrs.get("fc"):
        x = graph.tensors[op.inputs[0]]
        w: np.ndarray = op.weights
        if len(x.shape) == 3:  # ours flattens HWC; the ONNX Reshape flattens CHW
            h, wd, c = x.shape
            w = w.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(len(w), -1)
        return w.reshape(len(w), -1, 1, 1)
    cin = op.weights.shape[1] // (kh * kw)
    return op.weights.reshape(-1, kh, kw, cin).transpose(0, 3, 1, 2)


def run(graph: Graph, q_inputs: np.ndarray) -> np.ndarray:
    """ONNX Runtime's int8 outputs (N, out_bytes, in our HWC order) for int8 inputs (N, in_bytes)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(to_onnx(graph).SerializeToString(), so, providers=["CPUExecutionProvider"])
    tin, tout = graph.tensors[graph.input], graph.tensors[graph.output]
    outs = []
    for q in q_inputs:
        x = q.reshape(1, *tin.shape)
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        y = sess.run(None, {graph.input: np.ascontiguousarray(x)})[0]
        if y.ndim == 4:
            y = y.transpose(0, 2, 3, 1)
        outs.append(y.reshape(-1))
    del tout
    return np.stack(outs)


def compare(reference: np.ndarray, onnxruntime: np.ndarray) -> tuple[int, float]:
    """(largest difference in LSB, share of output bytes equal)."""
    d = np.abs(reference.astype(np.int32) - onnxruntime.astype(np.int32))
    return int(d.max(initial=0)), float((d == 0).mean())
