"""Soft-target distillation with the T^2 scaling of Hinton et al. 2015, plus hint losses.

loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T))
     + (1 - alpha) * CE(s, y)
     + hint_weight * sum_i MSE(adapter_i(student_feature_i), teacher_feature_i)

The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones
when T changes (the soft gradients scale as 1/T^2). Each hint pair gets a learned 1x1 conv
(or linear) adapter from the student's channels to the teacher's; teacher features are
average-pooled to the student's spatial size when they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effai.errors import InputError


@dataclass(frozen=True)
class KDConfig:
    """How to distill. `feature_layers` is a list of (teacher_layer, student_layer) names
    (as in `model.named_modules()`) whose outputs are matched by a hint loss.

    >>> KDConfig(temperature=4, alpha=0.9).temperature
    4
    """

    temperature: float = 4.0
    alpha: float = 0.9
    feature_layers: tuple | list | None = None
    hint_weight: float = 1.0
    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 128
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    augment: bool = False
    seed: int = 0

    def __post_init__(self):
        if not self.temperature > 0:
            raise InputError(f"temperature={self.temperature}: expected > 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha={self.alpha}: expected a weight in [0, 1]")
        if self.hint_weight < 0:
            raise InputError(f"hint_weight={self.hint_weight}: expected >= 0")
        for pair in self.feature_layers or ():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise InputError(f"feature_layers: expected (teacher_layer, student_layer) name pairs, got {pair!r}")

    def train_config(self):
        from effai.train import TrainConfig

        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer,
                           weight_decay=self.weight_decay, augment=self.augment, seed=self.seed)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton's loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.

    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
    >>> float(kd_loss(s, s, y, alpha=1.0))   # identical logits: no soft loss
    0.0
    """
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * (t * t)
    if alpha >= 1.0:
        return alpha * soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


class _Student(nn.Module):
    """The student plus its hint adapters, so `fit`'s optimizer trains both."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleList):
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(self, x):
        return self.student(x)


def _capture(model: nn.Module, names: list[str], store: dict, tag: str):
    modules = dict(model.named_modules())
    handles = []
    for n in names:
        if n not in modules:
            raise InputError(f"feature_layers: {tag} has no layer {n!r}")
        handles.append(modules[n].register_forward_hook(lambda m, i, o, n=n: store.__setitem__((tag, n), o)))
    return handles


def _adapter(s_feat: torch.Tensor, t_feat: torch.Tensor) -> nn.Module:
    if s_feat.dim() == 4:
        return nn.Conv2d(s_feat.shape[1], t_feat.shape[1], 1, bias=False)
    return nn.Linear(s_feat.shape[1], t_feat.shape[1], bias=False)


def distill(teacher: nn.Module, student: nn.Module, data, config: KDConfig = KDConfig(), progress: bool = False,
            out_dir=None) -> nn.Module:
    """Train `student` on `data` to match `teacher` (frozen, eval mode); returns the student.

    The teacher runs under `no_grad` on every (augmented) batch. With `feature_layers`, the
    adapters are trained with the student and dropped at the end (they are not part of the
    returned model). The fit result is attached as `student.distill_result`.
    """
    from effai.train import fit

    if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
        raise InputError("teacher and student: expected torch.nn.Module instances")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    pairs = [tuple(p) for p in (config.feature_layers or ())]
    feats: dict = {}
    handles = _capture(teacher, [t for t, _ in pairs], feats, "teacher")
    handles += _capture(student, [s for _, s in pairs], feats, "student")
    adapters = nn.ModuleList()
    if pairs:  # size the adapters from one probe batch
        x0 = data.train.tensors[0][:2] if hasattr(data, "train") else next(iter(data))[0][:2]
        with torch.no_grad():
            teacher(x0)
            was = student.training
            student.eval()
            student(x0)
            student.train(was)
        for t, s in pairs:
            adapters.append(_adapter(feats[("student", s)], feats[("teacher", t)]))
    wrapped = _Student(student, adapters)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, _Student)  # fit calls it with `wrapped`
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = model(x)
        loss = kd_loss(s_logits, t_logits, y, config.temperature, config.alpha)
        for (t, s), ad in zip(pairs, model.adapters, strict=True):
            sf, tf = ad(feats[("student", s)]), feats[("teacher", t)]
            if sf.dim() == 4 and sf.shape[-2:] != tf.shape[-2:]:
                tf = F.adaptive_avg_pool2d(tf, sf.shape[-2:])
            loss = loss + config.hint_weight * F.mse_loss(sf, tf)
        return loss

    try:
        result = fit(wrapped, data, config.train_config(), out_dir=out_dir, progress=progress, loss_fn=loss_fn)
    finally:
        for h in handles:
            h.remove()
    student.distill_result = result  # type: ignore[assignment]  # a plain attribute
    return student
