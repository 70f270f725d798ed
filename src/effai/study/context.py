"""What every variant builder gets: the trained base model, the data and training helpers."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from effai.errors import InputError


@dataclass
class Context:
    cfg: object  # StudyConfig
    data: object  # DataSplits
    out: Path
    base_arch: str | None = None  # zoo name of the base model, when it has one
    base_options: dict = field(default_factory=dict)
    _base: nn.Module | None = None
    base_info: dict = field(default_factory=dict)

    # Budgets: short fine-tunes for compressed variants, a few epochs for new architectures.
    @property
    def finetune_epochs(self) -> int:
        return 1

    @property
    def arch_epochs(self) -> int:
        return 2 if self.cfg.quick else 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.input_shape)

    @property
    def calibration(self) -> torch.Tensor:
        return self.data.calibration(256)

    @property
    def base(self) -> nn.Module:
        """The trained base model (trained once and cached in `out/base/`); read-only."""
        if self._base is None:
            self._base = self._load_or_train_base()
        return self._base

    def base_copy(self) -> nn.Module:
        m = copy.deepcopy(self.base)
        for p in m.parameters():
            p.requires_grad_(True)
        return m

    def arch(self, name: str, **options) -> nn.Module:
        from effai import zoo

        return zoo.create(name, **zoo.options_for(name, self.data, **options))

    def finetune_config(self, epochs: int | None = None, lr: float = 5e-4):
        from effai.train import TrainConfig

        return TrainConfig(epochs=epochs or self.finetune_epochs, lr=lr, seed=self.cfg.seed)

    def finetune(self, model: nn.Module, epochs: int | None = None, lr: float = 5e-4, **hooks) -> nn.Module:
        """A short fine-tune at a low learning rate (hooks as in `effai.train.fit`)."""
        from effai.train import fit

        fit(model, self.data, self.finetune_config(epochs, lr), progress=False, **hooks)
        return model.eval()

    def train_from_scratch(self, model: nn.Module) -> nn.Module:
        from effai.train import TrainConfig, fit

        fit(model, self.data, TrainConfig(epochs=self.arch_epochs, lr=1e-2, batch_size=64, seed=self.cfg.seed),
            progress=False)
        return model.eval()

    def _load_or_train_base(self) -> nn.Module:
        from effai import zoo
        from effai.train import TrainConfig, fit, load_checkpoint

        spec = self.cfg.model
        if spec in zoo.names():
            self.base_arch = spec
            folder = self.out / "base"
            if (folder / "model.pt").exists() and (folder / "model.json").exists():
                model, meta = load_checkpoint(folder)
                self.base_info = {"source": "cached", "test_accuracy": meta.get("test_accuracy")}
                return model.eval()
            model = self.arch(spec)
            cfg = TrainConfig(epochs=self.cfg.base_epochs, lr=3e-3, batch_size=64, seed=self.cfg.seed)
            r = fit(model, self.data, cfg, out_dir=folder, resume=True, progress=False)
            self.base_info = {"source": "trained", "epochs": r.epochs_run, "seconds": r.train_seconds,
                              "test_accuracy": r.test_accuracy}
            return model.eval()
        from effai.zoo.loading import load_model

        lm = load_model(spec)
        if lm.model is None:
            raise InputError(f"--model {spec}: an ONNX file cannot be compressed by the study; give a checkpoint folder")
        self.base_arch = lm.meta.get("arch") or lm.name
        self.base_info = {"source": str(spec), "test_accuracy": lm.meta.get("test_accuracy")}
        if lm.input_shape and tuple(lm.input_shape) != self.input_shape:
            raise InputError(f"--model {spec}: expects inputs {tuple(lm.input_shape)}, the data set has {self.input_shape}")
        with torch.no_grad():
            out = lm.model.eval()(torch.zeros(1, *self.input_shape))
        if out.shape[-1] != self.data.num_classes:
            raise InputError(f"--model {spec}: has {out.shape[-1]} outputs, the data set has {self.data.num_classes} classes")
        return lm.model
