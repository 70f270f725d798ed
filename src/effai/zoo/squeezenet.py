"""SqueezeNet 1.0 and 1.1: Fire modules, no fully connected layer (a 1x1 conv classifier).

Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters",
arXiv:1602.07360. Matches torchvision `squeezenet1_0` / `squeezenet1_1` (1,248,424 / 1,235,496
parameters). Version 1.1 (from the SqueezeNet repo) uses a 3x3/64 stem and pools earlier:
2.4x less computation (~0.35 G MACs) at the same accuracy.

`width_mult` scales every Fire module's channels (`max(1, int(c * width_mult))`).
Small inputs: for resolution < 64 the stem conv uses stride 1 (parameters unchanged).
"""

from __future__ import annotations

from torch import nn

from .blocks import Fire, is_small
from .registry import ModelInfo, register

POOL = "M"
# stem (channels, kernel), then Fire (squeeze, expand1x1, expand3x3) or max-pool, per torchvision
V1_0 = ((96, 7), [POOL, (16, 64, 64), (16, 64, 64), (32, 128, 128), POOL, (32, 128, 128), (48, 192, 192),
                  (48, 192, 192), (64, 256, 256), POOL, (64, 256, 256)])
V1_1 = ((64, 3), [POOL, (16, 64, 64), (16, 64, 64), POOL, (32, 128, 128), (32, 128, 128), POOL,
                  (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)])


class SqueezeNet(nn.Module):
    def __init__(self, cfg, num_classes=1000, in_channels=3, width_mult=1.0, small_input=False, dropout=0.5):
        super().__init__()
        w = lambda c: max(1, int(c * width_mult))  # noqa: E731
        (stem, k), fires = cfg
        layers: list[nn.Module] = [nn.Conv2d(in_channels, w(stem), k, 1 if small_input else 2),
                                   nn.ReLU(inplace=True)]  # (N,96,109,109) for 1.0 at 224
        c = w(stem)
        for f in fires:
            if f == POOL:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))  # halves H, W
            else:
                layers.append(Fire(c, w(f[0]), w(f[1]), w(f[2])))
                c = w(f[1]) + w(f[2])
        self.features = nn.Sequential(*layers)  # (N,512,13,13) at 224
        self.final_conv = nn.Conv2d(c, num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), self.final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))
        for m in self.modules():  # torchvision init: kaiming-uniform, final conv small normal
            if isinstance(m, nn.Conv2d):
                if m is self.final_conv:
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x)).flatten(1)


_PAPER = "Iandola et al. 2016, arXiv:1602.07360"


@register("squeezenet1_0", info=ModelInfo(
    "squeezenet1_0", "squeezenet", (3, 224, 224), 1000, _PAPER,
    published_params=1_248_424, published_macs=819_000_000, min_resolution=16))
def squeezenet1_0(*, num_classes, in_channels, width_mult, resolution, dropout=0.5):
    """SqueezeNet 1.0 (ImageNet, 224x224).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("squeezenet1_0", in_channels=1, resolution=28, num_classes=10)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return SqueezeNet(V1_0, num_classes, in_channels, width_mult, is_small(resolution), dropout)


@register("squeezenet1_1", info=ModelInfo(
    "squeezenet1_1", "squeezenet", (3, 224, 224), 1000, _PAPER + " (v1.1: github.com/forresti/SqueezeNet)",
    published_params=1_235_496, published_macs=349_000_000, min_resolution=16))
def squeezenet1_1(*, num_classes, in_channels, width_mult, resolution, dropout=0.5):
    """SqueezeNet 1.1 (ImageNet, 224x224).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("squeezenet1_1", in_channels=1, resolution=28, num_classes=10)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return SqueezeNet(V1_1, num_classes, in_channels, width_mult, is_small(resolution), dropout)
