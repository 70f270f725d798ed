"""Channel dependency analysis on a torch.fx graph: which channels must be removed together.

`analyse` traces the model with shapes, then walks the graph once, node by node, keeping the
`Channels` of every tensor (see `effai.prune.channels` for spaces, segments and members):

- a module call goes to the handler registered for its type (`effai.prune.layers`): convs and
  linears make new spaces, norms and depthwise convs act channel by channel, activations and
  pooling pass channels through;
- a function or method call goes to a rule below, chosen by table: residual adds and gates
  (`x * gate`) join the spaces of their operands, `torch.cat` concatenates segment lists,
  flatten/view fold spatial positions into a multiplier, reductions over other axes keep them;
- the model's inputs and outputs are pinned (never pruned), so the output shape is kept.

What cannot be followed (an unknown layer or op that touches prunable channels, channels mixed
or reshaped) raises `InputError` naming the layer, never a silently wrong graph. Unknown ops on
channels that are pinned anyway are fine: nothing of them is ever sliced.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from effai.errors import InputError
from effai.prune.channels import PRODUCER, Analysis, Channels, LayerCall, Member, Spaces, refuse
from effai.prune.layers import find_handler

Env = dict[fx.Node, Channels | None]
Rule = Callable[[Analysis, fx.Node, Env], Channels | None]


@dataclass
class Group:
    """Channels that must be pruned together: one space after all unions."""

    root: int
    size: int
    members: list[Member] = field(default_factory=list)

    @property
    def name(self) -> str:
        outs = [m.fqn for m in self.members if m.role == PRODUCER]
        return outs[0] if outs else (self.members[0].fqn if self.members else f"space{self.root}")


@dataclass
class DepGraph:
    spaces: Spaces
    groups: list[Group]  # the prunable groups only
    consumers: dict[str, tuple[nn.Module, Channels]]  # fqn -> (module, its input channels)


# ------------------------------------------------------------------ tracing
class _Tracer(fx.Tracer):
    """Keeps layers with a handler whole (leaves) and names the layer a trace failure came from."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return find_handler(m) is not None or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None:  # the innermost layer
                self.failed = self.path_of_module(m)
            raise


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


# ------------------------------------------------------------------ the walk
def analyse(model: nn.Module, example: torch.Tensor) -> DepGraph:
    """Build the channel groups of `model` for an input like `example` (batch 1 is enough)."""
    gm = trace(model, example)
    modules = dict(gm.named_modules())
    a = Analysis()
    env: Env = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = a.fresh(_shape(node), pinned=True)
        elif node.op == "output":
            for arg in node.all_input_nodes:
                a.pin(env.get(arg))
        elif node.op == "call_module":
            env[node] = _call_module(a, node, env, modules[node.target])
        elif node.op == "call_function":
            env[node] = FUNCTIONS.get(node.target, _opaque)(a, node, env)
        elif node.op == "call_method":
            env[node] = METHODS.get(node.target, _opaque)(a, node, env)
        else:  # get_attr: a parameter or buffer, not a channel tensor
            env[node] = None
    return _prunable_groups(a)


def _call_module(a: Analysis, node: fx.Node, env: Env, module: nn.Module) -> Channels | None:
    first = node.args[0] if node.args else None
    call = LayerCall(str(node.target), module, _channels(env, first), _shape(first), _shape(node))
    handler = find_handler(module)
    if handler is None:
        return _opaque(a, node, env, f"unsupported layer type {type(module).__name__}")
    if handler.stateful and a.repeated(call):
        return a.outputs[call.fqn]
    out = handler.connect(a, call)
    a.outputs.setdefault(call.fqn, out)
    return out


def _prunable_groups(a: Analysis) -> DepGraph:
    """One group per unpinned space that some layer produces."""
    by_root: dict[int, list[Member]] = {}
    for space, member in a.members:
        by_root.setdefault(a.spaces.find(space), []).append(member)
    groups = [Group(root, a.spaces.size[root], members) for root, members in by_root.items()
              if not a.spaces.pinned[root] and any(m.role == PRODUCER for m in members)]
    return DepGraph(a.spaces, groups, a.consumers)


# ------------------------------------------------------------------ rules for functions and methods
def _same(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """Entry by entry (activations, dropout, clone): channels pass through."""
    return _channels(env, node.args[0])


def _spatial(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """Pooling, resizing, padding: the axes after the channels (axis 1) change."""
    return a.spatial(_channels(env, node.args[0]), _shape(node.args[0]), node.name)


def _elementwise(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """A binary op: operands with a real channel axis meet channel by channel (residual add, SE
    gate) and their spaces join; scalars and broadcast (N, 1, ...) operands constrain nothing."""
    out_shape = _shape(node)
    merged, foreign = None, False
    for arg in list(node.args) + list(node.kwargs.values()):
        x, shape = _channels(env, arg), _shape(arg)
        if isinstance(arg, fx.Node) and x is None and (shape is None or math.prod(shape) > 1):
            foreign = True  # a parameter or untracked tensor: its channels cannot shrink with ours
        if x is None or shape is None or out_shape is None or shape[x.dim] == 1:
            continue
        x = Channels(x.segments, x.dim + len(out_shape) - len(shape))  # the axis in the broadcast result
        merged = x if merged is None else a.join(merged, x, node.name)
    if foreign:
        a.pin(merged)
    if merged is None and out_shape is not None and len(out_shape) >= 2 and out_shape[1] > 1:
        return a.fresh(out_shape, pinned=True)
    return merged


def _flatten(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
    return a.flatten(_channels(env, node.args[0]), _shape(node.args[0]), start, end, node.name)


def _reshape(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """view / reshape: followed when it keeps the shape or flattens all but the batch axis."""
    x, shape_in, shape_out = _channels(env, node.args[0]), _shape(node.args[0]), _shape(node)
    if x is None or shape_in is None or shape_in == shape_out:
        return x
    if shape_out is not None and len(shape_out) == 2 and shape_out[0] == shape_in[0]:
        return a.flatten(x, shape_in, 1, -1, node.name)
    return _opaque(a, node, env, f"{node.target} to shape {shape_out}")


def _cat(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """Concatenation along the channel axis lists the parts' segments one after another."""
    parts = [_channels(env, p) for p in node.args[0]]  # type: ignore[union-attr]  # cat's first argument is a list
    out_shape = _shape(node)
    dim = _arg(node, 1, "dim", 0) % len(out_shape) if out_shape else -1
    known = [p for p in parts if p is not None and p.dim == dim and p.plain]
    if len(known) == len(parts):
        return Channels(tuple(s for p in known for s in p.segments), dim)
    for p in parts:  # along another axis, or with parts we cannot follow: keep them as they are
        a.pin(p)
    return a.fresh(out_shape, pinned=True)


def _reduce(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """mean / sum / amax over axes other than the channels' keep them (global average pooling)."""
    x, shape = _channels(env, node.args[0]), _shape(node.args[0])
    if x is None or shape is None:
        return x
    dims = _arg(node, 1, "dim", None)
    dims = [d % len(shape) for d in ((dims,) if isinstance(dims, int) else dims or range(len(shape)))]
    if x.dim in dims:
        return _opaque(a, node, env, f"{node.target} over the channel axis")
    if _arg(node, 2, "keepdim", False):
        return x
    return Channels(x.segments, x.dim - sum(d < x.dim for d in dims))


def _no_tensor(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    """x.size(), x.dim(), x.shape: numbers, not channels."""
    return None


def _indexing(a: Analysis, node: fx.Node, env: Env) -> Channels | None:
    if node.target is getattr and node.args[1] in ("shape", "dtype", "device", "ndim"):
        return None
    return _opaque(a, node, env, "indexing a channel tensor")


def _opaque(a: Analysis, node: fx.Node, env: Env, what: str | None = None) -> Channels | None:
    """An op the analysis does not know: fine on pinned channels (its output is pinned too),
    refused when prunable channels flow into it."""
    known = [x for x in (_channels(env, arg) for arg in node.all_input_nodes) if x is not None]
    if any(not a.all_pinned(x) for x in known):
        name = getattr(node.target, "__name__", node.target)
        refuse(str(node.target) if node.op == "call_module" else node.name,
               what or f"unsupported {'method .' if node.op == 'call_method' else 'function '}{name}")
    return a.fresh(_shape(node), pinned=True)


_SAME_FUNCS = (torch.relu, torch.sigmoid, torch.tanh, F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu, F.gelu,
               F.dropout, F.leaky_relu, F.hardtanh, torch.clone)
_SPATIAL_FUNCS = (F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
                  F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate, F.pad)
_ELEMENTWISE_FUNCS = (operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
                      torch.add, torch.sub, torch.mul, torch.div)
FUNCTIONS: dict[object, Rule] = {
    **dict.fromkeys(_SAME_FUNCS, _same), **dict.fromkeys(_SPATIAL_FUNCS, _spatial),
    **dict.fromkeys(_ELEMENTWISE_FUNCS, _elementwise), torch.flatten: _flatten, torch.cat: _cat,
    torch.mean: _reduce, torch.sum: _reduce, torch.amax: _reduce, operator.getitem: _indexing, getattr: _indexing,
}
METHODS: dict[object, Rule] = {
    **dict.fromkeys(("relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "clamp", "clamp_"), _same),
    **dict.fromkeys(("add", "add_", "mul", "mul_", "sub", "div"), _elementwise),
    **dict.fromkeys(("mean", "sum", "amax"), _reduce), **dict.fromkeys(("view", "reshape"), _reshape),
    "flatten": _flatten, "size": _no_tensor, "dim": _no_tensor,
}


# ------------------------------------------------------------------ node helpers
def _channels(env: Env, arg) -> Channels | None:
    return env.get(arg) if isinstance(arg, fx.Node) else None


def _shape(node) -> tuple | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _arg(node: fx.Node, position: int, name: str, default):
    return node.args[position] if len(node.args) > position else node.kwargs.get(name, default)
