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


def to_onnx(graph: Graph, float_io: bool = False):
    """An onnx.ModelProto (NCHW, int8 activations, per-channel int8 weights) of `graph`; with
    `float_io` it takes and returns float tensors (QuantizeLinear in, DequantizeLinear out)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    t = graph.tensors

    made: set[str] = set()

    def const(name, value, dtype):
        if name not in made:
            made.add(name)
            inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def qp(name):  # scale and zero point initializers of a tensor
        return [const(f"{name}__s", t[name].scale, np.float32), const(f"{name}__z", t[name].zp, np.int8)]

    for op in graph.ops:
        x, y = op.inputs[0], op.output
        if op.kind in ("conv", "dwconv"):
            x_in, w = x, _weights_nchw(graph, op)
            if op.attrs.get("fc"):  # a dense layer: flatten (CHW order, as torch) to (N, K, 1, 1)
                x_in = f"{op.name}__flat"
                nodes.append(helper.make_node("Reshape", [x, const(f"{op.name}__shape", [0, -1, 1, 1], np.int64)], [x_in]))
            w_scale = _real(op.mult, op.shift) * t[y].scale / t[x].scale  # the per-channel weight scale
            ins = [x_in, *qp(x), const(f"{op.name}__w", w, np.int8), const(f"{op.name}__ws", w_scale, np.float32),
                   const(f"{op.name}__wz", np.zeros(len(w_scale)), np.int8), *qp(y), const(f"{op.name}__b", op.bias, np.int32)]
            (kh, kw), (sh, sw), (ph, pw) = op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"]
            out = y if not op.attrs.get("fc") else f"{op.name}__out"
            nodes.append(helper.make_node("QLinearConv", ins, [out], kernel_shape=[kh, kw], strides=[sh, sw],
                                          pads=[ph, pw, ph, pw], group=w.shape[0] if op.kind == "dwconv" else 1))
            if op.attrs.get("fc"):
                nodes.append(helper.make_node("Reshape", [out, const(f"{op.name}__oshape", [0, -1], np.int64)], [y]))
            y_act = y
        elif op.kind == "add":
            a, b = op.inputs
            nodes.append(helper.make_node("QLinearAdd", [a, *qp(a), b, *qp(b), *qp(y)], [y], domain=MS))
            y_act = y
        elif op.kind == "avgpool":
            h, w, _ = t[x].hwc
            if tuple(op.attrs["kernel"]) == (h, w):
                nodes.append(helper.make_node("QLinearGlobalAveragePool", [x, *qp(x), *qp(y)], [y], domain=MS,
                                              channels_last=0))
            else:
                nodes.append(helper.make_node("QLinearAveragePool", [x, *qp(x), *qp(y)], [y], domain=MS,
                                              kernel_shape=list(op.attrs["kernel"]), strides=list(op.attrs["stride"])))
            y_act = y
        elif op.kind == "maxpool":
            (ph, pw) = op.attrs["pad"]
            nodes.append(helper.make_node("MaxPool", [x], [f"{y}__pre"], kernel_shape=list(op.attrs["kernel"]),
                                          strides=list(op.attrs["stride"]), pads=[ph, pw, ph, pw]))
            y_act = f"{y}__pre"
        else:  # relu: a clamp in the integer domain
            y_act = x
        if op.kind in ("maxpool", "relu") or (op.act_min, op.act_max) != (-128, 127) and op.kind in ("conv", "dwconv"):
            lo, hi = const(f"{op.name}__lo", op.act_min, np.int8), const(f"{op.name}__hi", op.act_max, np.int8)
            if y_act == y:
                os_ = f"{y}__unclamped"
                for n in nodes:
                    n.output[:] = [os_ if o == y else o for o in n.output]
                y_act = os_
            nodes.append(helper.make_node("Clip", [y_act, lo, hi], [y]))

    def vi(name, dtype=TensorProto.INT8):
        s = t[name].shape
        shape = [1, s[2], s[0], s[1]] if len(s) == 3 else [1, *s]
        return helper.make_tensor_value_info(name, dtype, shape)

    ins, outs = [vi(graph.input)], [vi(graph.output)]
    if float_io:
        nodes.insert(0, helper.make_node("QuantizeLinear", ["input", *qp(graph.input)], [graph.input]))
        nodes.append(helper.make_node("DequantizeLinear", [graph.output, *qp(graph.output)], ["output"]))
        ins, outs = [vi(graph.input, TensorProto.FLOAT)], [vi(graph.output, TensorProto.FLOAT)]
        ins[0].name, outs[0].name = "input", "output"
    g = helper.make_graph(nodes, "effai_mcu", ins, outs, inits)
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
        w = op.weights
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
