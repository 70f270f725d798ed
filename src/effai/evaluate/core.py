"""`evaluate(model, data)`: every accuracy number the study and report need, in one pass
over the test set plus one pass per (corruption, severity)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from effai.errors import InputError
from effai.evaluate import metrics
from effai.evaluate.corruptions import corrupt, for_inputs
from effai.results.evaluation import Evaluation


def _test_tensors(data) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """Accept a DataSplits (its test split), a TensorDataset, or an (x, y) pair."""
    if hasattr(data, "test") and hasattr(data, "class_names"):
        x, y = data.test.tensors
        return x, y, list(data.class_names)
    if hasattr(data, "tensors"):
        x, y = data.tensors[:2]
        return x, y, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return torch.as_tensor(data[0]), torch.as_tensor(data[1]), None
    raise InputError(f"data: expected a DataSplits, a TensorDataset or an (x, y) pair, got {type(data).__name__}")


@torch.no_grad()
def logits_of(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Float32 logits of `model` (any callable returning logits) over `x`, in eval mode."""
    if hasattr(model, "eval"):
        model.eval()
    return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def evaluate(
    model,
    data,
    *,
    class_names: Sequence[str] | None = None,
    slices: Sequence | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    topk: int = 5,
    seed: int = 0,
    batch_size: int = 500,
) -> Evaluation:
    """Evaluate `model` on the test split of `data` (or on an (x, y) pair).

    `slices` gives one subgroup label per test example (e.g. "left-handed", "scanner B");
    accuracy is then reported per subgroup. Corruptions are seeded, so every model sees
    the same corrupted images; by default every corruption that suits the inputs (image ones for
    images, `TOKEN_CORRUPTIONS` for token ids).

    >>> import torch.nn as nn
    >>> x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 4
    >>> ev = evaluate(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), (x, y),
    ...               slices=["a", "b"] * 20, corruptions=["blur"], severities=[1, 5])
    >>> ev.n, len(ev.per_class), sorted(ev.slices), len(ev.robustness["blur"])
    (40, 4, ['a', 'b'], 2)
    """
    x, y, names = _test_tensors(data)
    logits = logits_of(model, x, batch_size)
    if logits.ndim != 2 or len(logits) != len(y):
        raise InputError(f"model output has shape {tuple(logits.shape)}; expected ({len(y)}, num_classes)")
    k = logits.shape[1]
    names = list(class_names or names or [str(i) for i in range(k)])
    if len(names) != k:
        raise InputError(f"class_names: {len(names)} names for a model with {k} outputs")
    if slices is not None and len(slices) != len(y):
        raise InputError(f"slices: {len(slices)} labels for {len(y)} test examples; give one per example")
    preds = logits.argmax(1)
    ev = Evaluation(
        n=len(y),
        accuracy=metrics.accuracy(logits, y),
        topk={f"top{topk}": metrics.topk_accuracy(logits, y, topk)},
        per_class=metrics.per_class_accuracy(preds, y, k),
        confusion=metrics.confusion_matrix(preds, y, k).tolist(),
        ece=metrics.expected_calibration_error(logits, y),
        class_names=names,
        predictions=preds.tolist(),
        labels=y.tolist(),
        slices=metrics.slice_accuracy(preds, y, slices) if slices is not None else {},
        severities=list(severities),
    )
    for name in for_inputs(x) if corruptions is None else corruptions:
        ev.robustness[name] = [
            metrics.accuracy(logits_of(model, corrupt(x, name, s, seed=seed + s), batch_size), y) for s in severities
        ]
    return ev
