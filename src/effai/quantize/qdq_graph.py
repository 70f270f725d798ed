"""The QDQ form of an INT8 ONNX graph that the runtimes' fast kernels take, without changing any
value it computes.

ONNX Runtime turns DQ -> op -> Q into the op's int8 kernel (QLinearConv, QLinearAdd,
QLinearGlobalAveragePool, int8 MaxPool / Reshape / Flatten), and OpenVINO reads the same pairs
as FakeQuantize; an op left between a DQ and a float consumer runs in float. Rounding commutes
with some ops (Relu, MaxPool, moves and reshapes, a Clip whose bounds the grid respects):
Q(op(x)) = op(Q(x)) on a grid that holds 0. So, per-tensor static pairs only:

1. a Q after such an op, reading nothing else, is repeated before the op (hoisted through
   chains), and a Relu or Clip whose bounds hold the Q's whole grid is dropped (rounding clamps
   as it did): Conv -> Relu -> MaxPool -> Q becomes Conv -> Q/DQ -> MaxPool -> Q;
2. such an op reading a tensor on a grid writes a tensor on that grid: one Q/DQ pair is put
   after it and every consumer reads that pair's DQ (a residual Add then reads two DQs); a
   Relu or Clip whose bounds hold its input's whole grid is an identity and is dropped;
3. pairs that round a tensor already on their grid are dropped, and equal pairs on one tensor
   merged (one QuantizeLinear for the three projections reading one activation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_COMMUTING = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity")
_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


class _Index:
    """Producers, consumers and constant values of a graph (rebuilt after each change)."""

    def __init__(self, graph):
        import onnx.numpy_helper as nh

        self.graph = graph
        self.consts = {t.name: nh.to_array(t) for t in graph.initializer}
        for n in graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = nh.to_array(n.attribute[0].t)
        self.rebuild()

    def rebuild(self) -> None:
        self.producer = {t: n for n in self.graph.node for t in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for t in dict.fromkeys(n.input):
                self.consumers.setdefault(t, []).append(n)
        self.outputs = {o.name for o in self.graph.output}

    def key(self, node) -> tuple | None:
        """(scale, zero point, type) of a per-tensor Q/DQ with constant parameters, else None."""
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            return None
        s, z = self.consts.get(node.input[1]), self.consts.get(node.input[2])
        if s is None or z is None or s.size != 1 or z.size != 1 or z.dtype not in _RANGE:
            return None
        return float(s.reshape(())), int(z.reshape(())), z.dtype.str

    def uses(self, tensor: str) -> list:
        return self.consumers.get(tensor, [])


def attr(node, key: str, default):
    """A node attribute's value, or `default`."""
    import onnx.helper as oh

    return next((oh.get_attribute_value(a) for a in node.attribute if a.name == key), default)


def _bounds(ix: _Index, node) -> tuple[float, float] | None:
    """The bounds of a Relu or Clip with constant bounds, else None."""
    if node.op_type == "Relu":
        return 0.0, math.inf
    if node.op_type != "Clip":
        return None

    def bound(i: int, default: float) -> float | None:
        if len(node.input) <= i or not node.input[i]:
            return default
        v = ix.consts.get(node.input[i])
        return None if v is None else float(v.reshape(()))

    lo, hi = bound(1, -math.inf), bound(2, math.inf)
    return None if lo is None or hi is None else (lo, hi)


def _grid_range(key: tuple) -> tuple[float, float]:
    scale, zp, dtype = key
    qmin, qmax = _RANGE[np.dtype(dtype)]
    return (qmin - zp) * scale, (qmax - zp) * scale


def _within(bounds: tuple[float, float], key: tuple | None) -> bool:
    """The grid lies inside the clamp's bounds: rounding to it clamps as the op does."""
    if key is None:
        return False
    lo_g, hi_g = _grid_range(key)
    tol = 1e-3 * key[0]
    return bounds[0] <= lo_g + tol and bounds[1] >= hi_g - tol


def _respects(ix: _Index, node, key: tuple | None) -> bool:
    """Rounding to grid `key` commutes with `node`."""
    if key is None:
        return False
    if node.op_type == "AveragePool":  # an average over one value (AdaptiveAvgPool2d at its input size)
        return set(attr(node, "kernel_shape", [0])) == {1} and set(attr(node, "pads", [0])) <= {0}
    if node.op_type not in _COMMUTING:
        return False
    if node.op_type != "Clip":
        return True
    scale, zp, _ = key
    bounds = _bounds(ix, node)
    if bounds is None:
        return False

    def on_grid(v: float) -> bool:
        c = v / scale + zp
        return abs(c - round(c)) < 1e-3

    lo_g, hi_g = _grid_range(key)
    tol = 1e-3 * scale
    return (bounds[0] <= lo_g + tol or on_grid(bounds[0])) and (bounds[1] >= hi_g - tol or on_grid(bounds[1]))


def _pair(graph, ix: _Index, tensor: str, like, at: int) -> str:
    """Insert Q/DQ (the parameters of Q or DQ node `like`) on `tensor` at position `at`; returns
    the DQ's output."""
    import onnx.helper as oh

    base = f"{tensor}__q{len(graph.node)}"
    q = oh.make_node("QuantizeLinear", [tensor, *like.input[1:3]], [base], name=base)
    dq = oh.make_node("DequantizeLinear", [base, *like.input[1:3]], [base + "_dq"], name=base + "_dq")
    graph.node.insert(at, q)
    graph.node.insert(at + 1, dq)
    return base + "_dq"


def _position(graph, node) -> int:
    return list(graph.node).index(node)


def _hoist(graph, ix: _Index) -> bool:
    """Rule 1 once; True when the graph changed."""
    for q in list(graph.node):
        key = ix.key(q) if q.op_type == "QuantizeLinear" else None
        p = ix.producer.get(q.input[0]) if key else None
        if p is None or not _respects(ix, p, key) or q.input[0] in ix.outputs:
            continue
        if any(ix.key(c) != key or c.op_type != "QuantizeLinear" for c in ix.uses(q.input[0])):
            continue  # another consumer reads the unrounded value
        src = p.input[0]
        bounds = _bounds(ix, p)
        if bounds is not None and _within(bounds, key) and _replace_uses(graph, ix, [p.output[0]], src):
            graph.node.remove(p)  # the rounding clamps as the Relu/Clip did (what QLinearConv's fused ReLU does)
            ix.rebuild()
            return True
        d = ix.producer.get(src)
        if d is not None and d.op_type == "DequantizeLinear" and ix.key(d) == key:
            continue  # already on the grid (rule 2 places the pair after the op)
        p.input[0] = _pair(graph, ix, src, q, _position(graph, p))
        ix.rebuild()
        return True
    return False


def _propagate(graph, ix: _Index) -> None:
    """Rule 2, in graph order."""
    grid: dict[str, object] = {}  # tensor -> the DQ whose grid it is on
    for n in list(graph.node):
        if n.op_type == "DequantizeLinear" and ix.key(n):
            grid[n.output[0]] = n
            continue
        like = grid.get(n.input[0]) if n.input else None
        if like is None or not _respects(ix, n, ix.key(like)):
            continue
        out, key = n.output[0], ix.key(like)
        uses = ix.uses(out)
        bounds = _bounds(ix, n)
        if bounds is not None and _within(bounds, key) and _replace_uses(graph, ix, [out], n.input[0]):
            graph.node.remove(n)  # a clamp holding the whole grid of its input changes nothing
            ix.rebuild()
            continue
        if not uses:
            continue
        first = next((c for c in uses if c.op_type == "QuantizeLinear" and ix.key(c) == key), None)
        dq = next((d for d in ix.uses(first.output[0]) if d.op_type == "DequantizeLinear" and ix.key(d) == key),
                  None) if first is not None else None
        if dq is None:
            dq_out = _pair(graph, ix, out, like, _position(graph, n) + 1)
            ix.rebuild()
            first = ix.producer[ix.producer[dq_out].input[0]]  # the new Q
        else:
            dq_out = dq.output[0]
        for c in uses:
            if c is not first:
                c.input[:] = [dq_out if t == out else t for t in c.input]
        ix.rebuild()
        grid[dq_out] = ix.producer[dq_out]


def _merge(graph, ix: _Index) -> bool:
    """Rule 3 once; True when the graph changed."""
    seen: dict[tuple, Any] = {}
    for n in list(graph.node):
        key = ix.key(n)
        if key is None:
            continue
        src = ix.producer.get(n.input[0])
        redundant = (n.op_type == "QuantizeLinear" and src is not None and src.op_type == "DequantizeLinear"
                     and ix.key(src) == key)
        dqs = [d for d in ix.uses(n.output[0]) if d.op_type == "DequantizeLinear" and ix.key(d) == key]
        if redundant and dqs and len(dqs) == len(ix.uses(n.output[0])):
            if _replace_uses(graph, ix, [d.output[0] for d in dqs], n.input[0]):
                for d in dqs:
                    graph.node.remove(d)
                graph.node.remove(n)
                ix.rebuild()
                return True
        twin = seen.setdefault((n.op_type, n.input[0], key), n)
        if twin is not n and n.output[0] not in ix.outputs:
            _replace_uses(graph, ix, [n.output[0]], twin.output[0])
            graph.node.remove(n)
            ix.rebuild()
            return True
    return False


def _replace_uses(graph, ix: _Index, old: list[str], new: str) -> bool:
    """Every reader of the tensors `old` reads `new`; False (nothing done) where one is a graph output."""
    if any(t in ix.outputs for t in old):
        return False
    gone = set(old)
    for t in old:
        for c in ix.uses(t):
            c.input[:] = [new if i in gone else i for i in c.input]
    return True


def int8_normal_form(graph) -> None:
    """Rewrite `graph` (an onnx.GraphProto) in place into the form described in the module doc."""
    ix = _Index(graph)
    while _hoist(graph, ix):
        pass
    _propagate(graph, ix)
    while _merge(graph, ix):
        pass
