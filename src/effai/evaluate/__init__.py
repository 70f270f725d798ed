"""Evaluate models beyond top-1: per class and slice, calibration, robustness, and the harm a
compressed model does compared with its base.

>>> import torch, torch.nn as nn
>>> x, y = torch.rand(20, 1, 4, 4), torch.arange(20) % 2
>>> ev = evaluate(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (x, y), corruptions=[])
>>> ev.n, len(ev.confusion)
(20, 2)
"""

from effai.evaluate.core import Evaluation, evaluate, logits_of
from effai.evaluate.corruptions import CORRUPTIONS, TOKEN_CORRUPTIONS, corrupt
from effai.evaluate.harm import Harm, compare, interval, paired
from effai.evaluate.metrics import (
    accuracy,
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    slice_accuracy,
    topk_accuracy,
)

__all__ = [
    "CORRUPTIONS", "TOKEN_CORRUPTIONS", "Evaluation", "Harm", "accuracy", "compare", "confusion_matrix", "corrupt", "evaluate",
    "expected_calibration_error", "interval", "logits_of", "paired", "per_class_accuracy", "slice_accuracy",
    "topk_accuracy",
]
