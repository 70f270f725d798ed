"""MobileNetV1: a 3x3 stem then 13 depthwise-separable blocks, global pool, linear classifier.

Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861, Table 1. Width multiplier alpha scales every layer's channels
(`int(c * alpha)`, as the Keras reference `keras.applications.MobileNet`); resolution rho is
just the input size. 1.0-224: 4,231,976 parameters (Keras trainable params, 1000 classes),
569 M MACs (paper Table 8).

Small inputs: for resolution < 64 the stem uses stride 1 instead of 2, so that 28x28 inputs
keep a 2x2 map before the global pool instead of shrinking to 1x1 after four stride-2 blocks.
Parameter counts do not change; the default ImageNet configuration is exact.
"""

from __future__ import annotations

from torch import nn

from .blocks import ConvBNAct, DepthwiseSeparable, init_weights, is_small
from .registry import ModelInfo, register

# (output channels, stride) of the 13 depthwise-separable blocks (paper Table 1)
CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier `width_mult` (alpha).

    `act` and `bias` let the MLPerf Tiny VWW reference (ReLU, biased convs) share this file;
    the Keras ImageNet reference uses ReLU6 and bias-free convs before BatchNorm.
    """

    def __init__(self, num_classes=1000, in_channels=3, width_mult=1.0, small_input=False,
                 act=nn.ReLU6, bias=False, norm=nn.BatchNorm2d, conv_init="fan_out"):
        super().__init__()
        c = max(1, int(32 * width_mult))
        layers = [ConvBNAct(in_channels, c, 3, 1 if small_input else 2, act=act, bias=bias, norm=norm)]  # (N,32a,H/2,W/2)
        for cout, stride in CFG:
            cout = max(1, int(cout * width_mult))
            layers.append(DepthwiseSeparable(c, cout, stride, act=act, bias=bias, norm=norm))
            c = cout
        self.features = nn.Sequential(*layers)  # (N,1024a,H/32,W/32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        init_weights(self, conv_init, linear_std=0.01 if conv_init == "fan_out" else None)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("mobilenet_v1", info=ModelInfo(
    "mobilenet_v1", "mobilenet", (3, 224, 224), 1000, "Howard et al. 2017, arXiv:1704.04861",
    published_params=4_231_976, published_macs=569_000_000, min_resolution=8))
def mobilenet_v1(*, num_classes, in_channels, width_mult, resolution):
    """MobileNetV1 alpha-rho (default 1.0-224, ImageNet).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("mobilenet_v1", width_mult=0.25, resolution=28, in_channels=1, num_classes=10)(
    ...     torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    return MobileNetV1(num_classes, in_channels, width_mult, small_input=is_small(resolution))
