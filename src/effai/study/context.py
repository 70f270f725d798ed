"""What every variant builder gets: the trained base model, the data and training helpers.

The base model is loaded (or trained, once, and cached in `out/base/`) by `load_base` before
the first variant is built, so a builder never triggers it and a resumed run that rebuilds
nothing still knows the base (`StudyResult.base`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from effai.errors import InputError
from effai.results import BaseModelInfo

if TYPE_CHECKING:
    from effai.data import DataSplits
    from effai.study.config import StudyConfig


@dataclass(frozen=True)
class Context:
    cfg: StudyConfig
    data: DataSplits
    out: Path
    base: nn.Module  # the trained base model; read-only (builders take `base_copy()`)
    base_info: BaseModelInfo

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

    def base_copy(self) -> nn.Module:
        m = copy.deepcopy(self.base)
        for p in m.parameters():
            p.requires_grad_(True)
        return m

    def arch(self, name: str | None, **options) -> nn.Module:
        """A fresh zoo model `name` sized for the data set."""
        from effai import zoo

        if name is None:
            # A ValueError, not an InputError: this variant fails (and says why), the study goes on.
            raise ValueError(f"--model {self.cfg.model} has no zoo architecture to build a new model of; "
                             "give a zoo name or a checkpoint written by effai train")
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


def load_base(cfg: StudyConfig, data: DataSplits, folder: Path) -> tuple[nn.Module, BaseModelInfo]:
    """The study's base model and its facts: an architecture (a zoo name or the user's
    `file.py:ClassName`) is trained once and cached in `folder` (OUT/base/, reused from there), anything
    else is loaded with `effai.zoo.loading.load_for_data` and checked against the data set."""
    from effai import zoo
    from effai.zoo import usercode

    if cfg.model in zoo.names() or usercode.is_code_spec(cfg.model):
        return _trained_base(cfg, data, folder)
    from effai.zoo.loading import load_for_data

    spec = cfg.model
    lm = load_for_data(spec, data, arch=cfg.arch, trust_pickle=cfg.trust_code, model_args=cfg.model_args,
                       onnx_refusal="cannot be compressed by the study")
    assert lm.model is not None  # load_for_data refuses ONNX files
    shape = tuple(data.input_shape)
    if lm.input_shape and tuple(lm.input_shape) != shape:
        raise InputError(f"--model {spec}: expects inputs {tuple(lm.input_shape)}, the data set has {shape}")
    arch = lm.meta.get("arch") or cfg.arch or (lm.name if lm.name in zoo.names() else None)
    return lm.model.eval(), BaseModelInfo(name=str(spec), arch=arch if arch in zoo.names() else None,
                                          source=str(spec), test_accuracy=lm.meta.get("test_accuracy"))


def _trained_base(cfg: StudyConfig, data: DataSplits, folder: Path) -> tuple[nn.Module, BaseModelInfo]:
    from effai import zoo
    from effai.train import TrainConfig, fit, load_checkpoint
    from effai.zoo.loading import load_for_data

    name = cfg.model
    arch = name if name in zoo.names() else None  # new-architecture variants need a zoo name
    if (folder / "model.pt").exists() and (folder / "model.json").exists():
        model, meta = load_checkpoint(folder, trust_pickle=cfg.trust_code)
        return model.eval(), BaseModelInfo(name=name, arch=arch, source="cached",
                                           test_accuracy=meta.get("test_accuracy"))
    torch.manual_seed(cfg.seed)  # the initial weights: the same command trains the same base
    built = load_for_data(name, data, trust_pickle=cfg.trust_code, model_args=cfg.model_args).model
    assert built is not None
    model = built
    train = TrainConfig(epochs=cfg.base_epochs, lr=3e-3, batch_size=64, seed=cfg.seed)
    r = fit(model, data, train, out_dir=folder, resume=True, progress=False)
    return model.eval(), BaseModelInfo(name=name, arch=arch, source="trained", epochs=r.epochs_run,
                                       train_seconds=r.train_seconds, test_accuracy=r.test_accuracy)
