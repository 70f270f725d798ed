"""Accuracy metrics computed from logits and labels: plain tensor functions, no model needed.

Keeping these pure (logits in, numbers out) lets the study recompute any of them from
saved predictions, and lets tests check them on hand-made tensors.
"""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy.

    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    0.5
    """
    return (logits.argmax(1) == labels).float().mean().item()


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of examples whose label is among the `k` highest logits (k capped at #classes).

    >>> topk_accuracy(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([1]), 2)
    1.0
    """
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(1).float().mean().item()


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts: row = true class, column = predicted class.

    >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Recall of each class (None for a class absent from `labels`).

    >>> per_class_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 3)
    [0.5, 1.0, None]
    """
    cm = confusion_matrix(preds, labels, num_classes)
    n = cm.sum(1)
    return [(cm[c, c] / n[c]).item() if n[c] > 0 else None for c in range(num_classes)]


def slice_accuracy(preds: torch.Tensor, labels: torch.Tensor, slices) -> dict[str, dict]:
    """Accuracy per subgroup, for user-given slice labels (one per example, any hashable).

    >>> slice_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), ["a", "a", "b"])
    {'a': {'accuracy': 0.5, 'n': 2}, 'b': {'accuracy': 1.0, 'n': 1}}
    """
    correct = (preds == labels).tolist()
    groups: dict[str, list[bool]] = {}
    for s, ok in zip(slices, correct, strict=True):
        groups.setdefault(str(s), []).append(ok)
    return {s: {"accuracy": sum(v) / len(v), "n": len(v)} for s, v in sorted(groups.items())}


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): the |confidence - accuracy| gap, averaged over equal-width
    confidence bins weighted by how many examples fall in each.

    A model that says 90% and is right 90% of the time has ECE 0.

    >>> logits = torch.tensor([[10.0, 0.0], [10.0, 0.0]])  # ~100% confident
    >>> round(expected_calibration_error(logits, torch.tensor([0, 1])), 3)  # right half the time
    0.5
    """
    probs = logits.float().softmax(1)
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (conf[in_bin].mean() - correct[in_bin].mean()).abs()
    return ece.item()
