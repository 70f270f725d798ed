"""Rounding values into a format, and measuring what the rounding cost.

Float formats (fp16, bf16, fp8_e4m3, fp8_e5m2, fp4_e2m1) round with ml_dtypes, so the result
is bit-for-bit what `np.asarray(x).astype(ml_dtypes.<dtype>)` gives: round to nearest even,
subnormals kept, NaN and Inf kept, overflow as ml_dtypes defines it (Inf where the format
has one; NaN for fp8_e4m3fn; the largest value for fp4_e2m1fn, which has neither).
`saturate=True` clamps finite overflow (and, for formats without Inf, Inf) to ±max instead.
`rounding="stochastic"` rounds up with probability equal to the distance from the lower
neighbour, so the rounding is unbiased in expectation.

Integer formats (int8, int4, int2, ternary, binary) need a scale: `quantize_tensor` picks one
per tensor, per channel (axis 0) or per group of `group_size` consecutive values in a channel,
symmetric (zero point 0) or asymmetric, and returns the integer codes; `cast` returns the
dequantized (fake-quantized) values in the input's float dtype. Ternary follows TWN (Li & Liu
2016: threshold 0.7·mean|w|, scale = mean of the |w| above it); binary follows XNOR-Net
(sign(w), scale = mean|w|).

`cast` on a torch tensor that requires grad passes the gradient straight through (STE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from effai.errors import InputError
from effai.numerics.formats import Format, get

GRANULARITIES = ("tensor", "channel", "group")
ROUNDINGS = ("nearest", "stochastic")


# ------------------------------------------------------------------ helpers for tensor/array I/O
def _ml_floats():
    import ml_dtypes

    return {np.dtype(getattr(ml_dtypes, n)) for n in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn")}


_ML_FLOATS = _ml_floats()


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x):
    """(float numpy array, restore function) for a torch tensor, numpy array or list."""
    if _is_torch(x):
        import torch

        t = x.detach().cpu()
        if not t.is_floating_point():
            raise InputError(f"x must be a floating-point tensor, got dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            import ml_dtypes

            arr = t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        elif t.dtype in (torch.float16, torch.float32, torch.float64):
            arr = t.numpy()
        else:
            arr = t.to(torch.float32).numpy()

        def restore(a, _x=x):
            # convert in numpy (same NaN payloads as ml_dtypes), then hand the bits to torch
            a = np.asarray(a)
            if _x.dtype == torch.bfloat16:
                import ml_dtypes

                bits = np.ascontiguousarray(a.astype(ml_dtypes.bfloat16)).view(np.int16)
                return torch.from_numpy(bits).view(torch.bfloat16).to(_x.device)
            npd = {torch.float16: np.float16, torch.float64: np.float64}.get(_x.dtype, np.float32)
            out = torch.from_numpy(np.ascontiguousarray(a.astype(npd)))
            return out.to(dtype=_x.dtype, device=_x.device)

        return arr, restore
    arr = np.asarray(x)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f" and arr.dtype not in _ML_FLOATS:
        raise InputError(f"x must be a floating-point array, got dtype {arr.dtype}")
    dtype = arr.dtype
    return arr, (lambda a, _d=dtype: np.asarray(a).astype(_d))


def _ste(x, q):
    """q with the gradient of x passed straight through (values exactly q)."""
    import torch

    class _STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return b.clone()

        @staticmethod
        def backward(ctx, g):
            return g, None

    return _STE.apply(x, q.detach())


# ------------------------------------------------------------------ float formats
def _round_float(arr: np.ndarray, f: Format, rounding: str, saturate: bool, rng) -> np.ndarray:
    dt = f.np_dtype
    if f.name == "fp32" and arr.dtype == np.float32 and rounding == "nearest":
        return arr.copy()
    a = arr
    if rounding == "stochastic":
        a = _stochastic_grid(np.asarray(arr, dtype=np.float64), f, rng)
    if saturate:
        a = np.asarray(a, dtype=np.float64) if a.dtype != np.float64 else a.copy()
        has_inf = f.name not in ("fp8_e4m3", "fp4_e2m1")
        finite = np.isfinite(a)
        lim = np.clip(a, -f.max, f.max)
        a = np.where(finite | (~has_inf & ~np.isnan(a)), lim, a)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dt)


def _stochastic_grid(x: np.ndarray, f: Format, rng) -> np.ndarray:
    """Round each finite x to one of its two neighbours on f's grid (ignoring overflow)."""
    mant = int(round(-math.log2(f.eps)))
    emin = int(round(math.log2(f.smallest_normal)))
    finite = np.isfinite(x) & (x != 0)
    ax = np.where(finite, np.abs(x), 1.0)
    e = np.maximum(np.floor(np.log2(ax)), emin)
    ulp = np.exp2(e - mant)
    lo = np.floor(ax / ulp) * ulp
    p = (ax - lo) / ulp
    u = rng.random(x.shape)
    mag = np.where(u < p, lo + ulp, lo)
    return np.where(finite, np.copysign(mag, x), x)


# ------------------------------------------------------------------ integer formats
@dataclass
class QTensor:
    """Integer codes plus what it takes to get floats back: `codes * scale - zp*scale`.

    `scale` and `zero_point` have one entry per row of the (rows, cols) view the granularity
    defines; `shape` is the original shape.
    """

    codes: np.ndarray  # int8, original shape
    scale: np.ndarray  # float32, one per row
    zero_point: np.ndarray  # int32, one per row
    fmt: str
    shape: tuple
    granularity: str
    axis: int = 0
    group_size: int | None = None

    def dequantize(self) -> np.ndarray:
        rows = _to_rows(self.codes.astype(np.float32), self.granularity, self.axis, self.group_size)
        x2, meta = rows
        deq = (x2 - self.zero_point[:, None]) * self.scale[:, None]
        return _from_rows(deq, meta).astype(np.float32)

    @property
    def nbytes_scales(self) -> int:
        return int(self.scale.nbytes + (0 if not np.any(self.zero_point) else self.zero_point.nbytes))


def _to_rows(x: np.ndarray, granularity: str, axis: int, group_size: int | None):
    """A (rows, cols) view for the granularity, zero-padded; plus what `_from_rows` needs."""
    shape = x.shape
    if granularity == "tensor" or x.ndim == 0:
        x2 = x.reshape(1, -1)
        meta = ("tensor", shape, axis, None, x2.shape[1])
        return x2, meta
    xm = np.moveaxis(x, axis, 0)
    x2 = xm.reshape(xm.shape[0], -1)
    if granularity == "channel":
        return x2, ("channel", shape, axis, xm.shape, x2.shape[1])
    k = x2.shape[1]
    assert group_size is not None  # checked by _check_int_args: group granularity needs a size
    g = min(group_size, k)
    pad = (-k) % g
    if pad:
        x2 = np.concatenate([x2, np.zeros((x2.shape[0], pad), x2.dtype)], axis=1)
    x2 = x2.reshape(-1, g)
    return x2, ("group", shape, axis, xm.shape, k)


def _from_rows(x2: np.ndarray, meta) -> np.ndarray:
    kind, shape, axis, mshape, k = meta
    if kind == "tensor":
        return x2.reshape(-1)[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
    if kind == "channel":
        return np.moveaxis(x2.reshape(mshape), 0, axis)
    c = mshape[0]
    x2 = x2.reshape(c, -1)[:, :k]
    return np.moveaxis(x2.reshape(mshape), 0, axis)


def _row_valid(meta, x2) -> np.ndarray:
    kind, shape, axis, mshape, k = meta
    if kind != "group":
        return np.ones_like(x2, dtype=bool)
    c = mshape[0]
    g = x2.shape[1]
    cols = np.arange(x2.reshape(c, -1).shape[1]) < k
    return np.broadcast_to(cols, (c, cols.size)).reshape(-1, g)


def quantize_tensor(
    x,
    fmt: str = "int8",
    granularity: str = "tensor",
    group_size: int | None = None,
    symmetric: bool = True,
    rounding: str = "nearest",
    axis: int = 0,
    seed: int | None = None,
) -> QTensor:
    """Integer codes and scales for `x` in an integer format.

    >>> q = quantize_tensor(np.array([-1.0, 0.0, 0.5, 1.0]), "int8")
    >>> q.codes.tolist(), bool(q.scale[0] == np.float32(1 / 127))
    ([-127, 0, 64, 127], True)
    >>> quantize_tensor(np.array([0.9, -0.05, -1.1, 0.2]), "ternary").codes.tolist()
    [1, 0, -1, 0]
    """
    f = get(fmt)
    if f.kind != "int":
        raise InputError(f"quantize_tensor needs an integer format (int8, int4, int2, ternary, binary), got {f.name!r}")
    _check_int_args(granularity, group_size, rounding)
    arr, _ = _to_numpy(x)
    arr = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"x contains NaN or Inf; {f.name} needs finite values")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if granularity != "tensor" and not (-arr.ndim <= axis < arr.ndim):
        raise InputError(f"axis={axis} is out of range for a {arr.ndim}-d input")
    x2, meta = _to_rows(arr, granularity, axis, group_size)
    valid = _row_valid(meta, x2)
    n = np.maximum(valid.sum(axis=1), 1)
    ax = np.abs(x2) * valid
    zp = np.zeros(x2.shape[0], np.int32)
    if f.name == "ternary":
        delta = 0.7 * ax.sum(axis=1) / n
        keep = (ax > delta[:, None]) & valid
        cnt = keep.sum(axis=1)
        scale = np.where(cnt > 0, (ax * keep).sum(axis=1) / np.maximum(cnt, 1), 1.0)
        codes = (np.sign(x2) * keep).astype(np.int8)
    elif f.name == "binary":
        scale = ax.sum(axis=1) / n
        codes = np.where(x2 >= 0, 1, -1).astype(np.int8)
    else:
        qmin, qmax = f.qmin, f.qmax
        assert qmin is not None and qmax is not None  # every integer format has its code range
        if symmetric:
            amax = ax.max(axis=1)
            scale = amax / qmax
            zp = np.zeros(x2.shape[0], np.int32)
        else:
            big = np.float32(np.finfo(np.float32).max)
            lo = np.minimum(np.where(valid, x2, big).min(axis=1), 0)
            hi = np.maximum(np.where(valid, x2, -big).max(axis=1), 0)
            scale = (hi - lo) / (qmax - qmin)
            safe = np.where(scale > 0, scale, 1.0)
            zp = np.clip(np.round(qmin - lo / safe), qmin, qmax).astype(np.int32)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        v = x2 / scale[:, None]
        if rounding == "stochastic":
            v = np.floor(v + np.random.default_rng(seed).random(v.shape))
        else:
            v = np.round(v)  # half to even
        lo_c = -qmax if symmetric else qmin
        codes = np.clip(v + zp[:, None], lo_c, qmax).astype(np.int8)
    scale = np.asarray(scale, dtype=np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    codes_full = _from_rows(codes, meta).astype(np.int8)
    return QTensor(codes_full, scale, zp, f.name, tuple(arr.shape), granularity, axis, group_size)


def _check_int_args(granularity, group_size, rounding):
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if granularity == "group" and (not isinstance(group_size, int) or group_size < 1):
        raise InputError(f"granularity='group' needs group_size >= 1, got {group_size!r}")
    if rounding not in ROUNDINGS:
        raise InputError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")


# ------------------------------------------------------------------ the public verb
def cast(
    x,
    fmt: str,
    granularity: str = "tensor",
    group_size: int | None = None,
    symmetric: bool = True,
    rounding: str = "nearest",
    saturate: bool = False,
    axis: int = 0,
    seed: int | None = None,
):
    """Round `x` into `fmt` and return the rounded values with x's type and dtype.

    Float formats are bit-exact with ml_dtypes (round to nearest even):

    >>> import numpy as np
    >>> cast(np.array([1.0, 1.00390625, 3.14159], np.float32), "bf16").tolist()
    [1.0, 1.0, 3.140625]
    >>> cast(np.array([500.0, np.inf]), "fp8_e4m3").tolist()  # e4m3fn has no Inf: overflow is NaN
    [nan, nan]
    >>> cast(np.array([500.0, np.inf]), "fp8_e4m3", saturate=True).tolist()
    [448.0, 448.0]

    Integer formats return dequantized values (per tensor, channel or group):

    >>> [round(v, 4) for v in cast(np.array([0.1, -0.5, 1.0], np.float32), "int4").tolist()]
    [0.1429, -0.4286, 1.0]
    """
    f = get(fmt)
    if rounding not in ROUNDINGS:
        raise InputError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    arr, restore = _to_numpy(x)
    if f.kind == "float":
        rng = np.random.default_rng(seed)
        out = restore(_round_float(arr, f, rounding, bool(saturate), rng))
    else:
        _check_int_args(granularity, group_size, rounding)
        q = quantize_tensor(arr, f.name, granularity, group_size, symmetric, rounding, axis, seed)
        out = restore(q.dequantize().reshape(np.shape(arr)))
    if _is_torch(x) and x.requires_grad:
        out = _ste(x, out)
    return out


# ------------------------------------------------------------------ error metrics
def _pair(ref, approx):
    a = np.asarray(_to_numpy(ref)[0], dtype=np.float64)
    b = np.asarray(_to_numpy(approx)[0], dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"ref and approx must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def mse(ref, approx) -> float:
    """Mean squared error.

    >>> mse([1.0, 2.0], [1.0, 2.5])
    0.125
    """
    a, b = _pair(ref, approx)
    return float(np.mean((a - b) ** 2)) if a.size else 0.0


def max_abs_error(ref, approx) -> float:
    """Largest absolute difference.

    >>> max_abs_error([1.0, 2.0], [1.5, 2.0])
    0.5
    """
    a, b = _pair(ref, approx)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def sqnr_db(ref, approx) -> float:
    """Signal-to-quantization-noise ratio in dB: 10·log10(Σref² / Σ(ref-approx)²); inf if exact.

    >>> round(sqnr_db([1.0, -1.0], [1.1, -0.9]), 2)
    20.0
    """
    a, b = _pair(ref, approx)
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
