"""effai's integer reference: the Graph run in numpy with exactly the C kernels' arithmetic.

Accumulations are exact (float64 matmuls of integers below 2**53, then int64), requantization
is ir.requantize. The firmware's outputs must equal these bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from effai.mcu.ir import Graph, Op, requantize


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float model inputs (N, C, H, W) or (N, F) -> int8 (N, H, W, C) / (N, F) at the input's scale."""
    t = graph.tensors[graph.input]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    return np.clip(np.round(x / t.scale) + t.zp, -128, 127).astype(np.int8).reshape(len(x), *t.shape)


def dequantize_output(graph: Graph, q: np.ndarray) -> np.ndarray:
    t = graph.tensors[graph.output]
    return (q.astype(np.float64) - t.zp) * t.scale


def run(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor (int8, (N, H, W, C) or (N, F)) for a batch of int8 inputs.

    >>> import torch; from effai.mcu.lower import lower
    >>> g = lower(torch.nn.Sequential(torch.nn.Linear(4, 3)), torch.randn(8, 4))
    >>> run(g, np.zeros((2, 4), np.int8))[g.output].shape
    (2, 3)
    """
    env = {graph.input: np.asarray(x, dtype=np.int8)}
    for op in graph.ops:
        ins = [env[i] for i in op.inputs]
        y = _KERNELS[op.kind](op, graph, *ins)
        env[op.output] = np.clip(y, op.act_min, op.act_max).astype(np.int8).reshape(len(x), *graph.tensors[op.output].shape)
    return env


def _nhwc(graph: Graph, name: str, a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), *graph.tensors[name].hwc)


def _windows(x: np.ndarray, kernel, stride, pad, fill) -> np.ndarray:
    """(N, OH, OW, kh, kw, C) views of the padded input."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    n, h, w, c = x.shape
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), fill, dtype=x.dtype)
    xp[:, ph:ph + h, pw:pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return win[:, : oh * sh : sh, : ow * sw : sw].transpose(0, 1, 2, 4, 5, 3)


def _conv(op: Op, graph: Graph, x):
    zp_in = graph.tensors[op.inputs[0]].zp
    x = x.reshape(len(x), *graph.geometry(op)[0]).astype(np.int64) - zp_in  # padding contributes 0 after the offset
    win = _windows(x, op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"], 0)
    n, oh, ow = win.shape[:3]
    cols = win.reshape(n * oh * ow, -1).astype(np.float64)
    acc = (cols @ op.weights.T.astype(np.float64)).astype(np.int64) + op.bias
    return requantize(acc, op.mult, op.shift) + graph.tensors[op.output].zp


def _dwconv(op: Op, graph: Graph, x):
    zp_in = graph.tensors[op.inputs[0]].zp
    x = _nhwc(graph, op.inputs[0], x).astype(np.int64) - zp_in
    win = _windows(x, op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"], 0)
    n, oh, ow, kh, kw, c = win.shape
    acc = np.einsum("npkc,kc->npc", win.reshape(n, oh * ow, kh * kw, c), op.weights.astype(np.int64)) + op.bias
    return requantize(acc, op.mult, op.shift) + graph.tensors[op.output].zp


def _add(op: Op, graph: Graph, a, b):
    ta, tb = (graph.tensors[i] for i in op.inputs)
    acc = (a.astype(np.int64) - ta.zp) * int(op.mult[0]) + (b.astype(np.int64) - tb.zp) * int(op.mult[1])
    return ((acc + (np.int64(1) << (int(op.shift[0]) - 1))) >> int(op.shift[0])) + graph.tensors[op.output].zp


def _avgpool(op: Op, graph: Graph, x):
    zp_in = graph.tensors[op.inputs[0]].zp
    win = _windows(_nhwc(graph, op.inputs[0], x).astype(np.int64), op.attrs["kernel"], op.attrs["stride"], (0, 0), 0)
    count = win.shape[3] * win.shape[4]
    acc = win.sum(axis=(3, 4)) - count * zp_in
    return requantize(acc, op.mult[0], op.shift[0]) + graph.tensors[op.output].zp


def _maxpool(op: Op, graph: Graph, x):
    win = _windows(_nhwc(graph, op.inputs[0], x), op.attrs["kernel"], op.attrs["stride"], op.attrs["pad"], -128)
    return win.max(axis=(3, 4))


def _relu(op: Op, graph: Graph, x):
    return x


_KERNELS: dict[str, Callable[..., np.ndarray]] = {"conv": _conv, "dwconv": _dwconv, "add": _add, "avgpool": _avgpool, "maxpool": _maxpool, "relu": _relu}
