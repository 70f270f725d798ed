"""Quantization methods as frozen config dataclasses: one per method, looked up by type.

Each config is validated once when it is built (scikit-learn style: the message names the
argument, the value and what was expected); handlers then trust it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from effai.errors import InputError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise InputError(msg)


@dataclass(frozen=True)
class Float16Config:
    """Weights stored in fp16; activations rounded to fp16 too when `activations` (simulated on CPU).

    >>> Float16Config().activations
    True
    """

    activations: bool = True


@dataclass(frozen=True)
class BFloat16Config:
    """Weights stored in bf16; activations rounded to bf16 when `activations`.

    >>> BFloat16Config(activations=False).activations
    False
    """

    activations: bool = True


@dataclass(frozen=True)
class FP8Config:
    """Weights in an 8-bit (or 4-bit) float with a per-channel (or per-group) scale, like
    Hopper/Blackwell inference; activations optionally cast to the same format with a
    per-tensor dynamic scale. CPUs cannot execute fp8, so the arithmetic is simulated.

    >>> FP8Config().fmt, FP8Config(fmt="fp8_e5m2").fmt
    ('fp8_e4m3', 'fp8_e5m2')
    """

    fmt: str = "fp8_e4m3"
    activations: bool = False
    scaled: bool = True
    group_size: int | None = None

    def __post_init__(self):
        _check(self.fmt in ("fp8_e4m3", "fp8_e5m2", "fp4_e2m1"),
               f"FP8Config.fmt must be 'fp8_e4m3', 'fp8_e5m2' or 'fp4_e2m1', got {self.fmt!r}")
        _check(self.group_size is None or (isinstance(self.group_size, int) and self.group_size > 0),
               f"FP8Config.group_size must be None or a positive integer, got {self.group_size!r}")


@dataclass(frozen=True)
class FP4Config(FP8Config):
    """fp4_e2m1 weights with a scale per group of 32 values (the MXFP4/NVFP4 idea).

    >>> FP4Config().fmt, FP4Config().group_size
    ('fp4_e2m1', 32)
    """

    fmt: str = "fp4_e2m1"
    group_size: int | None = 32


@dataclass(frozen=True)
class Int8StaticConfig:
    """Post-training static INT8: per-channel symmetric INT8 weights, per-tensor asymmetric INT8
    activations whose ranges come from running `calibration` data (a DataLoader, a tensor, or a
    list of tensors / (x, y) batches) through the model, with BatchNorm folded first.

    >>> import torch
    >>> Int8StaticConfig(calibration=torch.zeros(4, 3), method="percentile").method
    'percentile'
    """

    calibration: Any = None
    method: str = "minmax"
    per_channel: bool = True
    fold_bn: bool = True
    percentile: float = 99.99
    max_batches: int | None = 32

    def __post_init__(self):
        _check(self.method in CALIBRATION_METHODS,
               f"Int8StaticConfig.method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        _check(self.calibration is not None, "Int8StaticConfig.calibration is required (a DataLoader or tensors)")
        _check(50.0 < self.percentile <= 100.0, f"Int8StaticConfig.percentile must be in (50, 100], got {self.percentile}")


@dataclass(frozen=True)
class Int8DynamicConfig:
    """INT8 weights (per channel) and activations quantized per batch at run time (no calibration).

    >>> Int8DynamicConfig().per_channel
    True
    """

    per_channel: bool = True


@dataclass(frozen=True)
class WeightOnlyConfig:
    """Integer weights (8, 4 or 2 bits), per channel or per group of `group_size`; activations stay float.

    >>> WeightOnlyConfig(bits=4, group_size=32).bits
    4
    """

    bits: int = 8
    group_size: int | None = None
    symmetric: bool = True

    def __post_init__(self):
        _check(self.bits in (8, 4, 2), f"WeightOnlyConfig.bits must be 8, 4 or 2, got {self.bits!r}")
        _check(self.group_size is None or (isinstance(self.group_size, int) and self.group_size > 0),
               f"WeightOnlyConfig.group_size must be None or a positive integer, got {self.group_size!r}")


@dataclass(frozen=True)
class EmbeddingConfig:
    """Weight-only integer embedding tables (nn.Embedding; the lookup returns float): `bits` 8
    with a scale per token row, or 4 with a scale per group of `group_size` values of a row
    (32 when left out; per row with `group_size=0`). Only embeddings are quantized: apply another
    config for the Linear layers. In ONNX: Gather of int8 codes times the row's scale, or
    GatherBlockQuantized (com.microsoft) for 4 bits.

    >>> EmbeddingConfig(bits=4).block, EmbeddingConfig().block
    (32, None)
    """

    bits: int = 8
    group_size: int | None = None

    def __post_init__(self):
        _check(self.bits in (8, 4), f"EmbeddingConfig.bits must be 8 or 4, got {self.bits!r}")
        _check(self.group_size is None or (isinstance(self.group_size, int) and self.group_size >= 0),
               f"EmbeddingConfig.group_size must be None or a non-negative integer, got {self.group_size!r}")

    @property
    def block(self) -> int | None:
        """The group size used: per row (None) for 8 bits and for group_size=0, else 32 by default."""
        if self.group_size == 0 or (self.group_size is None and self.bits == 8):
            return None
        return self.group_size or 32


@dataclass(frozen=True)
class TernaryConfig:
    """Ternary weights {-α, 0, +α} (TWN, Li & Liu 2016): threshold 0.7·mean|w|, α the mean of
    the kept |w|. `per_channel=False` is the paper's per-layer α.

    >>> TernaryConfig().per_channel
    True
    """

    per_channel: bool = True


@dataclass(frozen=True)
class BinaryConfig:
    """Binary weights α·sign(w) with α = mean|w| per output channel (XNOR-Net); optional binary
    activations sign(x) (straight-through gradient). First and last layers stay float by default,
    as in the XNOR-Net paper.

    >>> BinaryConfig(binary_activations=True).skip_first_last
    True
    """

    binary_activations: bool = False
    skip_first_last: bool = True


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training: fake-quantize weights (`fmt`: int8, int4, int2, ternary or binary)
    with a straight-through estimator and fine-tune with `effai.train.fit` on `data` using `train`
    (a TrainConfig); then freeze into stored integer codes. Without `data`, only the fake-quant
    layers are inserted (train them yourself, then call `convert_`).

    >>> QATConfig(fmt="ternary").fmt
    'ternary'
    """

    fmt: str = "int4"
    per_channel: bool = True
    group_size: int | None = None
    data: Any = None
    train: Any = None
    act_bits: int | None = None

    def __post_init__(self):
        _check(self.fmt in ("int8", "int4", "int2", "ternary", "binary"),
               f"QATConfig.fmt must be int8, int4, int2, ternary or binary, got {self.fmt!r}")
        _check(self.act_bits in (None, 8), f"QATConfig.act_bits must be None or 8, got {self.act_bits!r}")


@dataclass(frozen=True)
class MixedPrecisionConfig:
    """A format per layer (fully-qualified name -> "fp32" | "fp16" | "bf16" | "int8" | "int4" |
    "int2" | "ternary" | "binary"), weight-only; layers not named get `default`.

    >>> MixedPrecisionConfig({"fc": "fp32"}, default="int4").format_for("conv1")
    'int4'
    """

    layer_formats: dict = field(default_factory=dict)
    default: str = "int8"
    group_size: int | None = None

    def __post_init__(self):
        ok = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "int8", "int4", "int2", "ternary", "binary")
        for k, v in list(self.layer_formats.items()) + [("default", self.default)]:
            _check(v in ok, f"MixedPrecisionConfig: layer {k!r} has format {v!r}; expected one of {', '.join(ok)}")

    def format_for(self, fqn: str) -> str:
        return self.layer_formats.get(fqn, self.default)

    def __hash__(self):
        return hash((tuple(sorted(self.layer_formats.items())), self.default, self.group_size))
