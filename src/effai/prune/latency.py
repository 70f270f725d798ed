"""Measured latency for pruning decisions: interleaved ONNX Runtime timing of whole models,
a per-layer cost table of what each channel group costs, and the latency-aware allocation.

MACs are not latency: on a CPU a depthwise conv costs far more time per MAC than a 1x1 conv,
a layer whose channel count is not a multiple of the SIMD width wastes lanes, and at two or
more threads a small layer is mostly overhead. So the allocation times, with ONNX Runtime at
batch 1 and the thread count you deploy with, every conv/linear layer a channel group touches
(its producers, its depthwise convs, its consumers) at a few kept counts of that group, and
spends the channel budget where removing channels saves the most measured time per MAC
removed: MACs that cost no time are capacity lost for nothing, so they are removed last.

Timing single layers instead of whole pruned models makes each probe's saving the whole
measured quantity, not a 2 % difference of two noisy full-model timings, and it is cheap:
one small ONNX graph per distinct layer shape (MobileNetV2 at 224x224: a few seconds).

This module knows channel groups (`effai.prune.graph`) but not how to slice a model: the
structured pruner (`effai.prune.structured`) calls it, never the other way round.
"""

from __future__ import annotations

import heapq
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effai.prune.channels import PRODUCER
from effai.prune.core import keep_count

# Fractions of a group's channels the cost table probes (plus `max_ratio` itself).
PROBE_FRACTIONS = (0.25, 0.5, 0.75)


def ort_session(model: nn.Module, example: torch.Tensor, path: Path, threads: int = 1):
    """Export `model` to ONNX at `path` and open a CPU ONNX Runtime session on it
    (`threads=0`: ONNX Runtime's default, one per physical core)."""
    from effai.profile.latency import export_fp32_onnx
    from effai.profile.latency import ort_session as open_session

    export_fp32_onnx(model, path, example)
    return open_session(path, threads)


def measure_models(models: list[nn.Module], example: torch.Tensor, threads: int = 1, rounds: int = 5,
                   runs: int = 10, statistic: str = "median", min_round_ms: float = 0.0,
                   clock: str | None = None) -> list[float]:
    """ONNX Runtime latency (ms, batch of `example`) of several models, timed side by side in
    `rounds` interleaved rounds of `runs` calls (more for a model faster than `min_round_ms` a
    round): each model's median round, or its fastest with `statistic="min"`, by `clock`
    (default `clock_for(threads)`; effai.profile.latency.interleaved)."""
    from effai.profile.latency import interleaved

    feed = example.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = [ort_session(m, example, Path(tmp) / f"m{i}.onnx", threads) for i, m in enumerate(models)]
        calls = {str(i): (lambda s=s, n=s.get_inputs()[0].name: s.run(None, {n: feed}))
                 for i, s in enumerate(sessions)}
        ms = interleaved(calls, rounds=rounds, inner=runs, warmup=3, statistic=statistic, min_round_ms=min_round_ms,
                         clock=clock or clock_for(threads))
    return [ms[str(i)] for i in range(len(models))]


def clock_for(threads: int) -> str:
    """The clock pruning decisions time with: at 1 thread ONNX Runtime computes on the calling
    thread, whose CPU time is the call's cost on a core of its own even while other processes
    share the machine (wall time there swung 3x at load 16, CPU time stayed within 4%); with
    more threads the work is spread over workers, so only wall time measures it."""
    return "thread_cpu" if threads == 1 else "wall"


@dataclass(frozen=True)
class Layer:
    """One conv/linear layer as the runtime sees it: input shape (batch first), output channels
    and conv geometry (empty tuples for a linear layer)."""

    in_shape: tuple
    out_channels: int
    kernel: tuple = ()
    stride: tuple = ()
    pads: tuple = ()
    dilation: tuple = ()
    groups: int = 1

    @property
    def depthwise(self) -> bool:
        return 1 < self.groups == self.in_shape[1] == self.out_channels

    def resized(self, cin: int, cout: int) -> Layer:
        groups = cin if self.depthwise else self.groups  # a depthwise conv keeps one filter per channel
        return Layer((self.in_shape[0], cin, *self.in_shape[2:]), cout, self.kernel, self.stride, self.pads,
                     self.dilation, groups)

    def onnx(self) -> bytes:
        return _onnx_bytes(self)

    def macs(self) -> int:
        if not self.kernel:
            return self.in_shape[0] * self.in_shape[1] * self.out_channels
        out = [(n + p0 + p1 - d * (k - 1) - 1) // s + 1 for n, k, s, d, p0, p1 in zip(
            self.in_shape[2:], self.kernel, self.stride, self.dilation, self.pads[::2], self.pads[1::2],
            strict=True)]
        return int(self.in_shape[0] * self.out_channels * np.prod(out) * self.in_shape[1] // self.groups
                   * np.prod(self.kernel))


@dataclass(frozen=True)
class GroupCost:
    """What one channel group costs at a few kept counts: `keeps[0]` is the full size; `ms[i]`
    and `macs[i]` are the summed time and MACs of the layers the group touches when it keeps
    `keeps[i]` channels (every other group full)."""

    root: int
    name: str
    keeps: tuple[int, ...]
    ms: tuple[float, ...]
    macs: tuple[int, ...]


def layers_of(model: nn.Module, example: torch.Tensor, fqns) -> dict[str, Layer]:
    """The runtime shape of each named conv/linear layer, from one forward pass."""
    found: dict[str, Layer] = {}
    mods = dict(model.named_modules())

    def hook(fqn):
        def record(m, args, _out):
            shape = tuple(args[0].shape)
            if isinstance(m, nn.Linear):
                found[fqn] = Layer(shape, m.out_features)
                return
            n = len(m.kernel_size)
            pad = m.padding
            if isinstance(pad, str):  # "valid" or "same" (stride 1): the runtime's symmetric padding
                pad = (0,) * n if pad == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(
                    m.dilation, m.kernel_size, strict=True))
            found[fqn] = Layer(shape, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                               tuple(p for p in pad for _ in (0, 1)), tuple(m.dilation), m.groups)
        return record

    handles = [mods[f].register_forward_hook(hook(f)) for f in fqns]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return found


def _onnx_bytes(layer: Layer) -> bytes:
    """A one-node ONNX graph (Conv or Gemm) with random weights, as ONNX Runtime would run the
    layer inside the model (BatchNorm folds into the conv; activations fuse into it)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    cin, cout = layer.in_shape[1], layer.out_channels
    if layer.kernel:
        w = rng.standard_normal((cout, cin // layer.groups, *layer.kernel), dtype=np.float32) * 0.1
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=list(layer.kernel),
                                strides=list(layer.stride), dilations=list(layer.dilation), group=layer.groups,
                                pads=list(layer.pads[::2] + layer.pads[1::2]))
    else:
        w = rng.standard_normal((cout, cin), dtype=np.float32) * 0.1
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(cout, np.float32), "b")]
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                              list(layer.in_shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@dataclass(frozen=True)
class AttentionLayer:
    """One self-attention layer as the runtime sees it: `heads` heads of `head_dim` over `seq`
    tokens of width `d` (batch 1): Q/K/V projections, scaled dot-product softmax, O projection."""

    seq: int
    d: int
    heads: int
    head_dim: int

    @property
    def in_shape(self) -> tuple:
        return (1, self.seq, self.d)

    def macs(self) -> int:
        inner = self.heads * self.head_dim
        return 4 * self.seq * self.d * inner + 2 * self.seq * self.seq * inner

    def onnx(self) -> bytes:
        from onnx import helper

        h, hd, t = self.heads, self.head_dim, self.seq
        split = [helper.make_node("Reshape", [f"{z}p", "split"], [f"{z}s"]) for z in "qkv"]
        nodes = [*_projection("x", "q", self.d, h * hd), *_projection("x", "k", self.d, h * hd),
                 *_projection("x", "v", self.d, h * hd), *split,
                 helper.make_node("Transpose", ["qs"], ["qt"], perm=[0, 2, 1, 3]),
                 helper.make_node("Transpose", ["ks"], ["kt"], perm=[0, 2, 3, 1]),
                 helper.make_node("Transpose", ["vs"], ["vt"], perm=[0, 2, 1, 3]),
                 helper.make_node("MatMul", ["qt", "kt"], ["qk"]), helper.make_node("Mul", ["qk", "scale"], ["qks"]),
                 helper.make_node("Softmax", ["qks"], ["att"], axis=-1), helper.make_node("MatMul", ["att", "vt"], ["ctx"]),
                 helper.make_node("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]),
                 helper.make_node("Reshape", ["ctxt", "merge"], ["ctxm"]), *_projection("ctxm", "y", h * hd, self.d)]
        consts = {"split": np.array([1, t, h, hd], np.int64), "merge": np.array([1, t, h * hd], np.int64),
                  "scale": np.array(hd ** -0.5, np.float32)}
        return _graph(nodes, self.in_shape, consts)


@dataclass(frozen=True)
class FFNLayer:
    """One transformer feed-forward layer (batch 1, `seq` tokens of width `d`): Linear to
    `neurons`, GELU, Linear back to `d`."""

    seq: int
    d: int
    neurons: int

    @property
    def in_shape(self) -> tuple:
        return (1, self.seq, self.d)

    def macs(self) -> int:
        return 2 * self.seq * self.d * self.neurons

    def onnx(self) -> bytes:
        from onnx import helper

        gelu = [helper.make_node("Mul", ["up", "rsqrt2"], ["u1"]), helper.make_node("Erf", ["u1"], ["u2"]),
                helper.make_node("Add", ["u2", "one"], ["u3"]), helper.make_node("Mul", ["up", "u3"], ["u4"]),
                helper.make_node("Mul", ["u4", "half"], ["act"])]
        nodes = [*_projection("x", "up", self.d, self.neurons), *gelu, *_projection("act", "y", self.neurons, self.d)]
        consts = {"rsqrt2": np.array(0.5 ** 0.5, np.float32), "one": np.array(1.0, np.float32),
                  "half": np.array(0.5, np.float32)}
        return _graph(nodes, self.in_shape, consts)


def _projection(x: str, out: str, n_in: int, n_out: int) -> list:
    """MatMul + bias nodes of a Linear `n_in -> n_out` (weights `out`_w, `out`_b), output `out` ("p"
    appended for the q/k/v projections, which are reshaped afterwards)."""
    from onnx import helper

    y = out + "p" if out in ("q", "k", "v") else out
    return [helper.make_node("MatMul", [x, f"{out}_w:{n_in}x{n_out}"], [f"{out}_mm"]),
            helper.make_node("Add", [f"{out}_mm", f"{out}_b:{n_out}"], [y])]


def _graph(nodes: list, in_shape: tuple, consts: dict) -> bytes:
    """An ONNX model of `nodes` with input "x" of `in_shape` and output "y": constants from
    `consts`, and random weights for every input named `NAME:AxB` (a matrix) or `NAME:N` (a bias)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    for name in dict.fromkeys(i for n in nodes for i in n.input if ":" in i):
        shape = [int(s) for s in name.split(":")[1].split("x")]
        inits.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32) * 0.05, name))
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def time_layers(layers: list[Layer], threads: int = 1, rounds: int = 5) -> dict[Layer, float]:
    """ONNX Runtime milliseconds per call of each distinct layer, timed side by side
    (interleaved rounds of at least 2 ms each, the quietest round kept: load only adds time;
    clock: `clock_for(threads)`)."""
    from effai.profile.latency import interleaved
    from effai.profile.latency import ort_session as open_session

    distinct = list(dict.fromkeys(layers))
    calls = {}
    rng = np.random.default_rng(0)
    for i, layer in enumerate(distinct):
        sess = open_session(layer.onnx(), threads)
        feed = {"x": rng.standard_normal(layer.in_shape, dtype=np.float32)}
        calls[str(i)] = lambda s=sess, f=feed: s.run(None, f)
    ms = interleaved(calls, rounds=rounds, inner=1, warmup=2, min_round_ms=2.0, statistic="min",
                     clock=clock_for(threads))
    return {layer: ms[str(i)] for i, layer in enumerate(distinct)}


def probe_keeps(size: int, max_ratio: float, round_to: int, name: str) -> tuple[int, ...]:
    """The kept counts the cost table probes for a group of `size` channels, largest first.

    >>> probe_keeps(96, 0.75, 8, "g"), probe_keeps(16, 0.75, 16, "g")
    ((96, 72, 48, 24), (16,))
    """
    fractions = sorted({f for f in PROBE_FRACTIONS if f <= max_ratio} | {max_ratio})
    keeps = {keep_count(size, f, round_to, name) for f in fractions if round(size * (1 - f)) >= 1}
    return (size, *sorted((k for k in keeps if k < size), reverse=True))


def resize_layers(layers: dict[str, Layer], dg, keep: dict[int, int], only=None) -> dict[str, Layer]:
    """Each layer as it runs once the groups keep `keep[root]` channels (absent roots: all).
    `only` limits the result to the layers a group touches (its root)."""
    sizes = {g.root: g.size for g in dg.groups}
    out_of = {m.fqn: g.root for g in dg.groups for m in g.members if m.role == PRODUCER}
    cut = {root: sizes[root] - k for root, k in keep.items()}
    resized = {}
    for f in layers:  # conv/linear layers only: a norm's time is folded into the conv before it
        x = dg.consumers.get(f)
        segs = x[1].segments if x is not None else ()
        roots = [dg.spaces.find(sp) for sp, _ in segs]
        if only is not None and out_of.get(f) != only and only not in roots:
            continue
        lay = layers[f]
        cin = lay.in_shape[1] - sum(cut.get(r, 0) * mult for r, (_, mult) in zip(roots, segs, strict=True))
        cout = cin if lay.depthwise else lay.out_channels - cut.get(out_of.get(f, -1), 0)
        resized[f] = lay.resized(cin, cout)
    return resized


def group_costs(layers: dict[str, Layer], dg, max_ratio: float, round_to: int, threads: int = 1,
                timer=None) -> list[GroupCost]:
    """The cost table of every prunable group of `dg` (see `GroupCost`), measured by `timer`
    (`layers, threads -> {layer: ms}`; default `time_layers`) on the layers each group touches."""
    plans = [(g, k, resize_layers(layers, dg, {g.root: k}, only=g.root).values())
             for g in dg.groups for k in probe_keeps(g.size, max_ratio, round_to, g.name)]
    ms = (timer or time_layers)([v for _, _, vs in plans for v in vs], threads)
    table: dict[int, list] = {}
    for g, keep, variants in plans:
        table.setdefault(g.root, []).append((keep, sum(ms[v] for v in variants), sum(v.macs() for v in variants)))
    return [GroupCost(g.root, g.name, *(tuple(col) for col in zip(*table[g.root], strict=True))) for g in dg.groups]


def allocate(costs: list[GroupCost], ratio: float, round_to: int = 1, mac_weight: float = 0.0) -> dict[int, int]:
    """Channels to keep per group (root -> count): remove `ratio` of all channels, one probed
    step at a time (a group from one probed kept count to the next), always taking the step
    with the highest value per channel removed, value = (time saved / T) - mac_weight x (MACs
    removed / M), T and M summed over `costs`. Weight 0 buys
    the most time for the channels; a higher weight prefers time whose MACs are few, so that the
    MACs removed turn into time. The last step is cut short to fit the budget (rounded to
    `round_to`).

    >>> a = GroupCost(0, "a", (32, 16), (2.0, 1.0), (2000, 1000))   # saves 1 ms and 1000 MACs
    >>> b = GroupCost(1, "b", (32, 16), (2.0, 0.8), (4000, 1000))   # saves 1.2 ms and 3000 MACs
    >>> allocate([a, b], 0.25), allocate([a, b], 0.25, mac_weight=1.0), allocate([a, b], 0.375)
    ({0: 32, 1: 16}, {0: 16, 1: 32}, {0: 24, 1: 16})
    """
    t_all, m_all = sum(c.ms[0] for c in costs), sum(c.macs[0] for c in costs)
    budget = int(round(ratio * sum(c.keeps[0] for c in costs)))
    keep = {c.root: c.keeps[0] for c in costs}
    step = dict.fromkeys(keep, 0)
    heap: list = []

    def offer(c: GroupCost):
        i = step[c.root]
        if i + 1 < len(c.keeps):
            value = (c.ms[i] - c.ms[i + 1]) / t_all - mac_weight * (c.macs[i] - c.macs[i + 1]) / m_all
            heapq.heappush(heap, (-value / (c.keeps[i] - c.keeps[i + 1]), c.name, c.root, c))

    for c in costs:
        offer(c)
    while budget > 0 and heap:
        _, _, root, c = heapq.heappop(heap)
        i = step[root]
        channels = c.keeps[i] - c.keeps[i + 1]
        if channels <= budget:
            keep[root] = c.keeps[i + 1]
            step[root] = i + 1
            budget -= channels
            offer(c)
        else:  # part of the step: as close to the budget as the rounding allows, never past the next probe
            k = keep_count(c.keeps[0], (c.keeps[0] - c.keeps[i] + budget) / c.keeps[0], round_to, c.name)
            k = min(keep[root], max(c.keeps[i + 1], k))
            budget -= keep[root] - k
            keep[root] = k
            break
    return keep


# MAC weights the candidates are built with: 0 buys the most time per channel; up to 1.5 favours
# time whose MACs are few (depthwise convs, small channel counts the kernels run inefficiently).
MAC_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5)


def candidates(model: nn.Module, dg, example: torch.Tensor, ratio: float, max_ratio: float = 0.75,
               round_to: int = 1, threads: int = 1, timer=None) -> list[tuple[str, dict[int, int]]]:
    """Distinct allocations worth timing for a `ratio` channel budget, as (label, root -> kept
    count): uniform, then one per MAC weight from the measured cost table (`group_costs`,
    `allocate`)."""
    layers = layers_of(model, example, conv_layers(model))
    costs = group_costs(layers, dg, max_ratio, round_to, threads, timer)
    found = [("uniform", {g.root: keep_count(g.size, ratio, round_to, g.name) for g in dg.groups})]
    for w in MAC_WEIGHTS:
        keep = allocate(costs, ratio, round_to, w)
        if all(keep != k for _, k in found):
            found.append((f"mac_weight={w}", keep))
    return found


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's conv and linear layers (where the runtime spends its time)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def conv_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of the model's conv and linear layers for one `example` (what pruning shrinks)."""
    return sum(lay.macs() for lay in layers_of(model, example, conv_layers(model)).values())


def choose(ms: list[float], macs: list[int], dense_ms: float, dense_macs: int, min_efficiency: float) -> int:
    """Index of the fastest candidate whose speedup / MAC reduction is at least `min_efficiency`
    (or of the most efficient one when none is).

    >>> choose([2.0, 1.0, 1.5], [50, 10, 40], dense_ms=4.0, dense_macs=100, min_efficiency=0.8)
    2
    >>> choose([2.0, 1.0], [50, 10], dense_ms=4.0, dense_macs=100, min_efficiency=1.5)
    0
    """
    eff = [(dense_ms / t) / (dense_macs / max(1, m)) for t, m in zip(ms, macs, strict=True)]
    good = [i for i, e in enumerate(eff) if e >= min_efficiency]
    return min(good, key=lambda i: ms[i]) if good else max(range(len(eff)), key=lambda i: eff[i])
