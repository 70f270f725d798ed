"""The handlers: one function per config type, registered with `@register`."""

from __future__ import annotations

import warnings

from effai.quantize import calibrate
from effai.quantize.config import (
    BFloat16Config,
    BinaryConfig,
    EmbeddingConfig,
    Float16Config,
    FP8Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    MixedPrecisionConfig,
    QATConfig,
    TernaryConfig,
    WeightOnlyConfig,
)
from effai.quantize.core import ActQuant, QuantLayer, register, set_module


def _replace(model, targets, make):
    for fqn, mod in targets:
        set_module(model, fqn, make(fqn, mod))
    return model


@register(Float16Config)
def _float16(model, cfg: Float16Config, targets):
    return _replace(model, targets, lambda f, m: QuantLayer(
        m, "fp16", act=ActQuant("fp16") if cfg.activations else None, store_bias_as="fp16"))


@register(BFloat16Config)
def _bfloat16(model, cfg: BFloat16Config, targets):
    return _replace(model, targets, lambda f, m: QuantLayer(
        m, "bf16", act=ActQuant("bf16") if cfg.activations else None, store_bias_as="bf16"))


@register(FP8Config)
def _fp8(model, cfg: FP8Config, targets):
    return _replace(model, targets, lambda f, m: QuantLayer(
        m, cfg.fmt, group_size=cfg.group_size, scaled=cfg.scaled,
        act=ActQuant(cfg.fmt) if cfg.activations else None))


@register(WeightOnlyConfig)
def _weight_only(model, cfg: WeightOnlyConfig, targets):
    fmt = {8: "int8", 4: "int4", 2: "int2"}[cfg.bits]
    return _replace(model, targets, lambda f, m: QuantLayer(m, fmt, group_size=cfg.group_size, symmetric=cfg.symmetric))


@register(EmbeddingConfig)
def _embedding(model, cfg: EmbeddingConfig, targets):
    fmt = {8: "int8", 4: "int4"}[cfg.bits]
    return _replace(model, targets, lambda f, m: QuantLayer(m, fmt, group_size=_fitting_group(cfg.block, m)))


def _fitting_group(block: int | None, emb) -> int | None:
    """The group size, or per row where it does not divide the embedding width."""
    return block if block is not None and emb.embedding_dim % block == 0 else None


@register(Int8DynamicConfig)
def _int8_dynamic(model, cfg: Int8DynamicConfig, targets):
    gran = "channel" if cfg.per_channel else "tensor"
    return _replace(model, targets, lambda f, m: QuantLayer(m, "int8", granularity=gran, act=ActQuant("dynamic")))


@register(Int8StaticConfig)
def _int8_static(model, cfg: Int8StaticConfig, targets):
    model.eval()
    if cfg.fold_bn:  # convs are folded in place (targets stay valid); BNs become Identity
        calibrate.fold_bn_(model)
    example = calibrate.batches(cfg.calibration, 1)[0]
    rounded = calibrate.rounded_outputs(model, [f for f, _ in targets], example)
    own = frozenset(f for f, consumer in rounded.items() if consumer is None)
    stats = calibrate.collect(model, targets, cfg.calibration, cfg.max_batches, outputs=own)
    gran = "channel" if cfg.per_channel else "tensor"
    ranges = {k: calibrate.choose_range(st, cfg.method, cfg.percentile) for k, st in stats.items()}

    def make(fqn, mod):
        out = None
        if fqn in rounded:  # rounded like the quantized layer it feeds, or with its own range
            out = ActQuant("static", *ranges[rounded[fqn] or f"{fqn}:output"])
        return QuantLayer(mod, "int8", granularity=gran, act=ActQuant("static", *ranges[fqn]), out_act=out)

    return _replace(model, targets, make)


@register(TernaryConfig)
def _ternary(model, cfg: TernaryConfig, targets):
    gran = "channel" if cfg.per_channel else "tensor"
    return _replace(model, targets, lambda f, m: QuantLayer(m, "ternary", granularity=gran))


def _first_last(targets):
    return {targets[0][0], targets[-1][0]} if targets else set()


@register(BinaryConfig)
def _binary(model, cfg: BinaryConfig, targets):
    skip = _first_last(targets) if cfg.skip_first_last else set()
    if skip:
        warnings.warn(f"BinaryConfig: first and last layers {sorted(skip)} stay float (skip_first_last=True)",
                      stacklevel=3)
    keep = [(f, m) for f, m in targets if f not in skip]
    return _replace(model, keep, lambda f, m: QuantLayer(
        m, "binary", act=ActQuant("binary") if cfg.binary_activations else None))


@register(MixedPrecisionConfig)
def _mixed(model, cfg: MixedPrecisionConfig, targets):
    for fqn, mod in targets:
        fmt = cfg.format_for(fqn)
        if fmt == "fp32":
            continue
        set_module(model, fqn, QuantLayer(mod, fmt, group_size=cfg.group_size if fmt in ("int4", "int2") else None,
                                          store_bias_as=fmt if fmt in ("fp16", "bf16") else None))
    return model


@register(QATConfig)
def _qat(model, cfg: QATConfig, targets):
    gran = "channel" if cfg.per_channel else "tensor"
    _replace(model, targets, lambda f, m: QuantLayer(
        m, cfg.fmt, granularity=gran, group_size=cfg.group_size, qat=True,
        act=ActQuant("dynamic") if cfg.act_bits == 8 else None))
    if cfg.data is None:
        return model
    from effai import train
    from effai.quantize.core import convert_

    tcfg = cfg.train if cfg.train is not None else train.TrainConfig(epochs=3, lr=5e-4)
    model.train()
    train.fit(model, cfg.data, tcfg, out_dir=None, resume=False, progress=False)
    model.eval()
    return convert_(model)

