"""`quantize_(model, config)`: one verb, a registry of handlers by config type, layer wrappers.

A quantized layer is a `QuantLayer`: it keeps the original Conv/Linear for its hyper-parameters
and bias, but its weight lives in real storage buffers (`w_codes`: int8 codes, packed sub-byte
codes, or fp16/bf16/fp8 values; `w_scale` per channel/group), so `torch.save(model.state_dict())`
shows the memory saving on disk. The forward pass uses the dequantized weight (cached) and,
optionally, an activation quantizer on the layer's input: fake quantization, i.e. the exact
values an integer kernel would see, computed in float on any CPU.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.conv import _ConvNd

import effai.numerics as nx
from effai.errors import InputError
from effai.numerics.cast import _from_rows, _to_rows
from effai.registry import Registry

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_HANDLERS: Registry[type, Callable] = Registry("quantization handler", argument="config")
_TORCH_FLOAT = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8_e4m3": torch.float8_e4m3fn,
                "fp8_e5m2": torch.float8_e5m2}


def register(config_type: type):
    """Decorator: register `fn(model, config, targets) -> model` as the handler for `config_type`.

    `targets` is the list of (fqn, module) the filter chose and the format can handle. A subclass
    of a registered config uses its base's handler; a type registered twice raises
    `effai.registry.DuplicateRegistration`.
    """
    return _HANDLERS.register(config_type)


def default_filter(module: nn.Module, fqn: str) -> bool:
    """Every module with its own weight tensor, except normalisation layers (folded or kept float)."""
    w = getattr(module, "weight", None)
    return isinstance(w, (torch.Tensor, nn.Parameter)) and not isinstance(module, (*_NORMS, QuantLayer))


def quantize_(model: nn.Module, config, filter_fn: Callable[[nn.Module, str], bool] | None = None) -> nn.Module:
    """Quantize `model` in place with the method `config` describes; returns the model.

    Layers the method cannot handle are named in a warning and left in float. Weights with
    NaN or Inf raise InputError naming the tensor; so does a model in which no layer can be
    quantized (TorchScript, no Linear/Conv, a filter that matched nothing): `NothingToQuantize`.

    >>> import torch, torch.nn as nn
    >>> from effai.quantize import quantize_, WeightOnlyConfig
    >>> m = quantize_(nn.Sequential(nn.Linear(8, 4)), WeightOnlyConfig(bits=4))
    >>> type(m[0]).__name__, m[0].fmt
    ('QuantLayer', 'int4')
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    handler = _HANDLERS.lookup(type(config))
    chosen = select(model, filter_fn or default_filter)
    check_finite(chosen)
    targets: list[tuple[str, nn.Module]] = []
    if _embeddings_only(config):  # the other layers are not its business: no warning for them
        targets = [(fqn, mod) for fqn, mod in chosen if isinstance(mod, nn.Embedding)]
        chosen = []
    for fqn, mod in chosen:
        if _is_hf_conv1d(mod):  # GPT-2's Conv1D is a Linear with its weight stored transposed
            mod = _conv1d_as_linear(mod)
            set_module(model, fqn, mod)
        if isinstance(mod, SUPPORTED):
            targets.append((fqn, mod))
        else:
            warnings.warn(f"quantize_: layer {fqn!r} ({type(mod).__name__}) is not supported by "
                          f"{type(config).__name__}; left in float", stacklevel=2)
    if not targets:
        raise NothingToQuantize(f"quantize_ with {type(config).__name__}: {_why_nothing(model, chosen, filter_fn)}")
    return handler(model, config, targets)


def _embeddings_only(config) -> bool:
    from effai.quantize.config import EmbeddingConfig

    return isinstance(config, EmbeddingConfig)


class NothingToQuantize(InputError):
    """quantize_ found no layer it can quantize: the model would come back unchanged, and a
    caller would report float numbers under a quantized format's name."""


def _why_nothing(model: nn.Module, chosen, filter_fn) -> str:
    """Why no layer was chosen: TorchScript, a filter that matched nothing, no supported layer."""
    if isinstance(model, torch.jit.ScriptModule):
        return (f"the model is TorchScript ({type(model).__name__}): its layers are compiled code, not "
                "Linear/Conv modules; quantize the eager nn.Module (the Python class with its state dict)")
    if chosen:
        kinds = sorted({type(m).__name__ for _, m in chosen})
        return (f"no supported layer among the {len(chosen)} chosen ({', '.join(kinds)}); "
                f"supported: {', '.join(c.__name__ for c in SUPPORTED)}")
    if filter_fn is not None:
        return "filter_fn matched no layer (check the layer names: model.named_modules())"
    if any(isinstance(m, QuantLayer) for m in model.modules()):
        return "every layer is quantized already"
    return f"the model has no layer with a weight to quantize (supported: {', '.join(c.__name__ for c in SUPPORTED)})"


def _is_hf_conv1d(mod: nn.Module) -> bool:
    return type(mod).__name__ == "Conv1D" and type(mod).__module__.startswith("transformers") and hasattr(mod, "nf")


def _conv1d_as_linear(mod: nn.Module) -> nn.Linear:
    """The nn.Linear computing what a Hugging Face Conv1D computes (x @ W + b, W of shape (in, out))."""
    w = mod.weight
    assert isinstance(w, torch.Tensor)
    bias = getattr(mod, "bias", None)
    lin = nn.Linear(w.shape[0], w.shape[1], bias=bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w.t())
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def select(model: nn.Module, filter_fn) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs `filter_fn` chooses, except those inside a QuantLayer.

    nn.MultiheadAttention's out_proj is chosen too: the attention reads its `.weight` and `.bias`
    instead of calling it, and a QuantLayer answers both with the weight it computes with."""
    return [(fqn, m) for fqn, m in model.named_modules()
            if fqn and not _inside_quant(model, fqn) and filter_fn(m, fqn)]


def _inside_quant(model, fqn: str) -> bool:
    parts = fqn.split(".")
    mod = model
    for p in parts[:-1]:
        mod = getattr(mod, p)
        if isinstance(mod, QuantLayer):
            return True
    return False


def check_finite(modules: list[tuple[str, nn.Module]]) -> None:
    for fqn, mod in modules:
        for pname, p in mod.named_parameters(recurse=False):
            if p.is_floating_point() and not torch.isfinite(p.detach()).all():
                bad = "NaN" if torch.isnan(p.detach()).any() else "Inf"
                raise InputError(f"weight tensor '{fqn}.{pname}' contains {bad}; fix or retrain the model before quantizing")


def set_module(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_name, _, child = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


# ------------------------------------------------------------------ activation quantizers
class ActQuant(nn.Module):
    """Rounds a layer's input: mode "static" (calibrated int8 scale/zero-point), "dynamic"
    (int8, range from each batch), a float format ("fp16", "bf16", "fp8_e4m3", ...; fp8 with a
    per-tensor dynamic scale), or "binary" (sign, straight-through)."""

    def __init__(self, mode: str, scale: float = 1.0, zero_point: int = 0):
        super().__init__()
        self.mode = mode
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("zero_point", torch.tensor(int(zero_point), dtype=torch.int32))

    def forward(self, x):
        m = self.mode
        if m == "static":
            return _fq_int8(x, self.scale, self.zero_point)
        if m == "dynamic":
            lo = torch.clamp(x.detach().min(), max=0)
            hi = torch.clamp(x.detach().max(), min=0)
            scale = torch.clamp((hi - lo) / 255, min=1e-12)
            zp = torch.clamp(torch.round(-128 - lo / scale), -128, 127)
            return _fq_int8(x, scale, zp)
        if m == "binary":
            return _BinarySTE.apply(x)
        if m in ("fp8_e4m3", "fp8_e5m2", "fp4_e2m1"):
            fmax = nx.get(m).max
            s = torch.clamp(x.detach().abs().max() / fmax, min=1e-12)
            return nx.cast(x / s, m, saturate=True) * s
        return nx.cast(x, m)

    def extra_repr(self):
        return f"mode={self.mode!r}" + (f", scale={float(self.scale):.4g}, zero_point={int(self.zero_point)}"
                                        if self.mode == "static" else "")


def _fq_int8(x, scale, zp):
    q = torch.clamp(torch.round(x / scale) + zp, -128, 127)
    y = (q - zp) * scale
    return x + (y - x).detach() if x.requires_grad else y


class _BinarySTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)  # hard-tanh STE (Courbariaux et al. 2016)


# ------------------------------------------------------------------ weight fake-quant (QAT, torch)
def fake_quant_weight(w: torch.Tensor, fmt: str, per_channel: bool = True, group_size: int | None = None):
    """Differentiable fake quantization of a weight (straight-through gradient)."""
    if group_size is not None:
        return nx.cast(w, fmt, granularity="group", group_size=group_size)
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    a = rows.detach().abs()
    if fmt == "ternary":
        delta = 0.7 * a.mean(1, keepdim=True)
        keep = (a > delta).to(w.dtype)
        alpha = (a * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp(min=1)
        q = torch.sign(rows.detach()) * keep * alpha
    elif fmt == "binary":
        alpha = a.mean(1, keepdim=True)
        q = torch.where(rows.detach() >= 0, 1.0, -1.0) * alpha
    else:
        qmax = nx.get(fmt).qmax
        assert qmax is not None  # an integer format (floats went through nx.cast above)
        scale = (a.amax(1, keepdim=True) / qmax).clamp(min=1e-12)
        q = torch.clamp(torch.round(rows.detach() / scale), -qmax, qmax) * scale
    return w + (q.reshape(w.shape) - w).detach()


# ------------------------------------------------------------------ the layer wrapper
class QuantLayer(nn.Module):
    """A Conv/Linear whose weight is stored quantized (or, in QAT, fake-quantized on the fly).

    `fmt` names the weight format; `act` (optional) rounds the input, `out_act` (optional) the
    output (static INT8 where the output feeds ops other than quantized layers: QLinearConv writes
    int8, so the simulation rounds there too). The float module is kept
    as `layer` without its weight (for stride, padding, groups and bias).
    """

    def __init__(self, layer: nn.Linear | _ConvNd | nn.Embedding, fmt: str, *, granularity: str = "channel", group_size: int | None = None,
                 symmetric: bool = True, scaled: bool = True, act: ActQuant | None = None, qat: bool = False,
                 store_bias_as: str | None = None, out_act: ActQuant | None = None):
        super().__init__()
        w = layer.weight.detach().float().clone()
        self.fmt = fmt
        self.granularity = granularity if group_size is None else "group"
        self.group_size = group_size
        self.symmetric = symmetric
        self.scaled = scaled
        self.qat = qat
        self.weight_shape = tuple(w.shape)
        self.act = act
        self.out_act = out_act  # rounds the output where an INT8 kernel would write it in int8
        if act is not None:  # see _keep_python_path
            self.register_forward_pre_hook(_keep_python_path)
        if qat:
            self.register_parameter("weight", nn.Parameter(w))
        bias = getattr(layer, "bias", None)  # nn.Embedding has none
        del layer._parameters["weight"]
        layer.weight = None  # type: ignore[assignment]  # the weight lives in w_codes from now on
        if bias is not None and store_bias_as in _TORCH_FLOAT:
            del layer._parameters["bias"]
            layer.register_buffer("bias", bias.detach().to(_TORCH_FLOAT[store_bias_as]))
        self.layer = layer
        self.register_buffer("_w", torch.empty(0), persistent=False)
        if not qat:
            self._store(w)

    # storage --------------------------------------------------------------
    def _store(self, w: torch.Tensor) -> None:
        f = nx.get(self.fmt)
        w_np = w.detach().cpu().numpy().astype(np.float32)
        for name in ("w_codes", "w_scale", "w_zero_point"):
            if name in self._buffers:
                del self._buffers[name]
        if f.kind == "float":
            scale = None
            if self.scaled and self.fmt in ("fp8_e4m3", "fp8_e5m2", "fp4_e2m1"):
                gran = "group" if self.group_size else "channel"
                rows, meta = _to_rows(w_np, gran, 0, self.group_size)
                amax = np.abs(rows).max(axis=1)
                scale = np.where(amax > 0, amax / f.max, 1.0).astype(np.float32)
                w_np = _from_rows(rows / scale[:, None], meta).astype(np.float32)
            if self.fmt in _TORCH_FLOAT:
                codes = torch.from_numpy(w_np).to(_TORCH_FLOAT[self.fmt])  # RNE, same as ml_dtypes
                if self.fmt.startswith("fp8"):
                    codes = torch.from_numpy(nx.cast(w_np, self.fmt, saturate=True)).to(_TORCH_FLOAT[self.fmt])
            else:  # fp4_e2m1: 4-bit patterns, two per byte
                import ml_dtypes

                pats = np.asarray(w_np, np.float32).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF
                signed = np.where(pats >= 8, pats.astype(np.int16) - 16, pats).astype(np.int8)
                codes = torch.frombuffer(bytearray(nx.pack(signed, 4)), dtype=torch.uint8)
            self.register_buffer("w_codes", codes)
            if scale is not None:
                self.register_buffer("w_scale", torch.from_numpy(scale))
        else:
            gran = "group" if self.group_size else self.granularity
            q = nx.quantize_tensor(w_np, self.fmt, granularity=gran, group_size=self.group_size,
                                   symmetric=self.symmetric)
            if f.bits == 8:
                codes = torch.from_numpy(q.codes.copy())
            else:
                codes = torch.frombuffer(bytearray(nx.pack(q.codes, self.fmt)), dtype=torch.uint8)
            self.register_buffer("w_codes", codes)
            self.register_buffer("w_scale", torch.from_numpy(q.scale.astype(np.float32)))
            if np.any(q.zero_point):
                self.register_buffer("w_zero_point", torch.from_numpy(q.zero_point.astype(np.int32)))
        self._w = self.dequantized_weight()

    def dequantized_weight(self) -> torch.Tensor:
        """The float weight the stored codes represent."""
        f = nx.get(self.fmt)
        n = math.prod(self.weight_shape)
        codes = self._buffers["w_codes"]
        assert codes is not None  # _store wrote it
        scale = self._buffers.get("w_scale")
        if f.kind == "float":
            if self.fmt in _TORCH_FLOAT:
                w = codes.float().numpy()
            else:
                import ml_dtypes

                c = nx.unpack(codes.numpy().tobytes(), 4, n).view(np.uint8) & 0xF
                w = c.view(ml_dtypes.float4_e2m1fn).astype(np.float32)
            w = w.reshape(self.weight_shape)
            if scale is not None:
                gran = "group" if self.group_size else "channel"
                rows, meta = _to_rows(w, gran, 0, self.group_size)
                w = _from_rows(rows * scale.numpy()[:, None], meta)
            return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        if f.bits == 8:
            c = codes.numpy()
        else:
            c = nx.unpack(codes.numpy().tobytes(), self.fmt, n).reshape(self.weight_shape)
        zp = self._buffers.get("w_zero_point")
        assert scale is not None  # integer formats always store their scales
        q = nx.QTensor(c.reshape(self.weight_shape), scale.numpy(),
                       zp.numpy() if zp is not None else np.zeros(scale.numel(), np.int32),
                       self.fmt, self.weight_shape, "group" if self.group_size else self.granularity, 0,
                       self.group_size)
        return torch.from_numpy(q.dequantize())

    def freeze(self) -> None:
        """QAT -> stored codes (drops the float master weight)."""
        if self.qat:
            w = self.weight.detach().clone()
            del self._parameters["weight"]
            self.qat = False
            self._store(w)

    # forward --------------------------------------------------------------
    def forward(self, x):
        if self.act is not None:
            x = self.act(x)
        if self.qat:
            w = fake_quant_weight(self.weight, self.fmt, self.granularity != "tensor", self.group_size)
        else:
            w = self._w
        if isinstance(self.layer, nn.Embedding):  # a lookup in the dequantized table (weight-only)
            e = self.layer
            return F.embedding(x, w, e.padding_idx, e.max_norm, e.norm_type, e.scale_grad_by_freq, e.sparse)
        bias = self.layer.bias
        linear = isinstance(self.layer, nn.Linear)
        if bias is not None and self._int32_bias and (not linear or x.dim() == 2):
            bias = self._kernel_bias(bias)  # a Conv or a Gemm: the INT8 kernel adds int32 bias codes
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        w = w.to(x.dtype)
        y = F.linear(x, w, bias) if linear else self.layer._conv_forward(x, w, bias)
        return y if self.out_act is None else self.out_act(y)

    @property
    def _int32_bias(self) -> bool:
        """Static INT8 input and integer weight codes: the deployed kernel (QLinearConv, QGemm)
        adds the bias as int32 codes at scale input x weight scale."""
        return (self.act is not None and self.act.mode == "static" and not self.qat and self.group_size is None
                and nx.get(self.fmt).kind != "float")

    def _kernel_bias(self, bias: torch.Tensor) -> torch.Tensor:
        assert self.act is not None and self._buffers["w_scale"] is not None  # _int32_bias() held
        codes, scale = int32_bias(bias.detach().double().numpy(), float(self.act.scale),  # type: ignore[arg-type]
                                  self._buffers["w_scale"].numpy())
        return torch.from_numpy(codes.astype(np.float32) * scale)

    def extra_repr(self):
        return f"fmt={self.fmt!r}, weight_shape={self.weight_shape}, qat={self.qat}"

    # What a parent module reads from the layer it owns (nn.MultiheadAttention's out_proj.weight,
    # nn.TransformerEncoderLayer's fast-path check of linear1.weight): the weight as it is
    # computed with, and the bias.
    @property
    def weight(self):
        if "weight" in self._parameters:  # QAT: the float master weight
            return self._parameters["weight"]
        if "_w" not in self._buffers:  # during __init__: no weight yet
            raise AttributeError("weight")
        return self._buffers["_w"]

    @property
    def bias(self):
        return getattr(self.layer, "bias", None)


def _keep_python_path(module, args):
    """A no-op pre-hook on every QuantLayer that rounds its input. nn.TransformerEncoderLayer's
    fused fast path reads `linear1.weight` etc. and never calls the layers, so the activation
    rounding would silently not happen; torch skips that path when a submodule has hooks."""
    return None


def int32_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bias as the int32 codes an INT8 kernel adds to its accumulator, and their scale
    (input scale x weight scale, per output channel), float32 as ONNX stores it.

    >>> codes, scale = int32_bias(np.array([0.5, -0.25]), 0.1, np.array([0.01, 0.02], np.float32))
    >>> codes.tolist(), scale.dtype.name
    ([500, -125], 'float32')
    """
    scale = (np.float64(input_scale) * np.asarray(weight_scale, np.float64)).astype(np.float32)
    scale = np.broadcast_to(scale.reshape(-1) if scale.size > 1 else scale.reshape(()), bias.shape)
    codes = np.clip(np.round(bias.astype(np.float64) / np.maximum(scale, 1e-30)), -(2**31), 2**31 - 1)
    return codes.astype(np.int32), np.ascontiguousarray(scale, np.float32)


def convert_(model: nn.Module) -> nn.Module:
    """Freeze every QAT layer into stored codes (after training).

    >>> import torch.nn as nn
    >>> from effai.quantize import QATConfig, quantize_
    >>> m = convert_(quantize_(nn.Sequential(nn.Linear(4, 2)), QATConfig(fmt="int8")))
    >>> m[0].qat, m[0].w_codes.dtype
    (False, torch.int8)
    """
    for mod in model.modules():
        if isinstance(mod, QuantLayer):
            mod.freeze()
    return model


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())`: the size the model takes on disk.

    >>> state_dict_bytes(nn.Linear(1000, 1000)) > 4_000_000
    True
    """
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def save(model: nn.Module, path) -> int:
    """Write the (quantized) state dict atomically; returns the file size in bytes."""
    from effai.fileio import write_atomic

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_atomic(path, buf.getvalue())
    return buf.tell()
