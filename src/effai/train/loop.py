"""A small, readable training loop: AdamW or SGD, cosine schedule, early stopping, resume."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from effai.errors import InputError
from effai.fileio import write_atomic


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Validated on creation so a bad value fails before any work."""

    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    patience: int | None = None  # early stopping on validation accuracy; None = off
    label_smoothing: float = 0.0
    augment: bool = False  # random translations of up to 2 pixels (digits-style data)
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None leaves torch's setting

    def __post_init__(self):
        if self.epochs < 1:
            raise InputError(f"epochs={self.epochs}: expected >= 1")
        if not self.lr > 0:
            raise InputError(f"lr={self.lr}: expected > 0")
        if self.batch_size < 1:
            raise InputError(f"batch_size={self.batch_size}: expected >= 1")
        if self.optimizer not in ("adamw", "sgd"):
            raise InputError(f"optimizer={self.optimizer!r}: expected 'adamw' or 'sgd'")


@dataclass
class TrainResult:
    test_accuracy: float
    val_accuracy: float
    epochs_run: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    checkpoint: str | None = None  # with out_dir: the folder (model.pt + model.json) every command loads
    last: str | None = None  # with out_dir: last.pt, the resumable state after the last epoch

    def to_dict(self) -> dict:
        return asdict(self)


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(  # noqa: C901 - the one training loop: resume, early stopping and checkpoints in one readable sequence
    model: nn.Module,
    data,
    cfg: TrainConfig = TrainConfig(),
    out_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    loss_fn: LossFn | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` on `data` (a `effai.data.DataSplits`) and return test accuracy.

    The weights with the best validation accuracy are restored at the end. With `out_dir`,
    a resumable `last.pt` is written after every epoch and `model.pt` + `model.json` at the
    end; rerunning with `resume=True` continues from the last finished epoch.
    Hooks let other capabilities reuse this loop: `loss_fn(model, x, y)` replaces cross
    entropy (distillation), `after_step(model)` runs after each optimizer step (re-applying
    pruning masks), `on_epoch_end(epoch, model)` runs after each epoch (pruning schedules).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_loader, val_loader, test_loader = data.loaders(cfg.batch_size)
    opt = _optimizer(model, cfg)
    steps_per_epoch = max(1, len(train_loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(cfg, steps_per_epoch))
    loss_fn = loss_fn or (lambda m, x, y: F.cross_entropy(m(x), y, label_smoothing=cfg.label_smoothing))

    state: dict[str, Any] = {"epoch": 0, "best_val": -1.0, "best_state": None, "history": [], "stale": 0}  # saved in last.pt
    resumed = 0
    if out_dir:
        from effai.fileio import ensure_dir

        ensure_dir(out_dir, "--out ")  # an unusable folder fails now, not after training
    last = Path(out_dir) / "last.pt" if out_dir else None
    if last is not None and resume and last.exists():
        resumed = _resume(last, model, opt, sched, state)

    start = time.perf_counter()
    bar = _progress() if progress else None
    with bar or nullcontext():
        task = bar.add_task("training", total=cfg.epochs, completed=state["epoch"]) if bar else None
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            total, seen = 0.0, 0
            if train_loader.generator is not None:  # the epoch's order depends on (seed, epoch) only: resumable
                train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch)
            for x, y in train_loader:
                if cfg.augment:
                    x = _translate(x, 2)
                loss = loss_fn(model, x, y)
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged at epoch {epoch + 1}: loss is {loss.item()} (lower the lr?)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if after_step:
                    after_step(model)
                total += loss.item() * len(y)
                seen += len(y)
            _settle_batchnorm(model, train_loader, (epoch + 1) * steps_per_epoch)
            val = score(model, val_loader).accuracy
            state["history"].append({"epoch": epoch + 1, "loss": total / max(seen, 1), "val_accuracy": val})
            if val > state["best_val"]:
                state.update(best_val=val, best_state=_clone(model.state_dict()), stale=0)
            else:
                state["stale"] += 1
            state["epoch"] = epoch + 1
            if on_epoch_end:
                on_epoch_end(epoch, model)
            if last is not None:
                _save_last(last, model, opt, sched, state)
            if bar:
                bar.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} val {val:.2%}")
            if cfg.patience is not None and state["stale"] >= cfg.patience:
                break
    if state["best_state"] is not None and on_epoch_end is None:
        # With an epoch hook (e.g. pruning) the final weights are the ones the hook shaped.
        model.load_state_dict(state["best_state"])
    result = TrainResult(
        test_accuracy=score(model, test_loader).accuracy,
        val_accuracy=max(state["best_val"], 0.0),
        epochs_run=state["epoch"],
        train_seconds=time.perf_counter() - start,
        history=state["history"],
        resumed_from_epoch=resumed,
        checkpoint=str(out_dir) if out_dir else None,
        last=str(last) if last else None,
    )
    if out_dir:
        from effai.train.checkpoint import save_checkpoint

        save_checkpoint(model, out_dir, data=data, result=result, train_config=cfg)
    return result


def _settle_batchnorm(model: nn.Module, train_loader, steps: int) -> None:
    """Re-estimate BatchNorm running statistics with one pass over the training data when their
    momentum is too slow for the steps taken so far (Keras' 0.99, PyTorch's 0.01, needs ~300
    steps to forget its initial mean 0 / variance 1; a short run would evaluate with those)."""
    slow = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and m.momentum is not None and steps * m.momentum < 3]
    if slow:
        from torch.optim.swa_utils import update_bn

        update_bn(train_loader, model)  # cumulative average over the pass, momentum restored after


@torch.no_grad()
def predict(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a loader, in eval mode."""
    was_training = model.training
    model.eval()
    outs, ys = [], []
    for x, y in loader:
        outs.append(model(x).float())
        ys.append(y)
    model.train(was_training)
    return torch.cat(outs), torch.cat(ys)


@dataclass(frozen=True)
class Score:
    """Top-1 accuracy and mean cross-entropy over `n` examples (the training loop's yardstick;
    `effai.evaluate.evaluate` gives the full `Evaluation`: per class, calibration, corruptions)."""

    accuracy: float
    loss: float
    n: int


def score(model: nn.Module, loader) -> Score:
    """Accuracy and mean cross-entropy of `model` over `loader`.

    >>> import torch
    >>> x, y = torch.eye(4), torch.arange(4)
    >>> score(nn.Linear(4, 4), [(x, y)]).n
    4
    """
    logits, y = predict(model, loader)
    return Score(accuracy=(logits.argmax(1) == y).float().mean().item(),
                 loss=F.cross_entropy(logits, y).item(), n=len(y))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _cosine(cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return factor


def _translate(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift each image by a random whole number of pixels (zero fill), per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4)
    dy = torch.randint(0, 2 * pixels + 1, (n,))
    dx = torch.randint(0, 2 * pixels + 1, (n,))
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * pixels)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def _clone(sd: dict) -> dict:
    return {k: v.detach().clone() for k, v in sd.items()}


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True)


def _save_last(path: Path, model, opt, sched, state) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": state["epoch"],
            "best_val": state["best_val"],
            "best_state": state["best_state"],
            "stale": state["stale"],
            "history": state["history"],
            "rng": torch.get_rng_state(),
        },
        buf,
    )
    write_atomic(path, buf.getvalue())


def _resume(path: Path, model, opt, sched, state) -> int:
    from effai.fileio import load_torch_file
    from effai.train.checkpoint import load_state_dict_checked

    ckpt = load_torch_file(path)
    again = "pass --no-resume (or another --out) to start over"
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise InputError(f"{path}: not a resume file written by effai train (no 'model' state); {again}")
    load_state_dict_checked(model, ckpt["model"], path, hint=f"it was saved from another model; {again}")
    try:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        state.update(
            epoch=int(ckpt["epoch"]), best_val=ckpt["best_val"], best_state=ckpt["best_state"],
            stale=ckpt["stale"], history=ckpt["history"],
        )
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise InputError(f"{path}: cannot resume from this checkpoint ({str(e).splitlines()[0][:200]}); "
                         f"{again}") from None
    return ckpt["epoch"]
