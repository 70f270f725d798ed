"""Dispatch-level counting: every aten op the model runs, attributed to the module that ran it.

One eager forward pass runs under a `TorchDispatchMode`. Each aten op is

- costed: multiply-accumulates (MACs) for conv/linear/matmul/attention, taken from
  `torch.utils.flop_counter.flop_registry` (its FLOPs are 2 x MACs) plus the ops it misses
  (CPU flash attention, mv, dot, ...); elementwise FLOPs for pointwise ops, reductions,
  pooling and normalisation (`ELEMENTWISE_COST`); zero for views, copies and factories;
  anything else is *uncounted* and named with its layer, never silently zero;
- attributed to the innermost module on a stack kept by forward pre/post hooks: a leaf
  module gets one row; an op run directly in a container's `forward` (a functional call,
  `x + identity`, `q @ k.T`) gets its own row `path/op`;
- recorded for liveness: the storages it reads and writes (keyed by a storage weak
  reference, so views and in-place ops share their base's storage) for `memory.peak_from_events`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

aten = torch.ops.aten


def _shape(x):
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


# ------------------------------------------------------------------ MAC ops
def _mac_from_registry(packet):
    fn = flop_registry[packet]

    def macs(args, kwargs, out):
        return int(fn(*args, **kwargs, out_val=out)) // 2

    return macs


def _sdpa_cpu(args, kwargs, out):
    q, k, v = args[:3]
    return sdpa_flop_count(q.shape, k.shape, v.shape) // 2


def _mv(args, kwargs, out):
    m = args[-2]  # (n, k) @ (k,)
    return m.shape[0] * m.shape[1]


def _dot(args, kwargs, out):
    return args[0].numel()


def _addbmm(args, kwargs, out):
    b1, b2 = args[1], args[2]
    return b1.shape[0] * b1.shape[1] * b1.shape[2] * b2.shape[2]


def _attention_shapes(q, k) -> tuple[int, int, int, int]:
    """(query tokens, key tokens, batch, query length x key length) of (B, L, E) or (L, E) inputs."""
    batch = math.prod(q.shape[:-2]) if q.dim() > 2 else 1
    return math.prod(q.shape[:-1]), math.prod(k.shape[:-1]), batch, q.shape[-2] * k.shape[-2]


def _native_mha(args, kwargs, out):
    """nn.MultiheadAttention's fused path: Q/K/V and output projections plus QK^T and AV."""
    e = int(args[3])
    tq, tk, batch, scores = _attention_shapes(args[0], args[1])
    return (2 * tq + 2 * tk) * e * e + 2 * batch * scores * e


def _encoder_layer(args, kwargs, out):
    """nn.TransformerEncoderLayer's fused path: self-attention plus the two FFN matmuls."""
    src, e, ffn = args[0], int(args[1]), args[14]  # ffn_weight_1: (dim_feedforward, d)
    t, _, batch, scores = _attention_shapes(src, src)
    return 4 * t * e * e + 2 * batch * scores * e + 2 * t * ffn.shape[0] * ffn.shape[1]


MAC_OPS: dict = {}
for _packet in flop_registry:
    if getattr(_packet, "_qualified_op_name", str(_packet)).endswith("_backward"):
        continue
    MAC_OPS[_packet] = _mac_from_registry(_packet)
for _name, _fn in {
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu,
    "_scaled_dot_product_fused_attention_overrideable": _sdpa_cpu,
    "mv": _mv,
    "addmv": _mv,
    "dot": _dot,
    "vdot": _dot,
    "addbmm": _addbmm,
    "_native_multi_head_attention": _native_mha,
    "_transformer_encoder_layer_fwd": _encoder_layer,
}.items():
    if hasattr(aten, _name):
        MAC_OPS[getattr(aten, _name)] = _fn

# Ops whose bias / beta term adds one FLOP per output element on top of the MACs.
_BIAS_OUT = {"addmm", "baddbmm", "addmv", "addbmm"}


def _mac_extra_elementwise(name: str, args, out) -> int:
    if name in _BIAS_OUT:
        return _numel(out)
    if name in ("convolution", "_convolution", "convolution_overrideable", "cudnn_convolution"):
        return _numel(out) if len(args) > 2 and isinstance(args[2], torch.Tensor) else 0
    if name in ("_native_multi_head_attention", "_transformer_encoder_layer_fwd"):  # softmax over scores
        fused_mha = name == "_native_multi_head_attention"
        _, _, batch, scores = _attention_shapes(args[0], args[1] if fused_mha else args[0])
        return 5 * batch * scores * int(args[4] if fused_mha else args[2])
    if name.startswith("_scaled_dot_product") and not name.endswith("backward"):
        q, k = args[0], args[1]  # softmax over L x S scores, 5 FLOPs an element, plus the scale
        return (5 * math.prod(q.shape[:-1]) * k.shape[-2]) + q.numel()
    return 0


# ------------------------------------------------------------------ elementwise costs
# FLOPs per element (of the output unless noted). Pointwise ops not listed cost 1.
ELEMENTWISE_COST = {
    "sigmoid": 3,  # neg-exp, add, reciprocal
    "silu": 4,  # sigmoid + mul
    "gelu": 5,  # div, erf, add, mul, mul
    "hardswish": 4,
    "hardsigmoid": 3,
    "mish": 6,
    "softplus": 3,
    "elu": 3,
    "tanh": 1,
    "_softmax": 5,  # max, sub, exp, sum, div
    "_log_softmax": 5,
    "_safe_softmax": 5,
    "softmax": 5,
    "log_softmax": 5,
    "native_batch_norm": 2,  # folded scale and shift (inference)
    "_native_batch_norm_legit_no_training": 2,
    "_native_batch_norm_legit": 2,
    "native_layer_norm": 7,  # mean, sub, square, sum, rsqrt-mul, scale, shift
    "native_group_norm": 7,
    "_fused_rms_norm": 5,
}
# Reductions cost one FLOP per *input* element.
_INPUT_COST = {"mean", "sum", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d",
               "amax", "amin", "max", "min", "var", "std", "norm", "linalg_vector_norm", "logsumexp",
               "prod", "argmax", "argmin", "var_mean", "std_mean", "cumsum", "all", "any"}
_POOL = {"max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool2d", "avg_pool3d",
         "max_pool1d", "avg_pool1d", "max_pool2d", "_max_pool2d", "mkldnn_max_pool2d"}
# Data movement, views, factories, RNG: zero FLOPs by definition (not "uncounted").
ZERO_COST = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand",
    "squeeze", "unsqueeze", "flatten", "clone", "contiguous", "copy_", "_to_copy", "to", "cat",
    "stack", "split", "split_with_sizes", "chunk", "unbind", "slice", "select", "narrow", "detach",
    "alias", "lift_fresh", "lift_fresh_copy", "empty", "empty_like", "empty_strided", "zeros",
    "zeros_like", "ones", "ones_like", "full", "full_like", "new_empty", "new_empty_strided",
    "new_zeros", "new_ones", "new_full", "fill_", "zero_", "arange", "randn", "rand", "randint",
    "randn_like", "rand_like", "normal_", "uniform_", "bernoulli_", "embedding", "index_select",
    "gather", "index", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "upsample_nearest2d",
    "upsample_nearest1d", "upsample_nearest3d", "_upsample_nearest_exact2d", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "repeat", "roll", "flip", "as_strided",
    "unfold", "im2col", "col2im", "scatter", "scatter_", "index_put", "index_put_", "masked_fill",
    "masked_fill_", "tril", "triu", "_unsafe_index", "unsafe_split", "set_", "resize_", "view_as_real",
    "view_as_complex", "diagonal", "movedim", "sort", "topk", "nonzero", "item", "_local_scalar_dense",
    "sym_size", "sym_stride", "sym_numel", "dim", "is_same_size", "native_dropout", "dropout",
    "clamp_min_", "select_scatter", "slice_scatter", "scalar_tensor", "tensor", "copy",
    "_has_compatible_shallow_copy_type", "quantize_per_tensor", "dequantize", "quantize_per_channel",
}


def op_name(func) -> str:
    """The aten op's packet name: `aten.convolution.default` -> `convolution`."""
    return func._overloadpacket.__name__


def op_cost(func, args, kwargs, out) -> tuple[int, int, bool]:
    """(MACs, elementwise FLOPs, counted) for one aten call."""
    name = op_name(func)
    fn = MAC_OPS.get(func._overloadpacket)
    if fn is not None:
        return fn(args, kwargs, out), _mac_extra_elementwise(name, args, out), True
    first_out = out[0] if isinstance(out, (tuple, list)) and out else out
    if name in ZERO_COST or getattr(func, "is_view", False):
        return 0, 0, True
    if name in _POOL:
        k = args[1] if len(args) > 1 else kwargs.get("kernel_size")
        k = [k] if isinstance(k, int) else list(k)
        return 0, _numel(first_out) * math.prod(k), True
    if name in _INPUT_COST:
        return 0, _numel(args[0]), True
    if name in ELEMENTWISE_COST:
        return 0, _numel(first_out) * ELEMENTWISE_COST[name], True
    if torch.Tag.pointwise in func.tags:
        return 0, _numel(first_out) * ELEMENTWISE_COST.get(name.rstrip("_"), 1), True
    return 0, 0, False


# ------------------------------------------------------------------ the recording pass
@dataclass
class Row:
    """One row of the per-layer table while it is being filled."""

    name: str
    type: str
    module: torch.nn.Module | None = None
    output_shape: tuple | None = None
    macs: int = 0
    elementwise_flops: int = 0
    activation_bytes: int = 0
    seconds: float = 0.0
    calls: int = 0
    functional: bool = False  # an op run directly in a container's forward
    ops: dict = field(default_factory=dict)


class CountingMode(TorchDispatchMode):
    """Counts, attributes and records every aten op run while active."""

    def __init__(self, tracker: ModuleStack, exclude_storages: set[int], time_ops: bool = False,
                 exact: bool = True):
        super().__init__()
        self.exact = exact
        self.tracker = tracker
        self.exclude = exclude_storages
        self.time_ops = time_ops
        self.events: list[tuple[list[int], list[int], str]] = []  # (read ids, written ids, row)
        self.sizes: dict[int, int] = {}
        self._refs: dict[int, tuple[StorageWeakRef, int]] = {}
        self._next_id = 0
        self.uncounted: dict[tuple[str, str], int] = {}

    def storage_id(self, t: torch.Tensor) -> int | None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):
            return None
        ref = StorageWeakRef(st)
        if ref.cdata in self.exclude:
            return None
        known = self._refs.get(ref.cdata)
        if known is not None and not known[0].expired():
            return known[1]
        sid = self._next_id
        self._next_id += 1
        self._refs[ref.cdata] = (ref, sid)
        self.sizes[sid] = st.nbytes()
        return sid

    def _ids(self, tree) -> list[int]:
        ids = []
        for x in tree_flatten(tree)[0]:
            if isinstance(x, torch.Tensor):
                sid = self.storage_id(x)
                if sid is not None:
                    ids.append(sid)
        return ids

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter() if self.time_ops else 0.0
        if not self.exact:
            out = _shape_only(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        dt = time.perf_counter() - t0 if self.time_ops else 0.0
        name = op_name(func)
        row = self.tracker.row_for(name, out)
        macs, elem, counted = op_cost(func, args, kwargs, out)
        row.macs += macs
        row.elementwise_flops += elem
        row.seconds += dt
        row.ops[name] = row.ops.get(name, 0) + 1
        if not counted:
            key = (row.name, name)
            self.uncounted[key] = self.uncounted.get(key, 0) + 1
        reads = self._ids((args, kwargs))
        writes = self._ids(out)
        self.events.append((reads, writes, row.name))
        return out


_REAL = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_consecutive",
         "item", "equal", "is_nonzero", "allclose"}


def _shape_only(func, args, kwargs):
    """Run an op for its shapes only: on the meta device, returning uninitialised real outputs.

    Views run for real (they cost nothing and must alias); in-place and `out=` ops return the
    tensors they would write; ops whose result is a value (item, nonzero) run for real.
    """
    if func.is_view or op_name(func) in _REAL:
        return func(*args, **kwargs)
    flat = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
    if not flat:
        return func(*args, **kwargs)
    device = flat[0].device
    to_meta = lambda x: x.to("meta") if isinstance(x, torch.Tensor) else x  # noqa: E731
    try:
        out = func(*tree_map(to_meta, args), **tree_map(to_meta, kwargs))
    except Exception:  # noqa: BLE001 - no meta kernel: run it for real
        return func(*args, **kwargs)
    if op_name(func) == "native_batch_norm" and len(args) > 5 and not args[5]:
        out = (out[0], out[1].new_empty(0), out[2].new_empty(0))  # as the CPU kernel returns in eval
    schema = func._schema
    if any(r.alias_info is not None for r in schema.returns):  # in-place or out=: return what it writes
        vals = list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args):]]
        written = [v for a, v in zip(schema.arguments, vals, strict=True)
                   if a.alias_info is not None and a.alias_info.is_write]
        if len(schema.returns) == 1 and written:
            return written[0]
        if len(written) == len(schema.returns):
            return tuple(written)
        return func(*args, **kwargs)
    return tree_map(lambda m: torch.empty_strided(m.shape, m.stride(), dtype=m.dtype, device=device)
                    if isinstance(m, torch.Tensor) else m, out)


class ModuleStack:
    """Forward hooks that keep the stack of modules currently running and their rows."""

    def __init__(self, model: torch.nn.Module):
        self.stack: list[tuple[str, torch.nn.Module]] = [("", model)]
        self.rows: dict[str, Row] = {}
        self.handles = []
        self.leaf: dict = {}
        for name, mod in model.named_modules(remove_duplicate=False):
            if id(mod) in self.leaf:
                continue  # a module registered twice runs under its first name
            self.leaf[id(mod)] = next(mod.children(), None) is None
            if isinstance(mod, torch.jit.ScriptModule):  # no hooks: ops go to the nearest eager parent
                self.leaf[id(mod)] = False
                continue
            self.handles.append(mod.register_forward_pre_hook(self._pre(name, mod)))
            self.handles.append(mod.register_forward_hook(self._post(name, mod), always_call=True))

    def _pre(self, name, mod):
        def hook(module, args):
            self.stack.append((name, mod))
            if self.leaf[id(mod)]:
                row = self._row(name or type(mod).__name__, type(mod).__name__, mod)
                row.calls += 1

        return hook

    def _post(self, name, mod):
        def hook(module, args, output):
            if self.stack and self.stack[-1][1] is mod:
                self.stack.pop()
            if self.leaf[id(mod)]:
                row = self.rows[name or type(mod).__name__]
                first = tree_flatten(output)[0]
                t = next((x for x in first if isinstance(x, torch.Tensor)), None)
                if t is not None:
                    row.output_shape = tuple(t.shape)
                    row.activation_bytes = sum(x.numel() * x.element_size() for x in first
                                               if isinstance(x, torch.Tensor))

        return hook

    def _row(self, key, typ, mod=None) -> Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(name=key, type=typ, module=mod)
        return row

    def row_for(self, op: str, out) -> Row:
        path, mod = self.stack[-1]
        if self.leaf[id(mod)]:
            return self.rows[path or type(mod).__name__]
        key = f"{path}/{op}" if path else op
        new = key not in self.rows
        row = self._row(key, op, mod if new and not any(r.module is mod for r in self.rows.values()) else None)
        row.calls += 1
        row.functional = True
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor):
            row.output_shape = tuple(first.shape)
            row.activation_bytes = first.numel() * first.element_size()
        return row

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []
