"""Knowledge distillation: the loss is Hinton's, and distill() trains through effai.train.fit."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effai.distill import KDConfig, distill, kd_loss
from effai.errors import InputError


def test_kd_loss_matches_formula():
    torch.manual_seed(0)
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    T, a = 3.0, 0.7
    p_t = F.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean()
    want = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    torch.testing.assert_close(kd_loss(s, t, y, T, a), want)


def test_kd_gradient_scale_is_temperature_free():
    """With the T^2 factor the soft-target gradient stays on the same scale as T grows."""
    torch.manual_seed(0)
    t, y = torch.randn(64, 10) * 3, torch.zeros(64, dtype=torch.long)
    norms = []
    for T in (2.0, 8.0):
        s = (torch.randn(64, 10) * 3).requires_grad_()
        kd_loss(s, t, y, T, 1.0).backward()
        norms.append(s.grad.norm().item())
    assert 0.2 < norms[0] / norms[1] < 5


@pytest.fixture(scope="module")
def tiny():
    from effai import data

    return data.load("synthetic", n=160, shape=(1, 8, 8), num_classes=3)


def test_distill_with_hint_layer_trains_student(tiny):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 3))
    student = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 3))
    before = [p.clone() for p in student.parameters()]
    out = distill(teacher, student, tiny, KDConfig(epochs=2, feature_layers=[("1", "1")]))
    assert out is student and isinstance(student, nn.Sequential)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    assert student.distill_result.epochs_run == 2
    assert not student[1]._forward_hooks  # hint hooks removed


@pytest.mark.parametrize("kw,field", [({"temperature": 0}, "temperature"), ({"alpha": 1.5}, "alpha"),
                                      ({"feature_layers": ["x"]}, "feature_layers")])
def test_bad_config(kw, field):
    with pytest.raises(InputError, match=field):
        KDConfig(**kw)


def test_unknown_feature_layer(tiny):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(InputError, match="nope"):
        distill(net, nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), tiny,
                KDConfig(epochs=1, feature_layers=[("nope", "1")]))
