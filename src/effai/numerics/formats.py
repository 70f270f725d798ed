"""The numeric formats effai knows: bits, range, smallest normal/subnormal, precision, hardware.

Float formats take their numbers from `ml_dtypes.finfo` (the reference the casts are tested
against); integer formats are described in integer units of their scale: the range is the
code range, "smallest normal" is one step (1), there are no subnormals, and the relative
precision is one step relative to the largest magnitude (1 / qmax).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import ml_dtypes
import numpy as np

from effai.errors import InputError, suggest


@dataclass(frozen=True)
class Format:
    """One numeric format. `kind` is "float" or "int"; `np_dtype` is the ml_dtypes/numpy dtype
    a float format rounds to (None for integer formats, which need a scale)."""

    name: str
    kind: str
    bits: int
    min: float
    max: float
    smallest_normal: float
    smallest_subnormal: float | None
    eps: float
    hardware: str
    aliases: tuple = ()
    qmin: int | None = None
    qmax: int | None = None

    @property
    def np_dtype(self):
        return _NP_DTYPES.get(self.name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("aliases")
        return d


_NP_DTYPES = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp8_e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "fp8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "fp4_e2m1": np.dtype(ml_dtypes.float4_e2m1fn),
}

_HARDWARE = {
    "fp32": "every CPU and GPU; default for training",
    "fp16": "GPUs since Pascal (tensor cores since Volta), ARMv8.2+ CPUs, Apple/mobile NPUs",
    "bf16": "TPUs, NVIDIA Ampere+, Intel AVX512-BF16/AMX, ARMv8.6+",
    "fp8_e4m3": "NVIDIA Hopper/Ada/Blackwell tensor cores, Intel Gaudi2+, AMD MI300 (inference, fwd pass)",
    "fp8_e5m2": "NVIDIA Hopper/Ada/Blackwell tensor cores, AMD MI300 (gradients: wider range)",
    "fp4_e2m1": "NVIDIA Blackwell (NVFP4/MXFP4 with block scales); otherwise emulated",
    "int8": "x86 VNNI/AMX, ARM dot-product, NVIDIA tensor cores (Turing+), TPUs, most NPUs/DSPs, MCUs (CMSIS-NN)",
    "int4": "NVIDIA tensor cores (Turing-Ampere), some NPUs; CPUs via weight-only kernels (unpack to int8)",
    "int2": "research accelerators; CPUs/GPUs only via unpacking (storage savings)",
    "ternary": "research accelerators (TWN/TTQ); storage as 2-bit codes, multiply-free adds",
    "binary": "FPGAs, bit-serial/XNOR-popcount kernels (e.g. Larq, daBNN); 1-bit storage",
}


def _float_format(name, aliases=()):
    dt = _NP_DTYPES[name]
    fi = ml_dtypes.finfo(dt) if name != "fp32" else np.finfo(np.float32)
    return Format(
        name=name,
        kind="float",
        bits=int(fi.bits),
        min=float(fi.min),
        max=float(fi.max),
        smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_subnormal),
        eps=float(fi.eps),
        hardware=_HARDWARE[name],
        aliases=aliases,
    )


def _int_format(name, bits, qmin, qmax, aliases=()):
    return Format(
        name=name,
        kind="int",
        bits=bits,
        min=float(qmin),
        max=float(qmax),
        smallest_normal=1.0,
        smallest_subnormal=None,
        eps=1.0 / max(abs(qmin), abs(qmax)),
        hardware=_HARDWARE[name],
        aliases=aliases,
        qmin=qmin,
        qmax=qmax,
    )


_FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        _float_format("fp32", ("float32", "float")),
        _float_format("fp16", ("float16", "half")),
        _float_format("bf16", ("bfloat16",)),
        _float_format("fp8_e4m3", ("fp8", "float8_e4m3fn", "e4m3")),
        _float_format("fp8_e5m2", ("float8_e5m2", "e5m2")),
        _float_format("fp4_e2m1", ("fp4", "float4_e2m1fn", "e2m1", "nvfp4")),
        _int_format("int8", 8, -128, 127),
        _int_format("int4", 4, -8, 7),
        _int_format("int2", 2, -2, 1),
        _int_format("ternary", 2, -1, 1, ("int1.58",)),
        _int_format("binary", 1, -1, 1, ("int1", "sign")),
    ]
}
_ALIASES = {a: f.name for f in _FORMATS.values() for a in f.aliases}


def get(fmt: str | Format) -> Format:
    """The Format called `fmt` (a name or an alias such as "bfloat16").

    >>> get("bfloat16").bits, get("fp8_e4m3").max
    (16, 448.0)
    """
    if isinstance(fmt, Format):
        return fmt
    if not isinstance(fmt, str):
        raise InputError(f"format must be a name such as 'bf16', got {type(fmt).__name__} {fmt!r}")
    key = fmt.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _FORMATS:
        raise suggest(fmt, list(_FORMATS) + list(_ALIASES), "format")
    return _FORMATS[key]


def formats() -> dict[str, Format]:
    """All formats by name, widest first.

    >>> list(formats())[:3]
    ['fp32', 'fp16', 'bf16']
    """
    return dict(_FORMATS)


def table() -> list[dict]:
    """One row per format: name, kind, bits, min, max, smallest normal/subnormal, eps, hardware.

    >>> row = {r["name"]: r for r in table()}["fp16"]
    >>> row["bits"], row["max"], row["smallest_subnormal"]
    (16, 65504.0, 5.960464477539063e-08)
    """
    return [f.to_dict() for f in _FORMATS.values()]
