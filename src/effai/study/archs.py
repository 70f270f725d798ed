"""Small efficient-architecture alternatives for the study, built from the zoo's blocks.

The zoo's ImageNet MobileNets and SqueezeNets cost millions of MACs even at 28x28 and take
minutes per epoch on two CPU cores; the question a study asks is "would a different, efficient
architecture of this size class do better than compressing the base?", so these are
LeNet-sized (about 0.2 M MACs) networks made of the same blocks.
"""

from __future__ import annotations

from torch import nn

from effai.zoo.blocks import ConvBNAct, DepthwiseSeparable


class TinyMobileNet(nn.Module):
    """MobileNet v1 style: a strided 3x3 stem, then depthwise-separable blocks."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            ConvBNAct(in_channels, w, 3, stride=2),  # (N,w,H/2,W/2)
            DepthwiseSeparable(w, 2 * w),  # (N,2w,H/2,W/2)
            DepthwiseSeparable(2 * w, 4 * w, stride=2),  # (N,4w,H/4,W/4)
            DepthwiseSeparable(4 * w, 4 * w),
            DepthwiseSeparable(4 * w, 8 * w, stride=2),  # (N,8w,H/8,W/8)
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


ARCHS = {"mobilenet_tiny": TinyMobileNet}
