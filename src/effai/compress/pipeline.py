"""Deep Compression end to end (Han et al. 2016): prune -> retrain -> share -> fine-tune
centroids -> Huffman-code into a real file, with the bytes and accuracy at every stage."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from effai.errors import InputError


@dataclass(frozen=True)
class DeepCompressionConfig:
    """The recipe. `sparsity` is the global magnitude-pruning target reached gradually over
    `prune_epochs` of retraining; weights are then shared with 2**conv_bits / 2**fc_bits
    clusters per layer and the centroids fine-tuned for `finetune_epochs`.

    >>> DeepCompressionConfig(sparsity=0.92).fc_bits
    5
    """

    sparsity: float = 0.92
    scope: str = "global"
    prune_epochs: int = 12
    prune_lr: float = 1e-3
    conv_bits: int = 8
    fc_bits: int = 5
    conv_gap_bits: int = 8
    fc_gap_bits: int = 5
    finetune_epochs: int = 4
    finetune_lr: float = 1e-4
    kmeans_iters: int = 30
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self):
        from effai.prune.core import check_sparsity

        check_sparsity(self.sparsity)
        for f in ("conv_bits", "fc_bits"):
            if not 1 <= getattr(self, f) <= 12:
                raise InputError(f"{f}={getattr(self, f)}: expected 1..12 bits")
        for f in ("conv_gap_bits", "fc_gap_bits"):
            if not 1 <= getattr(self, f) <= 12:
                raise InputError(f"{f}={getattr(self, f)}: expected 1..12 bits")
        if self.prune_epochs < 1 or self.finetune_epochs < 0:
            raise InputError("prune_epochs >= 1 and finetune_epochs >= 0 expected")


@dataclass
class CompressionReport:
    """Bytes and test accuracy after each stage, as in Han et al.'s Table 1."""

    stages: list[dict] = field(default_factory=list)  # {stage, bytes, ratio, accuracy, loss_pp, note}
    layers: list[dict] = field(default_factory=list)
    file: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ratio(self) -> float:
        return self.stages[-1]["ratio"]

    def add(self, stage: str, nbytes: int, accuracy: float | None, note: str = "") -> None:
        base = self.stages[0] if self.stages else None
        self.stages.append({
            "stage": stage, "bytes": int(nbytes), "ratio": (base["bytes"] / nbytes) if base else 1.0,
            "accuracy": accuracy,
            "loss_pp": None if accuracy is None or not base else 100 * (base["accuracy"] - accuracy), "note": note})


def _layers(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _fp32_bytes(model: nn.Module) -> int:
    return sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())


def _stage_bytes(model: nn.Module, cfg: DeepCompressionConfig, value_bits: int | None) -> tuple[int, list]:
    """Han's accounting before Huffman: per kept entry (nonzeros + fillers) one gap index of
    `gap_bits` plus the value (32 bits, or the cluster index bits + a codebook)."""
    from effai.compress.format import sparse_entries

    total_bits, rows = 0, []
    shared = set()
    for n, m in _layers(model):
        w = m.weight.detach().numpy()
        fc = w.ndim == 2
        gb = cfg.fc_gap_bits if fc else cfg.conv_gap_bits
        st = sparse_entries(w, gb)
        bits = (cfg.fc_bits if fc else cfg.conv_bits) if value_bits else 32
        layer_bits = st["entries"] * (gb + bits) + (32 * st["clusters"] if value_bits else 0)
        total_bits += layer_bits
        rows.append({"layer": n, "weights": w.size, "nonzero": st["nonzero"], "fillers": st["fillers"],
                     "density": st["nonzero"] / w.size, "clusters": st["clusters"], "bits": layer_bits})
        shared.add(f"{n}.weight")
    other = sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if k not in shared)
    return (total_bits + 7) // 8 + other, rows


def deep_compression(model: nn.Module, data, config: DeepCompressionConfig = DeepCompressionConfig(),
                     out_path: str | Path | None = None, arch: str | None = None, options: dict | None = None,
                     progress: bool = False) -> tuple[nn.Module, CompressionReport]:
    """Compress a trained `model` in place; returns it with a `CompressionReport`.

    The final stage is the real file written by `save_compressed` (to `out_path`, or a
    temporary file), reloaded and evaluated: its accuracy is the reloaded model's.
    """
    from effai.compress.format import load_compressed, save_compressed
    from effai.compress.share import share_, tie_gradients
    from effai.prune import MagnitudeConfig, PolynomialSchedule, gradual
    from effai.train import TrainConfig, fit, score

    torch.manual_seed(config.seed)
    test = data.loaders(config.batch_size)[2]
    rep = CompressionReport()
    rep.add("original (FP32)", _fp32_bytes(model), score(model, test).accuracy, "dense, 32-bit weights")

    # 1. prune gradually (Zhu & Gupta) while retraining; the last quarter fine-tunes at the target
    tc = TrainConfig(epochs=config.prune_epochs, lr=config.prune_lr, batch_size=config.batch_size, seed=config.seed)
    gradual(model, data, MagnitudeConfig(config.sparsity, scope=config.scope), PolynomialSchedule(), tc)
    nbytes, _ = _stage_bytes(model, config, None)
    rep.add("pruned + retrained", nbytes, score(model, test).accuracy,
            f"32-bit values + relative indices (conv {config.conv_gap_bits} / fc {config.fc_gap_bits} bits)")

    # 2. share weights per layer, then fine-tune the centroids (gradients summed per cluster)
    idx = {n: share_(m, config.fc_bits if m.weight.dim() == 2 else config.conv_bits, config.kmeans_iters)
           for n, m in _layers(model)}
    acc_shared = score(model, test).accuracy
    if config.finetune_epochs:
        mods = dict(_layers(model))
        hooks = [tie_gradients(mods[n], i) for n, i in idx.items()]
        try:
            fit(model, data, TrainConfig(epochs=config.finetune_epochs, lr=config.finetune_lr,
                                         batch_size=config.batch_size, seed=config.seed), progress=progress)
        finally:
            for h in hooks:
                h.remove()
    nbytes, rows = _stage_bytes(model, config, 1)
    rep.add("quantized (k-means shared)", nbytes, score(model, test).accuracy,
            f"before centroid fine-tuning {100 * acc_shared:.2f}%; conv {config.conv_bits} / fc {config.fc_bits}-bit indices + codebook")
    rep.layers = rows

    # 3. Huffman: the real file, reloaded
    tmp = None
    if out_path is None:
        tmp = tempfile.TemporaryDirectory()
        out_path = Path(tmp.name) / "model.effdc"
    save_compressed(model, out_path, arch=arch, options=options, conv_gap_bits=config.conv_gap_bits,
                    fc_gap_bits=config.fc_gap_bits)
    import copy

    back = load_compressed(out_path, model=copy.deepcopy(model))
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True))
    rep.add("Huffman-coded file", Path(out_path).stat().st_size, score(back, test).accuracy,
            "real file size, reloaded " + ("bit-identical" if same else "NOT identical"))
    rep.file = None if tmp else str(out_path)
    if tmp:
        tmp.cleanup()
    return model, rep
