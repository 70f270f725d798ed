"""The integer graph effai compiles to C: int8 tensors (NHWC, no batch) and int8 ops.

Semantics follow TFLite's int8 scheme: activations are asymmetric int8 (`real = scale * (q - zp)`),
weights symmetric per output channel, biases int32 at `scale_in * scale_w`. Requantization is the
rounding high multiply of Arm's SMMULR followed by a rounding right shift (two roundings, as
TFLite's): `t = (acc * mult + 2**31) >> 32; out = zp + ((t + 2**shift // 2) >> shift)`, with
`mult < 2**31` and `shift` in [0, 31]; a negative `shift` (multipliers >= 0.5) shifts the
accumulator left instead, after clamping it so the shift cannot overflow. Identical in numpy
(reference.py) and C.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OPS = ("conv", "dwconv", "add", "avgpool", "maxpool", "relu")
_NONE = np.zeros(0, dtype=np.int32)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]  # (H, W, C) or (N,)
    scale: float = 1.0
    zp: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def hwc(self) -> tuple[int, int, int]:
        return self.shape if len(self.shape) == 3 else (1, 1, self.shape[0])


@dataclass
class Op:
    kind: str  # one of OPS
    name: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)  # kernel, stride, pad, ... (ints); "fc": True for dense layers
    weights: np.ndarray = field(default_factory=lambda: _NONE)  # int8: conv (Cout, K), K = kh*kw*Cin; dwconv (kh*kw, C)
    bias: np.ndarray = field(default_factory=lambda: _NONE)  # int32 (Cout,)
    mult: np.ndarray = field(default_factory=lambda: _NONE)  # int32 per output channel (or 1 for pools, 2 for add)
    shift: np.ndarray = field(default_factory=lambda: _NONE)  # empty arrays where an op has none
    act_min: int = -128
    act_max: int = 127
    macs: int = 0

    @property
    def label(self) -> str:
        """The op's name in reports (TFLite's names)."""
        if self.kind == "conv":
            if self.attrs.get("fc"):
                return "fully_connected"
            return "pointwise_conv" if self.attrs["kernel"] == (1, 1) else "conv"
        return {"dwconv": "depthwise_conv", "avgpool": "average_pool", "maxpool": "max_pool"}.get(self.kind, self.kind)


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    ops: list[Op]
    input: str
    output: str

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]

    def geometry(self, op: Op) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """((H, W, C) in, (H, W, C) out) as the op's kernel sees them: a dense layer sees (1, 1, features)."""
        x, y = self.tensors[op.inputs[0]], self.tensors[op.output]
        if op.attrs.get("fc"):
            return (1, 1, x.size), (1, 1, y.size)
        return x.hwc, y.hwc

    @property
    def weight_bytes(self) -> int:
        return int(sum(a.nbytes for op in self.ops for a in (op.weights, op.bias, op.mult, op.shift)))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(mult, shift) with `real ~= mult / 2**(32 + shift)`, 2**30 <= mult < 2**31, shift in [-30, 31].

    >>> quantize_multiplier(0.25), quantize_multiplier(2.0)
    ((1073741824, 0), (1073741824, -3))
    """
    if real <= 0:
        return 0, 0
    if real >= 2**30:
        raise ValueError(f"requantization multiplier {real} >= 2**30 is not supported")
    m, e = np.frexp(real)  # real = m * 2**e, m in [0.5, 1)
    mult, total = int(round(float(m) * 2**31)), 31 - int(e)  # real ~= mult / 2**total
    if mult == 2**31:
        mult, total = mult // 2, total - 1
    if total > 63:  # tiny multiplier
        mult, total = mult >> (total - 63), 63
    return mult, total - 32


def requantize(acc: np.ndarray, mult, shift) -> np.ndarray:
    """SMMULR `(acc * mult + 2**31) >> 32`, then `(t + 2**shift // 2) >> shift`, per channel on the last axis.

    >>> requantize(np.array([3, -3, 5]), *quantize_multiplier(0.5))
    array([ 2, -1,  3])
    """
    acc = np.asarray(acc, dtype=np.int64)
    mult, shift = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(-shift, 0), np.maximum(shift, 0)
    lim = np.int64(1) << (30 - left)
    acc = np.clip(acc, -lim, lim) << left
    t = (acc * mult + (np.int64(1) << 31)) >> 32
    return (t + ((np.int64(1) << right) >> 1)) >> right
