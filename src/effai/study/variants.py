"""The study's variant builders: a decorator registry keyed by name (like torchao's handlers).

A builder takes the study `Context` (the trained base model, the data, the config) and returns
a `Built`: the variant model plus the facts only the builder knows (its real size in its
storage format, the dtype it deploys at, how to run it in ONNX Runtime). The runner profiles
and evaluates every variant the same way. Add a method by registering one more builder:

    @variant("int8_ptq", family="quantization", quick=True)
    def int8_ptq(ctx): ...

Builders reuse effai's capabilities (quantize_, prune_, distill, deep_compression); none
reimplements a method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from effai.registry import Registry


@dataclass
class Built:
    model: nn.Module
    size_bytes: int  # bytes in the variant's storage format (really serialised)
    size_format: str  # what those bytes hold
    # The weight format it deploys at ("fp32", "int8", "ternary", ...): hardware fit and estimates
    # run it at this dtype, or at the nearest one a target supports (study.measure).
    dtype: str = "fp32"
    bits: float = 32  # weight bits, for the energy estimate
    # How the variant is written as the file it deploys as (study.artifacts), which every number
    # of its record is measured on: "onnx" (the model itself: a quantize_-d one as the graph it
    # simulates, with its own scales and codes; a float one as fp32), "onnx-fp16" (`structure`
    # converted to an fp16 graph) or "file" (`file`, written by the builder, e.g. the .effdc).
    deploy: str = "onnx"
    file: Path | None = None
    # The float model with the variant's architecture: profiled for params / MACs / memory (a
    # fake-quantized model keeps its codes in buffers).
    structure: nn.Module | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


INPUT_KINDS = ("images", "tokens")  # what a data set holds (`input_kind`); a builder says which it takes


@dataclass(frozen=True)
class VariantSpec:
    name: str
    family: str
    build: Callable
    quick: bool | tuple[str, ...]  # part of the --quick subset (for every input kind, or for those named)
    description: str
    inputs: tuple[str, ...] = INPUT_KINDS  # the input kinds it can be built for

    def is_quick(self, kind: str | None = None) -> bool:
        return self.quick is True or (isinstance(self.quick, tuple) and (kind is None or kind in self.quick))


VARIANTS: Registry[str, VariantSpec] = Registry("variant")


def variant(name: str, family: str, quick: bool | tuple[str, ...] = False, inputs: tuple[str, ...] = INPUT_KINDS):
    """Register `fn(ctx) -> Built` as the builder of variant `name` (a name registered twice raises
    `effai.registry.DuplicateRegistration`). `inputs` names the input kinds it takes ("images",
    "tokens"); `quick` puts it in the --quick subset, for every kind or only those named."""

    def deco(fn):
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        VARIANTS.add(name, VariantSpec(name, family, fn, quick, doc, tuple(inputs)))
        return fn

    return deco


def input_kind(data) -> str:
    """"tokens" for a data set of token sequences, else "images"."""
    return "tokens" if getattr(data, "is_tokens", False) else "images"


def names(quick: bool = False, kind: str | None = None) -> list[str]:
    """Registered variant names in registration order (the quick subset with `quick`), only those
    that take input `kind` when given.

    >>> names()[:3]
    ['fp32', 'fp16', 'bf16']
    >>> set(names(quick=True)) <= set(names())
    True
    >>> "mobilenet_tiny" in names(kind="tokens"), "heads_ffn_50" in names(quick=True, kind="tokens")
    (False, True)
    """
    return [n for n, s in VARIANTS.items() if (kind is None or kind in s.inputs) and (s.is_quick(kind) or not quick)]


def resolve(requested, quick: bool, kind: str | None = None) -> list[str]:
    """The variants to build: all (or the quick subset) that take input `kind` when None; fp32,
    the reference that harm is measured against, always first. A requested variant that cannot
    take `kind` is refused.

    >>> resolve(["int8_ptq"], quick=False)
    ['fp32', 'int8_ptq']
    >>> resolve(["squeezenet_tiny"], quick=False, kind="tokens")
    Traceback (most recent call last):
    effai.errors.InputError: variant squeezenet_tiny takes images only; the data set holds tokens
    """
    from effai.errors import InputError

    chosen = list(requested) if requested else names(quick, kind)
    for n in chosen:
        spec = VARIANTS.lookup(n)
        if kind is not None and kind not in spec.inputs:
            raise InputError(f"variant {n} takes {' and '.join(spec.inputs)} only; the data set holds {kind}")
    return ["fp32"] + [n for n in dict.fromkeys(chosen) if n != "fp32"]


# ------------------------------------------------------------------ helpers
def _qbytes(model: nn.Module) -> int:
    from effai.quantize import state_dict_bytes

    return state_dict_bytes(model)


def _qat(ctx, fmt: str, **options) -> nn.Module:
    """The base model after a short quantization-aware fine-tune to `fmt`, frozen into codes."""
    from effai.quantize import QATConfig, convert_, quantize_

    return convert_(quantize_(ctx.base_copy(), QATConfig(fmt=fmt, data=ctx.data, train=ctx.finetune_config(),
                                                         **options)))


def _fp32(model: nn.Module) -> Built:
    return Built(model, _qbytes(model), "fp32 state dict (torch.save)")


# ------------------------------------------------------------------ the baseline
@variant("fp32", family="baseline", quick=True)
def fp32(ctx):
    """The trained base model, 32-bit floats: the reference every variant is compared with."""
    return _fp32(ctx.base_copy())


# ------------------------------------------------------------------ numeric precision
@variant("fp16", family="precision", quick=True)
def fp16(ctx):
    """IEEE half precision weights and activations."""
    from effai.quantize import Float16Config, quantize_

    m = quantize_(ctx.base_copy(), Float16Config())
    return Built(m, _qbytes(m), "fp16 weights", dtype="fp16", bits=16, deploy="onnx-fp16", structure=ctx.base)


@variant("bf16", family="precision")
def bf16(ctx):
    """bfloat16 weights and activations (fp32's range, 8-bit mantissa)."""
    from effai.quantize import BFloat16Config, quantize_

    m = quantize_(ctx.base_copy(), BFloat16Config())
    return Built(m, _qbytes(m), "bf16 weights", dtype="bf16", bits=16, structure=ctx.base)


# ------------------------------------------------------------------ integer quantization
@variant("int8_ptq", family="quantization", quick=True)
def int8_ptq(ctx):
    """Post-training static INT8: per-channel weights, calibrated per-tensor activations."""
    from effai.quantize import Int8StaticConfig, quantize_

    m = quantize_(ctx.base_copy(), Int8StaticConfig(calibration=ctx.calibration))
    return Built(m, _qbytes(m), "int8 weights + fp32 per-channel scales", dtype="int8", bits=8, structure=ctx.base)


@variant("int8_dynamic", family="quantization", quick=("tokens",))
def int8_dynamic(ctx):
    """Dynamic INT8: per-channel weights, activations quantized per call (the CPU recipe for BERT)."""
    from effai.quantize import Int8DynamicConfig, quantize_

    m = quantize_(ctx.base_copy(), Int8DynamicConfig())
    return Built(m, _qbytes(m), "int8 weights + fp32 per-channel scales", dtype="int8", bits=8, structure=ctx.base,
                 notes=["activations quantized at run time (DynamicQuantizeLinear): no calibration"])


@variant("int8_qat", family="quantization")
def int8_qat(ctx):
    """Quantization-aware training to INT8 (weights and activations), a short fine-tune."""
    m = _qat(ctx, "int8", act_bits=8)
    return Built(m, _qbytes(m), "int8 weights + fp32 per-channel scales", dtype="int8", bits=8, structure=ctx.base)


@variant("int4", family="quantization", quick=True)
def int4(ctx):
    """Weight-only INT4 of the Linear layers (ONNX Runtime's MatMulNBits), per group of 32 where
    it divides the width, else per channel; convolutions stay fp32 (no int4 convolution kernel)."""
    from effai.errors import InputError
    from effai.quantize.export import _int4_linear  # the recipe of `effai export --dtype int4`

    try:
        m = _int4_linear(ctx.base_copy())
    except InputError as e:  # a model without Linear layers: this variant fails, the study goes on
        raise ValueError(str(e)) from None
    return Built(m, _qbytes(m), "packed int4 Linear weights + fp32 scales, fp32 convolutions", dtype="int4", bits=4,
                 structure=ctx.base)


@variant("ternary", family="quantization")
def ternary(ctx):
    """Ternary weights {-a, 0, +a} (TWN), trained with QAT for a short fine-tune."""
    m = _qat(ctx, "ternary")
    return Built(m, _qbytes(m), "2-bit packed ternary codes + fp32 scales", dtype="ternary", bits=2, structure=ctx.base)


@variant("binary", family="quantization")
def binary(ctx):
    """Binary weights a*sign(w) (XNOR-Net style, first and last layers float), QAT fine-tune."""
    m = _qat(ctx, "binary")
    return Built(m, _qbytes(m), "1-bit packed weights (+ fp32 first/last layers)", dtype="binary", bits=1, structure=ctx.base)


# ------------------------------------------------------------------ pruning
def _magnitude(ctx, sparsity: float) -> Built:
    from effai.prune import MagnitudeConfig, apply_masks, make_permanent, prune_
    from effai.prune.savings import sparse_bytes

    # One global threshold: small layers (the first conv) keep more of their weights than 90%
    # per-layer pruning would leave them, which a 1-epoch fine-tune cannot recover from.
    m = prune_(ctx.base_copy(), MagnitudeConfig(sparsity=sparsity, scope="global"))
    ctx.finetune(m, after_step=apply_masks)
    make_permanent(m)
    return Built(m, sparse_bytes(m), f"sparse fp32 ({sparsity:.0%} zeros; bitmask/CSR per tensor)",
                 notes=["dense kernels: zeros still cost MACs and time"])


@variant("magnitude_50", family="pruning")
def magnitude_50(ctx):
    """Global magnitude pruning to 50% sparsity, then a short fine-tune with the mask."""
    return _magnitude(ctx, 0.5)


@variant("magnitude_75", family="pruning", quick=True)
def magnitude_75(ctx):
    """Global magnitude pruning to 75% sparsity, then a short fine-tune with the mask."""
    return _magnitude(ctx, 0.75)


@variant("magnitude_90", family="pruning")
def magnitude_90(ctx):
    """Global magnitude pruning to 90% sparsity, then a short fine-tune with the mask."""
    return _magnitude(ctx, 0.9)


@variant("channel_50", family="pruning", inputs=("images",))
def channel_50(ctx):
    """Structured pruning: remove half the channels/units (L1 importance), then fine-tune.

    Images only: a transformer's structured pruning is `heads_ffn_50` (its residual width stays)."""
    from effai.prune import ChannelConfig, prune_

    m = prune_(ctx.base_copy(), ChannelConfig(ratio=0.5, input_shape=(1, *ctx.input_shape)))
    ctx.finetune(m)
    return Built(m, _qbytes(m), "fp32 state dict of the smaller dense model")


@variant("heads_ffn_50", family="pruning", quick=True, inputs=("tokens",))
def heads_ffn_50(ctx):
    """Transformer pruning: remove half the attention heads and FFN neurons (Taylor importance), then fine-tune."""
    from effai.prune import HeadFFNConfig, prune_

    m = prune_(ctx.base_copy(), HeadFFNConfig(head_ratio=0.5, ffn_ratio=0.5, importance="taylor", data=ctx.data))
    ctx.finetune(m, lr=1e-3)
    return Built(m, _qbytes(m), "fp32 state dict of the smaller dense model")


# ------------------------------------------------------------------ distillation and pipelines
@variant("kd_student", family="distillation")
def kd_student(ctx):
    """A half-width student of the base architecture trained by knowledge distillation (T=4)."""
    from effai.distill import KDConfig, distill

    student = ctx.arch(ctx.base_info.arch, width_mult=0.5)
    teacher = ctx.base_copy()
    distill(teacher, student, ctx.data, KDConfig(temperature=4, alpha=0.9, epochs=ctx.arch_epochs + 1, lr=5e-3,
                                                   batch_size=64, seed=ctx.cfg.seed))
    return Built(student, _qbytes(student), "fp32 state dict (half-width student)")


@variant("kd_fewer_layers", family="distillation", quick=True, inputs=("tokens",))
def kd_fewer_layers(ctx):
    """A student with half the transformer layers, started from every other teacher layer (DistilBERT), KD (T=4)."""
    from effai.distill import KDConfig, distill

    teacher = ctx.base_copy()
    layers = len(getattr(teacher, "blocks", ()))
    if layers < 2:  # a ValueError: this variant fails, saying why; the study goes on
        raise ValueError(f"kd_fewer_layers needs a zoo transformer with 2 or more layers in .blocks, got {layers}")
    student = _same_arch(ctx, layers=layers // 2)
    state = teacher.state_dict()
    student.load_state_dict({k: state[_every_other_block(k)] for k in student.state_dict()})
    distill(teacher, student, ctx.data, KDConfig(temperature=4, alpha=0.9, epochs=ctx.arch_epochs + 1, lr=1e-3,
                                                   batch_size=64, seed=ctx.cfg.seed))
    return Built(student.eval(), _qbytes(student), f"fp32 state dict ({layers // 2} of {layers} layers)")


def _every_other_block(key: str) -> str:
    """DistilBERT's initialisation: the student's block i is the teacher's block 2i; the
    embeddings and the head are the teacher's own.

    >>> _every_other_block("blocks.1.ff1.weight"), _every_other_block("head.bias")
    ('blocks.2.ff1.weight', 'head.bias')
    """
    parts = key.split(".")
    if parts[0] == "blocks":
        parts[1] = str(2 * int(parts[1]))
    return ".".join(parts)


def _same_arch(ctx, **changes) -> nn.Module:
    """A fresh model of the base's zoo architecture and options, with `changes` applied."""
    from effai import zoo

    arch = getattr(ctx.base, "effai_arch", None)
    if not arch:
        return ctx.arch(ctx.base_info.arch, **changes)
    return zoo.create(arch["name"], **{**arch["options"], **changes})


@variant("deep_compression", family="pipeline")
def deep_compression(ctx):
    """Deep Compression (Han et al. 2016): prune 90%, share weights (k-means), Huffman-code."""
    from effai import zoo
    from effai.compress import DeepCompressionConfig
    from effai.compress import deep_compression as dc

    path = ctx.out / "variants" / "deep_compression" / "model.effdc"
    cfg = DeepCompressionConfig(sparsity=0.9, prune_epochs=2, finetune_epochs=1,
                                kmeans_iters=10, seed=ctx.cfg.seed)
    arch = ctx.base_info.arch  # recorded in the file, so that it loads on its own
    options = zoo.options_for(arch, ctx.data) if arch in zoo.names() else None
    m, rep = dc(ctx.base_copy(), ctx.data, cfg, out_path=path, arch=arch if options is not None else None,
                options=options)
    return Built(m, path.stat().st_size, "Deep Compression file (sparse indices, shared-weight codes, Huffman)",
                 dtype="int8", bits=5, deploy="file", file=path, notes=["runs decoded to dense fp32 weights"],
                 extra={"stages": rep.stages})


# ------------------------------------------------------------------ efficient architectures
def _alternative(ctx, name: str) -> Built:
    from effai.study.archs import ARCHS

    m = ARCHS[name](num_classes=ctx.data.num_classes, in_channels=ctx.input_shape[0])
    ctx.train_from_scratch(m)
    return Built(m, _qbytes(m), "fp32 state dict", extra={"arch": name})


@variant("mobilenet_tiny", family="architecture", inputs=("images",))
def mobilenet_tiny(ctx):
    """A small MobileNet v1-style network (depthwise-separable blocks), trained from scratch."""
    return _alternative(ctx, "mobilenet_tiny")


@variant("mobilenetv2_tiny", family="architecture", inputs=("images",))
def mobilenetv2_tiny(ctx):
    """A small MobileNet v2-style network (inverted residuals, linear bottlenecks), trained from scratch."""
    return _alternative(ctx, "mobilenetv2_tiny")


@variant("squeezenet_tiny", family="architecture", inputs=("images",))
def squeezenet_tiny(ctx):
    """A small SqueezeNet-style network (Fire modules, no fully connected layer), trained from scratch."""
    return _alternative(ctx, "squeezenet_tiny")
