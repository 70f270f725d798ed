"""effai.evaluate: metrics on hand-made tensors, seeded corruptions, and the harm view
flagging a planted per-class regression (and nothing when there is none)."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from effai import evaluate as ev
from effai.errors import InputError


@pytest.fixture(scope="module")
def trained(digits):
    """A small MLP trained on scikit-learn digits in a fraction of a second."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = digits.train.tensors
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def test_metrics_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 2])
    assert ev.accuracy(logits, y) == 0.5
    assert ev.topk_accuracy(logits, y, 2) == 1.0
    assert ev.confusion_matrix(logits.argmax(1), y, 3).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    assert ev.per_class_accuracy(logits.argmax(1), y, 3) == [1.0, 0.5, 0.0]
    # Perfectly calibrated: confidence 0.5 and right half the time.
    half = torch.tensor([[0.0, 0.0]] * 4)
    assert ev.expected_calibration_error(half, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-6)


def test_corruptions_are_seeded_bounded_and_graded(digits, trained):
    x, y = digits.test.tensors
    for name in ev.CORRUPTIONS:
        a = ev.corrupt(x, name, 3, seed=7)
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1, name
        assert torch.equal(a, ev.corrupt(x, name, 3, seed=7)), name
        # Higher severity moves the images further from the clean ones.
        d = [(ev.corrupt(x, name, s, seed=7) - x).abs().mean().item() for s in (1, 5)]
        assert d[1] > d[0], name
    with pytest.raises(InputError, match="severity"):
        ev.corrupt(x, "blur", 6)
    with pytest.raises(InputError, match="did you mean"):
        ev.corrupt(x, "gaussian_nois", 1)
    e = ev.evaluate(trained, digits, corruptions=["gaussian_noise"])
    curve = e.robustness["gaussian_noise"]
    assert len(curve) == 5 and curve[-1] < e.accuracy


def test_evaluate_fields_and_slices(digits, trained):
    n = len(digits.test)
    slices = ["even" if i % 2 == 0 else "odd" for i in range(n)]
    e = ev.evaluate(trained, digits, slices=slices, corruptions=[])
    assert e.accuracy > 0.9 and e.topk["top5"] >= e.accuracy
    assert sum(map(sum, e.confusion)) == n and len(e.per_class) == 10
    assert set(e.slices) == {"even", "odd"} and sum(s["n"] for s in e.slices.values()) == n
    assert ev.Evaluation.from_dict(e.to_dict()) == e
    with pytest.raises(InputError, match="slices"):
        ev.evaluate(trained, digits, slices=["a"], corruptions=[])


def test_planted_regression_is_flagged(digits, trained):
    base = ev.evaluate(trained, digits, corruptions=[])
    broken = copy.deepcopy(trained)
    with torch.no_grad():
        broken[-1].bias[3] = -1e3  # the planted regression: class 3 can never be predicted
    harm = ev.compare(base, ev.evaluate(broken, digits, corruptions=[]))
    assert harm.flagged == ["3"]
    assert harm.worst(1)[0].name == "3" and harm.worst(1)[0].variant == 0.0
    labels = digits.test.tensors[1]
    assert harm.exemplars and all(labels[i] == 3 for i in harm.exemplars)
    assert harm.overall_delta < 0


def test_no_flag_without_regression(digits, trained):
    base = ev.evaluate(trained, digits, corruptions=[])
    nudged = copy.deepcopy(trained)
    with torch.no_grad():
        for p in nudged.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 1e-3)
    harm = ev.compare(base, ev.evaluate(nudged, digits, corruptions=[]))
    assert harm.flagged == [] and abs(harm.overall_delta) < 0.02


def test_slice_regression_is_flagged():
    labels = [i % 2 for i in range(200)]
    slices = ["scanner A" if i < 100 else "scanner B" for i in range(200)]
    base = ev.Evaluation(200, 1.0, {}, [], [], 0.0, ["a", "b"], list(labels), labels)
    # The variant is wrong on a third of scanner B's examples, right everywhere else.
    preds = [1 - t if (i >= 100 and i % 3 == 0) else t for i, t in enumerate(labels)]
    variant = ev.Evaluation(200, 0.0, {}, [], [], 0.0, ["a", "b"], preds, labels)
    harm = ev.compare(base, variant, slices=slices)
    assert "scanner B" in harm.flagged and "scanner A" not in harm.flagged
    with pytest.raises(InputError):
        ev.compare(base, ev.Evaluation(2, 1.0, {}, [], [], 0.0, ["a", "b"], [0, 1], [0, 1]))
