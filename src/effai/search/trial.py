"""One trial: build, train, compress and measure one variant. Runs in a worker (process or Ray task).

A variant is a plain dict (what the driver sampled); `evaluate_variant` returns an
`effai.results.VariantRecord` (a worker sends its dict back), so the same function runs
in-process, in a process pool, or as a Ray task on another machine.
Steps, in order: build the zoo model at the sampled width and resolution -> train (with
knowledge distillation from a width-1.0 teacher when `kd`) -> channel-prune and fine-tune ->
quantize weights (post-training, or QAT fine-tuning when `qat`) -> accuracy on val and test ->
profile (params, MACs, peak activations, latency, energy) and the size of the stored weights.

>>> from effai.search.config import SearchConfig
>>> cfg = SearchConfig(train={"epochs": 1, "finetune_epochs": 1})
>>> v = {"family": "lenet5", "width_mult": 0.25, "resolution_mult": 1.0, "prune_ratio": 0.0,
...      "bits": 8, "layer_bits": None, "kd": False, "qat": False}
>>> r = evaluate_variant(v, cfg)
>>> r.size_bytes < r.details["size_fp32"], 0 <= r.accuracy <= 1, r.name
(True, True, 'lenet5 w0.25 int8')
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F
from torch import nn

from effai.data import DataSplits
from effai.results import Cost, Energy, Latency, VariantRecord
from effai.search.config import SearchConfig

QUANT_TYPES = (nn.Conv2d, nn.Linear)
_FORMAT = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4", 2: "int2"}


# ---------------------------------------------------------------- data, resized per resolution
@functools.lru_cache(maxsize=8)
def dataset(name: str, seed: int, resolution: int | None = None):
    """The data set, images bilinearly resized to `resolution` (cached per worker process)."""
    from torch.utils.data import TensorDataset

    from effai import data

    ds = data.load(name, seed=seed)
    if resolution is None or resolution == ds.input_shape[-1]:
        return ds

    def resize(t: TensorDataset) -> TensorDataset:
        x, y = t.tensors
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        return TensorDataset(x.contiguous(), y)

    return type(ds)(ds.name, resize(ds.train), resize(ds.val), resize(ds.test), ds.class_names, ds.seed,
                    {**ds.meta, "resolution": resolution})


def resolution_for(family: str, base: int, mult: float) -> int:
    """round(base * mult), raised to the smallest input the family accepts.

    >>> resolution_for("lenet5", 28, 0.5), resolution_for("lenet5", 8, 1.0)
    (14, 12)
    """
    from effai import zoo
    from effai.zoo import usercode

    smallest = 1 if usercode.is_code_spec(family) else zoo.info(family).min_resolution
    return max(int(round(base * mult)), smallest)


def describe(v: dict) -> str:
    """A short human name for a variant.

    >>> describe({"family": "lenet5", "width_mult": 0.5, "resolution_mult": 1.0, "prune_ratio": 0.25,
    ...           "bits": 4, "layer_bits": None, "kd": True, "qat": False})
    'lenet5 w0.5 prune0.25 int4 kd'
    """
    parts = [v["family"], f"w{v['width_mult']:g}"]
    if v["resolution_mult"] != 1.0:
        parts.append(f"r{v['resolution_mult']:g}")
    if v["prune_ratio"] > 0:
        parts.append(f"prune{v['prune_ratio']:g}")
    if v.get("layer_bits"):
        parts.append("mixed(" + "/".join(str(b) for b in v["layer_bits"].values()) + ")")
    elif v["bits"] != 32:
        parts.append(f"int{v['bits']}" if v["bits"] < 16 else "fp16")
    if v["kd"]:
        parts.append("kd")
    if v["qat"]:
        parts.append("qat")
    return " ".join(parts)


def build(variant: dict, cfg: SearchConfig) -> tuple[nn.Module, DataSplits]:
    """(untrained model, data) for a variant."""
    base = dataset(cfg.dataset, cfg.seed)
    r = resolution_for(variant["family"], base.input_shape[-1], variant["resolution_mult"])
    ds = dataset(cfg.dataset, cfg.seed, r)
    torch.manual_seed(cfg.seed)
    return build_family(variant["family"], cfg, ds, variant["width_mult"], r), ds


def build_family(family: str, cfg: SearchConfig, ds: DataSplits, width_mult: float, resolution: int) -> nn.Module:
    """Family `family` sized for `ds`: a zoo model, or the user's `file.py:ClassName` (with
    `cfg.model_args`; it gets those of the zoo options its __init__ names)."""
    from effai import zoo
    from effai.zoo import usercode

    opts = {"num_classes": ds.num_classes, "in_channels": ds.input_shape[0], "width_mult": width_mult,
            "resolution": resolution}
    if usercode.is_code_spec(family):
        return usercode.build(family, cfg.model_args, trust_code=cfg.trust_code, **opts)
    return zoo.create(family, **opts)


def quant_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose weights get a bit-width (Conv2d and Linear).

    >>> from effai import zoo
    >>> quant_layers(zoo.create("lenet5"))[:2]
    ['features.0', 'features.3']
    """
    return [n for n, m in model.named_modules() if isinstance(m, QUANT_TYPES)]


def _train_config(cfg: SearchConfig, epochs: int):
    from effai.train import TrainConfig

    t = cfg.train
    return TrainConfig(epochs=epochs, lr=t.lr, batch_size=t.batch_size, optimizer=t.optimizer, seed=cfg.seed,
                       threads=cfg.threads_per_trial)


@functools.lru_cache(maxsize=4)
def _teacher(family: str, width_mult: float, resolution_mult: float, cfg_json: str) -> nn.Module:
    """The KD teacher: the same family, FP32, at the widest width of the space (cached per worker)."""
    from effai.train import fit

    cfg = SearchConfig.model_validate_json(cfg_json)
    model, ds = build({"family": family, "width_mult": width_mult, "resolution_mult": resolution_mult}, cfg)
    fit(model, ds, _train_config(cfg, cfg.train.epochs), progress=False)
    return model.eval()


def _kd_loss(teacher: nn.Module, temperature: float, alpha: float):
    """Hinton et al. 2015 as a `fit` loss (kept for the pruning fine-tune too): effai.distill's loss."""
    from effai.distill.kd import kd_loss

    def loss(model, x, y):
        with torch.no_grad():
            t_logits = teacher(x)
        return kd_loss(model(x), t_logits, y, temperature, alpha)

    return loss


def _prune(model: nn.Module, ratio: float, ds, cfg: SearchConfig, loss_fn) -> nn.Module:
    """Structured channel pruning (channels removed, so size and MACs shrink), then fine-tuning."""
    from effai.prune import ChannelConfig, prune_
    from effai.train import fit

    shape = (1, *ds.input_shape)
    model = prune_(model, ChannelConfig(ratio=ratio, input_shape=shape)) or model
    fit(model, ds, _train_config(cfg, cfg.train.finetune_epochs), progress=False, loss_fn=loss_fn)
    return model


def weight_size(model: nn.Module, layer_bits: dict[str, int]) -> int:
    """Bytes of the stored weights: each quantized layer at its bits (+ fp32 per-channel scales),
    every other parameter at 32 bits.

    >>> net = nn.Sequential(nn.Linear(64, 10))
    >>> weight_size(net, {"0": 32}), weight_size(net, {"0": 4})
    (2600, 400)
    """
    from effai.profile import weight_bytes

    total = 0
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        bits = layer_bits.get(name, 32)
        holder = nn.Module()
        for i, p in enumerate(own):
            holder.register_parameter(f"p{i}", p)
        total += weight_bytes(holder, bits=None if bits == 32 else bits)
    return total


def _quantize(model: nn.Module, layer_bits: dict[str, int], qat: bool, ds, cfg: SearchConfig, loss_fn) -> nn.Module:
    """Weight quantization, one format per layer: post-training, or QAT (fake-quant fine-tune, then freeze)."""
    from effai.quantize import MixedPrecisionConfig, QATConfig, convert_, quantize_
    from effai.train import fit

    formats = {n: _FORMAT[b] for n, b in layer_bits.items() if b < 32}
    if not formats:
        return model
    if not qat or all(b == 16 for b in layer_bits.values()):
        return quantize_(model, MixedPrecisionConfig(formats, default="fp32"), filter_fn=lambda m, n: n in formats)
    for fmt in sorted(set(formats.values())):
        if fmt == "fp16":
            continue
        group = {n for n, f in formats.items() if f == fmt}
        quantize_(model, QATConfig(fmt=fmt), filter_fn=lambda m, n, g=group: n in g)  # type: ignore[misc]
    fit(model, ds, _train_config(cfg, cfg.train.finetune_epochs), progress=False, loss_fn=loss_fn)
    convert_(model)
    fp16 = {n: f for n, f in formats.items() if f == "fp16"}
    if fp16:
        quantize_(model, MixedPrecisionConfig(fp16, default="fp32"), filter_fn=lambda m, n: n in fp16)
    return model


def evaluate_variant(variant: dict, cfg: SearchConfig) -> VariantRecord:
    """Build, train, compress and measure one variant (see module doc)."""
    from effai import profile as profile_mod
    from effai.train import fit, score

    if cfg.threads_per_trial:
        torch.set_num_threads(cfg.threads_per_trial)
    start, cpu_start = time.perf_counter(), time.process_time()
    model, ds = build(variant, cfg)
    loss_fn = None
    if variant.get("kd"):
        widest = max(cfg.space.width_mult.values())
        teacher = _teacher(variant["family"], float(widest), float(variant["resolution_mult"]), cfg.model_dump_json())
        loss_fn = _kd_loss(teacher, cfg.train.kd_temperature, cfg.train.kd_alpha)
    fit(model, ds, _train_config(cfg, cfg.train.epochs), progress=False, loss_fn=loss_fn)
    if variant["prune_ratio"] > 0:
        model = _prune(model, float(variant["prune_ratio"]), ds, cfg, loss_fn)

    names = quant_layers(model)
    layer_bits = {n: int((variant.get("layer_bits") or {}).get(n, variant["bits"])) for n in names}
    shape = (1, *ds.input_shape)
    measure = "latency" in cfg.objectives and cfg.latency == "measured" or cfg.constraints.max_latency_ms
    mean_bits = sum(layer_bits.values()) / max(len(layer_bits), 1)
    prof = profile_mod.profile(model.eval(), input_shape=shape, latency=bool(measure), threads=cfg.threads_per_trial,
                               warmup=3, repeats=20, min_seconds=0.2, bits=None if mean_bits == 32 else mean_bits)
    size = weight_size(model, layer_bits)
    size_fp32 = weight_size(model, {})
    model = _quantize(model, layer_bits, bool(variant.get("qat")), ds, cfg, loss_fn)

    _, val_loader, test_loader = ds.loaders(512)
    val_acc, test_acc = score(model, val_loader).accuracy, score(model, test_loader).accuracy
    cost = Cost(size_bytes=size, size_format=f"{mean_bits:g}-bit weights (mean) + fp32 scales",
                params=int(prof.total.params), macs=int(prof.total.macs),
                peak_activation_bytes=int(prof.total.peak_activation_bytes),
                latency=None if prof.latency is None else Latency.measured(prof.latency, "eager fp32"),
                energy=None if prof.energy is None else Energy(
                    prof.energy.joules, "measured" if prof.energy.method == "measured" else "estimated",
                    prof.energy.detail))
    rec = VariantRecord(describe(variant), family=variant["family"], accuracy=test_acc, val_accuracy=val_acc,
                        bits=mean_bits, cost=cost,
                        details={"size_fp32": size_fp32, "resolution": int(ds.input_shape[-1])})
    if cfg.target:
        rec = _on_target(rec, prof, cfg, mean_bits)
    return rec.replace(seconds=time.perf_counter() - start,
                       # CPU time this worker got (all its threads)
                       details={**rec.details, "cpu_seconds": time.process_time() - cpu_start})


def _on_target(rec: VariantRecord, prof, cfg: SearchConfig, mean_bits: float) -> VariantRecord:
    """Latency / energy estimated on the hardware target (effai.hardware's roofline estimate),
    at int8 when the weights are 8 bits or fewer and the target runs int8, else at the model's dtype."""
    from effai import hardware

    assert cfg.target is not None  # the caller checks
    target = hardware.load_catalogue().get(cfg.target)
    dtype = "int8" if mean_bits <= 8 and "int8" in target.spec.dtypes else None
    est = hardware.estimate(prof, cfg.target, dtype)
    cost = rec.cost
    if cfg.latency == "estimated":
        cost = cost.replace(latency=Latency(float(est.latency_ms), method="estimated", runtime=f"roofline on {cfg.target}",
                                            graph=est.dtype, how=f"estimated on {cfg.target} ({est.dtype}, roofline)"))
    if est.energy_j is not None:
        cost = cost.replace(energy=Energy(float(est.energy_j), "estimated", f"on {cfg.target} ({est.energy_method})"))
    return rec.replace(dtype=est.dtype, cost=cost)


def run_trial(variant: dict, cfg_json: str) -> dict:
    """Worker entry point (picklable arguments only): `{"ok": True, "record": VariantRecord dict}`
    or `{"ok": False, "error"}`."""
    cfg = SearchConfig.model_validate_json(cfg_json)
    try:
        return {"ok": True, "record": evaluate_variant(variant, cfg).to_dict()}
    except Exception as e:  # a failed trial is recorded as FAIL, the search goes on
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
