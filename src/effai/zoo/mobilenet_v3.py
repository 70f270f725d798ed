"""MobileNetV3-Large and -Small: inverted residuals + squeeze-excite + hardswish, found by NAS.

Howard et al. 2019, "Searching for MobileNetV3", arXiv:1905.02244, Tables 1-2. Matches
torchvision `mobilenet_v3_large` / `mobilenet_v3_small` (5,483,032 / 2,542,856 parameters):
SE squeeze width `make_divisible(expanded // 4)`, hardsigmoid gate, BatchNorm eps 1e-3,
classifier conv -> pool -> Linear(1280 or 1024) -> hardswish -> dropout -> Linear.
Paper MACs: Large 219 M, Small 56 M (1.0-224).

Small inputs: for resolution < 64 the stem uses stride 1 (parameters unchanged).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from .blocks import ConvBNAct, InvertedResidual, init_weights, is_small, make_divisible
from .registry import ModelInfo, register

# kernel, expanded, out, SE, activation ("RE" relu / "HS" hardswish), stride  (paper Tables 1 and 2)
LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]
ACTS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class MobileNetV3(nn.Module):
    def __init__(self, cfg, last_channel, num_classes=1000, in_channels=3, width_mult=1.0,
                 small_input=False, dropout=0.2):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        c = make_divisible(16 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_channels, c, 3, 1 if small_input else 2, act=nn.Hardswish,
                                             norm=norm)]  # (N,16,H/2,W/2)
        for k, exp, out, se, act, s in cfg:
            exp, out = make_divisible(exp * width_mult), make_divisible(out * width_mult)
            se_ch = make_divisible(exp // 4) if se else 0
            layers.append(InvertedResidual(c, exp, out, k, s, ACTS[act], se_ch, norm=norm))
            c = out
        layers.append(ConvBNAct(c, 6 * c, 1, act=nn.Hardswish, norm=norm))  # (N,6C,H/32,W/32)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        last = make_divisible(last_channel * width_mult)
        self.classifier = nn.Sequential(nn.Linear(6 * c, last), nn.Hardswish(), nn.Dropout(dropout),
                                        nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


_PAPER = "Howard et al. 2019, arXiv:1905.02244"


@register("mobilenet_v3_large", info=ModelInfo(
    "mobilenet_v3_large", "mobilenet", (3, 224, 224), 1000, _PAPER,
    published_params=5_483_032, published_macs=219_000_000, min_resolution=8))
def mobilenet_v3_large(*, num_classes, in_channels, width_mult, resolution, dropout=0.2):
    """MobileNetV3-Large 1.0-224.

    >>> import torch
    >>> from effai.zoo import create
    >>> create("mobilenet_v3_large", in_channels=1, resolution=28, num_classes=10)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return MobileNetV3(LARGE, 1280, num_classes, in_channels, width_mult, is_small(resolution), dropout)


@register("mobilenet_v3_small", info=ModelInfo(
    "mobilenet_v3_small", "mobilenet", (3, 224, 224), 1000, _PAPER,
    published_params=2_542_856, published_macs=56_000_000, min_resolution=8))
def mobilenet_v3_small(*, num_classes, in_channels, width_mult, resolution, dropout=0.2):
    """MobileNetV3-Small 1.0-224.

    >>> import torch
    >>> from effai.zoo import create
    >>> create("mobilenet_v3_small", in_channels=1, resolution=28, num_classes=10)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return MobileNetV3(SMALL, 1024, num_classes, in_channels, width_mult, is_small(resolution), dropout)
