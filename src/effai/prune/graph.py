"""Channel dependency analysis on a torch.fx graph: which channels must be removed together.

Every tensor with a channel axis (dim 1 of an NCHW or (N, C) tensor) carries a list of
*segments*; each segment is a channel space (a union-find node) and a multiplier (a flattened
(C, H, W) tensor has multiplier H*W). Layers attach to spaces as members:

- `out`: a Conv/Linear producing the space (weight dim 0, bias);
- `bn`:  a BatchNorm normalising it (all four vectors);
- `dw`:  a depthwise conv, channel c in -> channel c out (the input and output are one space);
- `in`:  a Conv/Linear consuming it (weight dim 1 at the segment's offsets).

Residual adds and SE gating (`x * gate`) merge the spaces of their operands; `torch.cat`
concatenates segment lists; pooling, activations, dropout and spatial means pass spaces through.
The model's input and output spaces are pinned (never pruned), so the output shape is kept.
Grouped (non-depthwise) convs pin their spaces. An op that mixes or reshapes channels in a
way the analysis cannot follow raises `InputError` naming the layer, never a silently wrong
graph.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from effai.errors import InputError

PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU, nn.GELU, nn.Tanh, nn.LeakyReLU,
    nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.Softplus, nn.Hardtanh,
)
PASS_FUNCS = {
    torch.relu, torch.sigmoid, torch.tanh, torch.nn.functional.relu, torch.nn.functional.relu6,
    torch.nn.functional.hardswish, torch.nn.functional.hardsigmoid, torch.nn.functional.silu,
    torch.nn.functional.gelu, torch.nn.functional.dropout, torch.nn.functional.max_pool2d,
    torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.interpolate,
    torch.nn.functional.leaky_relu, torch.nn.functional.hardtanh, torch.nn.functional.pad,
}
PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "clamp", "clamp_"}
ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
               torch.add, torch.sub, torch.mul, torch.div}
ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "div"}


class _UF:
    def __init__(self):
        self.parent: list[int] = []
        self.size: list[int] = []
        self.pinned: list[bool] = []

    def new(self, size: int, pinned: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.pinned.append(pinned)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int, where: str) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise InputError(f"{where}: joins {self.size[a]} and {self.size[b]} channels; cannot follow this graph")
        self.parent[b] = a
        self.pinned[a] = self.pinned[a] or self.pinned[b]

    def pin(self, a: int) -> None:
        self.pinned[self.find(a)] = True


Segs = list[tuple[int, int]]  # (space, multiplier)


@dataclass
class Group:
    """Channels that must be pruned together: one space after all unions."""

    root: int
    size: int
    members: list[tuple[str, str, nn.Module]] = field(default_factory=list)  # (kind, fqn, module)

    @property
    def name(self) -> str:
        outs = [f for k, f, _ in self.members if k == "out"]
        return outs[0] if outs else (self.members[0][1] if self.members else f"space{self.root}")


@dataclass
class DepGraph:
    uf: _UF
    groups: list[Group]  # prunable groups only
    inputs: dict[str, tuple[nn.Module, Segs]]  # fqn -> (module, input segments) of every consumer
    all_members: dict[int, list[tuple[str, str, nn.Module]]]


class _Tracer(fx.Tracer):
    """Records the module being traced so a trace failure can name the layer."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.failed: str | None = None

    def call_module(self, m, forward, args, kwargs):
        name = self.path_of_module(m)
        self.stack.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            self.failed = self.failed if self.failed is not None else name  # the innermost layer
            raise
        finally:
            self.stack.pop()


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Symbolic trace plus shape propagation; a model that cannot be traced is an InputError."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # noqa: BLE001 - any trace failure is a model the analysis cannot handle
        where = tracer.failed or ""
        kind = type(model.get_submodule(where)).__name__
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise InputError(f"layer {where or '<root>'!r} ({kind}): cannot trace it for channel pruning ({msg})") from None
    gm = fx.GraphModule(model, graph)
    was = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    model.train(was)
    return gm


def _shape(node) -> tuple | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def analyse(model: nn.Module, example: torch.Tensor) -> DepGraph:
    """Build the channel groups of `model` for an input like `example` (batch 1 is enough)."""
    gm = trace(model, example)
    modules = dict(gm.named_modules())
    uf = _UF()
    segs: dict[fx.Node, Segs | None] = {}
    members: list[tuple[int, str, str, nn.Module]] = []
    inputs: dict[str, tuple[nn.Module, Segs]] = {}
    produced: dict[str, Segs] = {}

    def channels(node) -> Segs | None:
        return segs.get(node) if isinstance(node, fx.Node) else None

    def fresh(node, pinned=False) -> Segs | None:
        shp = _shape(node)
        if shp is None or len(shp) < 2:
            return None
        return [(uf.new(shp[1], pinned), 1)]

    def pin_all(s: Segs | None):
        for sp, _ in s or []:
            uf.pin(sp)

    def unsupported(node, what: str):
        raise InputError(f"layer {node.target if node.op != 'call_function' else node.name!r}: {what}; "
                         "the channel dependency analysis cannot follow it (exclude the model from structured pruning)")

    def join(a: Segs, b: Segs, where: str) -> Segs:
        if [m for _, m in a] != [m for _, m in b] or len(a) != len(b):
            # e.g. a concatenation added to a single conv output: join them as pinned
            pin_all(a)
            pin_all(b)
            return a
        for (x, _), (y, _) in zip(a, b, strict=False):
            uf.union(x, y, where)
        return a

    def elementwise(node) -> Segs | None:
        # Operands with a real channel axis must agree channel by channel (residual add,
        # SE gate); scalars and broadcast (N, 1, ...) operands do not constrain channels.
        out, foreign = None, False
        for a in list(node.args) + list(node.kwargs.values()):
            shp = _shape(a)
            if isinstance(a, fx.Node) and channels(a) is None and (shp is None or _numel(shp) > 1):
                foreign = True  # a parameter or untracked tensor: its channels cannot shrink with ours
            if channels(a) is None or shp is None or len(shp) < 2 or shp[1] == 1:
                continue
            out = channels(a) if out is None else join(out, channels(a), node.name)
        if foreign:
            pin_all(out)
        shp = _shape(node)
        if out is None and shp is not None and len(shp) >= 2 and shp[1] > 1:
            return fresh(node, pinned=True)
        return out

    for node in gm.graph.nodes:
        ins = [channels(a) for a in node.all_input_nodes]
        if node.op == "placeholder":
            segs[node] = fresh(node, pinned=True)
        elif node.op == "get_attr":
            segs[node] = None
        elif node.op == "output":
            for s in ins:
                pin_all(s)
        elif node.op == "call_module":
            m = modules[node.target]
            x = channels(node.args[0])
            fqn = str(node.target)
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                if isinstance(m, nn.Linear) and len(_shape(node.args[0]) or ()) != 2:
                    unsupported(node, "a Linear applied to a tensor that is not (N, features)")
                groups = getattr(m, "groups", 1)
                if x is None:
                    unsupported(node, "input channels unknown")
                if fqn in inputs:  # a layer called twice: both calls must agree
                    segs[node] = produced[fqn]
                    join(inputs[fqn][1], x, fqn)
                    continue
                if groups == 1:
                    inputs[fqn] = (m, x)
                    out = fresh(node)
                    members.append((out[0][0], "out", fqn, m))
                    segs[node] = produced[fqn] = out
                elif groups == m.in_channels == m.out_channels and all(mm == 1 for _, mm in x):
                    for sp, _ in x:  # channel c in -> channel c out: one space per segment
                        members.append((sp, "dw", fqn, m))
                    segs[node] = produced[fqn] = x
                    inputs[fqn] = (m, x)
                else:  # grouped conv: keep its channels as they are
                    pin_all(x)
                    segs[node] = produced[fqn] = fresh(node, pinned=True)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if x is None or len(x) != 1 or x[0][1] != 1:
                    pin_all(x)
                else:
                    members.append((x[0][0], "bn", fqn, m))
                segs[node] = x
            elif isinstance(m, PASS_MODULES):
                segs[node] = x
            elif isinstance(m, nn.Flatten):
                segs[node] = _flatten(node, x, m.start_dim, unsupported)
            else:
                if any(s is not None for s in ins):
                    unsupported(node, f"unsupported layer type {type(m).__name__}")
                segs[node] = fresh(node, pinned=True)
        elif node.op == "call_function":
            f = node.target
            tensors = [channels(a) for a in node.args if isinstance(a, fx.Node)]
            known = [s for s in tensors if s is not None]
            if f in PASS_FUNCS:
                segs[node] = channels(node.args[0])
            elif f in ELEMENTWISE:
                segs[node] = elementwise(node)
            elif f is torch.flatten:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                segs[node] = _flatten(node, channels(node.args[0]), start, unsupported)
            elif f is torch.cat:
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                parts = [channels(a) for a in node.args[0]]
                if dim in (1, -3) and all(p is not None and all(mm == 1 for _, mm in p) for p in parts):
                    segs[node] = [s for p in parts for s in p]
                else:
                    for p in parts:
                        pin_all(p)
                    segs[node] = fresh(node, pinned=True)
            elif f is operator.getitem or f is getattr:
                if known:
                    unsupported(node, "indexing a channel tensor")
                segs[node] = None
            else:
                if known:
                    unsupported(node, f"unsupported function {getattr(f, '__name__', f)}")
                segs[node] = fresh(node, pinned=True)
        elif node.op == "call_method":
            x = channels(node.args[0])
            name = node.target
            if name in PASS_METHODS:
                segs[node] = x
            elif name in ELEMENTWISE_METHODS:
                segs[node] = elementwise(node)
            elif name in ("mean", "sum", "amax"):
                dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                dims = (dims,) if isinstance(dims, int) else dims
                nd = len(_shape(node.args[0]) or ())
                if x is not None and dims is not None and all(d % nd >= 2 for d in dims):
                    if any(mm != 1 for _, mm in x):
                        unsupported(node, "reducing a flattened tensor")
                    segs[node] = x
                elif x is not None:
                    unsupported(node, f"{name} over the channel axis")
                else:
                    segs[node] = None
            elif name in ("flatten", "view", "reshape"):
                shp_in, shp_out = _shape(node.args[0]), _shape(node)
                if x is None:
                    segs[node] = None
                elif shp_in and shp_out and len(shp_out) == 2 and shp_out[0] == shp_in[0]:
                    segs[node] = _flatten(node, x, 1, unsupported)
                else:
                    unsupported(node, f"{name} to shape {shp_out}")
            elif name in ("size", "dim"):
                segs[node] = None
            else:
                if x is not None:
                    unsupported(node, f"unsupported method .{name}()")
                segs[node] = fresh(node, pinned=True)

    by_root: dict[int, list] = {}
    for sp, kind, fqn, m in members:
        by_root.setdefault(uf.find(sp), []).append((kind, fqn, m))
    groups = []
    for root, mem in by_root.items():
        if not uf.pinned[root] and any(k == "out" for k, _, _ in mem):
            groups.append(Group(root, uf.size[root], mem))
    return DepGraph(uf, groups, inputs, by_root)


def _flatten(node, x: Segs | None, start: int, unsupported) -> Segs | None:
    shp = _shape(node.args[0])
    if x is None or shp is None:
        return None
    if start != 1:
        unsupported(node, f"flatten from dim {start} (the batch axis must stay)")
    spatial = 1
    for d in shp[2:]:
        spatial *= d
    return [(sp, mm * spatial) for sp, mm in x]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
