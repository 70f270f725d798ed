"""Static memory plans for the activation arena: TFLite Micro's greedy plan and effai's.

`tflm_greedy` is TFLite Micro's GreedyMemoryPlanner: buffers sorted largest first, each placed at
the lowest offset that does not overlap a placed buffer whose lifetime overlaps its own.

`plan` adds what TinyEngine-style compilers do: an op's output may overlap an input that dies at
that op, as far as the kernel's order of reads and writes allows. Kernels write output pixels in
order and read a pixel's whole window before writing it, so the output may start `D` bytes before
the input (`D` from `overlap_offset`, exact per layer); elementwise ops run fully in place (D=0).
Several placement orders are tried and the smallest arena kept. `check` verifies any plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from effai.mcu.ir import Graph, Op

ALIGN = 4
PAD = {"portable": 4, "dsp": 4, "mve": 8}  # im2col rows and weight rows are padded to this many values


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int  # index of the op that writes it (0 for the model input)
    last: int  # index of the last op that reads it


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]
    arena_bytes: int
    method: str


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def scratch_bytes(graph: Graph, op: Op, kernels: str = "dsp") -> int:
    """int16 im2col scratch of two output pixels for convolutions (and dense layers), rows padded
    to PAD[kernels]; the input band of the DSP depthwise 3x3 kernel."""
    if op.kind == "conv":
        return 0 if kernels == "dsp" and conv_dsp_mode(graph, op) == "direct" else 2 * 2 * padded_k(op, PAD[kernels])
    return dw_band_bytes(graph, op) if kernels == "dsp" else 0


FAST_SHIFTS = (0, 22)  # requantization shifts the DSP kernels' one-step rounding takes exactly (codegen.requant_table)


def fast_requant(shift: np.ndarray) -> bool:
    """Whether every output channel's shift is one the DSP kernels' fast requantization takes."""
    return bool(((shift >= FAST_SHIFTS[0]) & (shift <= FAST_SHIFTS[1])).all())


def conv_dsp_mode(graph: Graph, op: Op) -> str | None:
    """How effai_conv_dsp (kernels/effai_conv_dsp.h) runs a conv or dense layer: "direct" (1x1,
    no padding, channels a multiple of 4: raw inputs read in place), "cols" (int16 im2col), or
    None (the generic effai_conv_s8: an odd number of output channels, a long reduction that is
    not a multiple of 16, or shifts outside FAST_SHIFTS)."""
    (_, _, c), (_, _, n) = graph.geometry(op)
    k4 = padded_k(op, 4)
    if op.kind != "conv" or n % 2 or (k4 > 64 and k4 % 16) or not fast_requant(op.shift):
        return None
    one = op.attrs["kernel"] == (1, 1) and op.attrs["pad"] == (0, 0) and op.attrs["stride"][0] == op.attrs["stride"][1]
    return "direct" if one and c % 4 == 0 else "cols"


def dw_band_bytes(graph: Graph, op: Op) -> int:
    """Bytes of the padded input rows effai_dwconv3x3_dsp copies (kernels/effai_dw3x3.h): the
    windows of two output rows, stride + 3 rows, where that saves copies or pairs an odd last
    column (stride 1, or an odd output width), else 3; 0 when the layer is not
    one it runs (3x3, equal strides 1 or 2, at least 4 channels, a window within the 4095 bytes
    an LDR immediate offset reaches, shifts within FAST_SHIFTS)."""
    if (op.kind != "dwconv" or op.attrs["kernel"] != (3, 3) or op.attrs["stride"] not in ((1, 1), (2, 2))
            or not fast_requant(op.shift)):
        return 0
    (_, iw, c), (oh, ow, _) = graph.geometry(op)
    s, pl = op.attrs["stride"][1], op.attrs["pad"][1]
    row = (pl + iw + max(0, (ow - 1) * s + 3 - pl - iw)) * c
    if c < 4 or 2 * row + (s + 2) * c > 4095:
        return 0
    return (s + 3 if oh > 1 and (s == 1 or ow % 2) else 3) * row


def padded_k(op: Op, pad: int) -> int:
    return -(-op.weights.shape[1] // pad) * pad


def buffers(graph: Graph, kernels: str = "dsp") -> list[Buffer]:
    """Every activation tensor and scratch buffer with its lifetime in op indices."""
    n = len(graph.ops)
    first = {graph.input: 0}
    last = {graph.output: n}
    for i, op in enumerate(graph.ops):
        first.setdefault(op.output, i)
        for t in op.inputs:
            last[t] = max(last.get(t, i), i)
    out = [Buffer(t, _align(graph.tensors[t].size), first[t], last.get(t, first[t])) for t in first]
    out += [Buffer(f"scratch:{op.name}", _align(scratch_bytes(graph, op, kernels)), i, i)
            for i, op in enumerate(graph.ops) if scratch_bytes(graph, op, kernels)]
    return out


def overlap_offset(graph: Graph, op: Op) -> int:
    """Least (input offset - output offset) at which `op` may write over its input.

    Pixel p's writes end at (p+1)*Cout; its window starts at R(p). Requiring the writes up to pixel
    p+1 to end before R(p) is safe for one-pixel and two-pixel kernels alike.
    """
    if op.kind in ("add", "relu"):
        return 0
    (ih, iw, ic), (oh, ow, oc) = graph.geometry(op)
    (sh, sw), (pt, pl) = op.attrs["stride"], op.attrs["pad"]
    p = np.arange(oh * ow)
    oy, ox = p // ow, p % ow
    read_start = (np.maximum(0, oy * sh - pt) * iw + np.maximum(0, ox * sw - pl)) * ic
    write_end = (np.minimum(p + 1, len(p) - 1) + 1) * oc
    return int((write_end - read_start).max())


def overlaps(graph: Graph) -> dict[tuple[str, str], int]:
    """(input, output) -> D for every op whose input dies there and whose kernel allows overlap."""
    last = {b.name: b.last for b in buffers(graph)}
    pairs = {}
    for i, op in enumerate(graph.ops):
        if op.kind not in ("conv", "dwconv", "add", "relu"):
            continue
        for t in dict.fromkeys(op.inputs):
            if last[t] == i and t != graph.output:
                pairs[(t, op.output)] = overlap_offset(graph, op)
    return pairs


def _forbidden(b: Buffer, a: Buffer, off_a: int, pairs) -> tuple[int, int]:
    """Open interval of offsets for b that clash with a placed at off_a."""
    lo, hi = off_a - b.size, off_a + a.size
    if (a.name, b.name) in pairs:  # a is the input b overwrites: need off_a - x >= D
        lo = max(lo, off_a - pairs[(a.name, b.name)])
    elif (b.name, a.name) in pairs:  # b is the input a overwrites: need x - off_a >= D
        hi = min(hi, off_a + pairs[(b.name, a.name)])
    return lo, hi


def _place(order: list[Buffer], pairs) -> tuple[dict[str, int], int]:
    placed: list[tuple[Buffer, int]] = []
    for b in order:
        clashes = [_forbidden(b, a, off, pairs) for a, off in placed if a.first <= b.last and b.first <= a.last]
        for x in sorted({0, *(max(0, hi) for _, hi in clashes)}):
            if all(not (lo < x < hi) for lo, hi in clashes):
                break
        placed.append((b, x))
    offsets = {b.name: off for b, off in placed}
    return offsets, max((off + b.size for b, off in placed), default=0)


def tflm_greedy(graph: Graph, kernels: str = "dsp") -> Plan:
    """TFLite Micro's greedy plan: largest first, first fit, no overlap between live buffers."""
    bufs = sorted(buffers(graph, kernels), key=lambda b: (-b.size, b.first))
    offsets, size = _place(bufs, {})
    return Plan(offsets, size, "tflm_greedy")


def plan(graph: Graph, kernels: str = "dsp") -> Plan:
    """effai's plan: overlap where kernels allow, best of several placement orders.

    >>> import torch; from effai.mcu.lower import lower
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1))
    >>> g = lower(m, torch.randn(2, 8, 4, 4))
    >>> plan(g).arena_bytes < tflm_greedy(g).arena_bytes
    True
    """
    pairs = overlaps(graph)
    bufs = buffers(graph, kernels)
    orders = [sorted(bufs, key=lambda b: (-b.size, b.first)), sorted(bufs, key=lambda b: (b.first, -b.size)),
              sorted(bufs, key=lambda b: (-(b.last - b.first + 1) * b.size, b.first)),
              sorted(bufs, key=lambda b: (-b.last, -b.first)), sorted(bufs, key=lambda b: (-b.size, -b.first))]
    best = min((_place(o, pairs) for o in orders), key=lambda r: r[1])
    check(graph, best[0], pairs, kernels)
    return Plan(best[0], best[1], "effai")


def check(graph: Graph, offsets: dict[str, int], pairs=None, kernels: str = "dsp") -> None:
    """Raise AssertionError if two live buffers overlap other than as a kernel allows."""
    pairs = overlaps(graph) if pairs is None else pairs
    bufs = buffers(graph, kernels)
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                lo, hi = _forbidden(b, a, offsets[a.name], pairs)
                assert not (lo < offsets[b.name] < hi), f"plan: {a.name} and {b.name} overlap while both are live"
