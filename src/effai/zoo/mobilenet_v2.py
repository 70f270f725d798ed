"""MobileNetV2: inverted residuals with linear bottlenecks.

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", arXiv:1801.04381,
Table 2. Matches torchvision `mobilenet_v2` layer for layer: 3,504,872 parameters and 300 M MACs
at 1.0-224. Channels are rounded to multiples of 8 (`make_divisible`), the last conv never
shrinks below 1280 (width_mult < 1 keeps 1280, as in the paper).

Small inputs: for resolution < 64 the stem uses stride 1 (parameters unchanged).
"""

from __future__ import annotations

from torch import nn

from .blocks import ConvBNAct, InvertedResidual, init_weights, is_small, make_divisible
from .registry import ModelInfo, register

# t (expansion), c (channels), n (repeats), s (stride of the first repeat): paper Table 2
CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, in_channels=3, width_mult=1.0, small_input=False, dropout=0.2):
        super().__init__()
        c = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_channels, c, 3, 1 if small_input else 2, act=nn.ReLU6)]
        for t, ch, n, s in CFG:
            cout = make_divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, int(round(c * t)), cout, 3, s if i == 0 else 1, nn.ReLU6))
                c = cout
        layers.append(ConvBNAct(c, last, 1, act=nn.ReLU6))  # (N,1280,H/32,W/32)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_weights(self)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("mobilenet_v2", info=ModelInfo(
    "mobilenet_v2", "mobilenet", (3, 224, 224), 1000, "Sandler et al. 2018, arXiv:1801.04381",
    published_params=3_504_872, published_macs=300_000_000, min_resolution=8))
def mobilenet_v2(*, num_classes, in_channels, width_mult, resolution, dropout=0.2):
    """MobileNetV2 (default 1.0-224, ImageNet).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("mobilenet_v2", in_channels=1, resolution=28, num_classes=10)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return MobileNetV2(num_classes, in_channels, width_mult, is_small(resolution), dropout)
