"""Bytes and layer kinds of a Profile, re-expressed in a target's dtype (shared by fit and estimate).

A `Profile` is measured on the model as it is (usually fp32). On a target the model runs at
another dtype, so:

- weights: `params x bits / 8`; for integer dtypes each conv/linear layer also stores one
  fp32 scale and one int32 bias per output channel (8 bytes), and BatchNorm is folded into
  the preceding layer (its own parameters disappear);
- activations: scaled by `activation bits / profiled bits` (int8 and int4 weights run with
  int8 activations, fp16/bf16 with 16-bit ones).

>>> weight_bytes_for(_fake_profile(), "int8")     # 4000 params x 1 B + 10 channels x 8 B
4080
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from effai.errors import InputError
from effai.hardware.catalogue import BITS, normalise_dtype

ACT_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 8}
_NORM = ("BatchNorm", "batch_norm")
# Layers a deployment compiler (TFLite, TensorRT, XLA) fuses into the layer before them.
FUSABLE = ("BatchNorm", "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "Identity", "Dropout", "Flatten",
           "LeakyReLU", "GELU")


def check_profile(profile) -> None:
    """Validate the duck-typed `profile` argument once, at the public boundary."""
    total = getattr(profile, "total", None)
    if total is None or not all(hasattr(total, k) for k in ("params", "macs", "peak_activation_bytes")):
        raise InputError(f"profile: expected an effai Profile (effai.profile(model, input_shape=...)), "
                         f"got {type(profile).__name__}")


def profile_dtype(profile) -> str:
    """The dtype the profile was measured at (`float32` -> `fp32`); fp32 when unknown.

    >>> profile_dtype(SimpleNamespace(dtype="float16")), profile_dtype(SimpleNamespace())
    ('fp16', 'fp32')
    """
    d = getattr(profile, "dtype", None) or "float32"
    try:
        return normalise_dtype(str(d))
    except InputError:
        return "fp32"


def resolve_dtype(profile, dtype) -> str:
    """`dtype` normalised, or the profile's own dtype when None."""
    return profile_dtype(profile) if dtype is None else normalise_dtype(dtype)


def activation_scale(profile, dtype: str) -> float:
    """Factor from the profile's activation bytes to the target dtype's."""
    return ACT_BITS[dtype] / ACT_BITS[profile_dtype(profile)]


def _out_channels(layer) -> int:
    shape = getattr(layer, "output_shape", None) or []
    if not shape:
        return 0
    return int(shape[1]) if len(shape) >= 3 else int(shape[-1])


def layer_kind(layer) -> str:
    """`conv`, `depthwise`, `linear` (any other MAC layer), `pool` or `other` (no MACs).

    A convolution whose reduction length (MACs per output element) is 9 or 25 and whose
    parameters per output channel are 9 or 25 (+1 bias) is depthwise (3x3 or 5x5 per channel).
    """
    macs = getattr(layer, "macs", 0) or 0
    typ = str(getattr(layer, "type", ""))
    if macs <= 0:
        return "pool" if "pool" in typ.lower() and "adaptive" not in typ.lower() else "other"
    if "conv" in typ.lower():
        shape = getattr(layer, "output_shape", None) or []
        out = math.prod(shape) if shape else 0
        c = _out_channels(layer)
        k = macs / out if out else 0
        ppc = (getattr(layer, "params", 0) or 0) / c if c else 0
        if round(k) in (9, 25) and abs(k - round(k)) < 1e-9 and round(ppc) in (9, 10, 25, 26):
            return "depthwise"
        return "conv"
    return "linear"


def is_fusable(layer) -> bool:
    typ = str(getattr(layer, "type", ""))
    return (getattr(layer, "macs", 0) or 0) == 0 and any(typ.startswith(f) for f in FUSABLE)


def layer_weight_bytes(layer, dtype: str) -> float:
    """Bytes of one layer's parameters stored at `dtype` (see the module docstring)."""
    params = getattr(layer, "params", 0) or 0
    if not params:
        return 0.0
    bits = BITS[dtype]
    integer = dtype.startswith("int")
    typ = str(getattr(layer, "type", ""))
    if integer and any(typ.startswith(n) for n in _NORM):
        return 0.0  # folded into the previous conv's bias and scale
    if integer and (getattr(layer, "macs", 0) or 0) > 0:
        return params * bits / 8 + 8 * _out_channels(layer)
    return params * bits / 8


def weight_bytes_for(profile, dtype: str) -> int:
    """Bytes of all weights at `dtype` (layer by layer when the profile has layers)."""
    layers = getattr(profile, "layers", None) or []
    counted = sum(getattr(lp, "params", 0) or 0 for lp in layers)
    total = profile.total.params
    b = sum(layer_weight_bytes(lp, dtype) for lp in layers)
    if total > counted:  # parameters not attributed to any executed layer (unused or shared)
        b += (total - counted) * BITS[dtype] / 8
    return int(math.ceil(b))


def _fake_profile():
    layer = SimpleNamespace(name="fc", type="Linear", output_shape=[1, 10], params=4000, macs=3990)
    return SimpleNamespace(total=SimpleNamespace(params=4000, macs=3990, peak_activation_bytes=0),
                           layers=[layer], dtype="float32")
