"""Small efficient-architecture alternatives for the study, built from the zoo's blocks.

The zoo's ImageNet MobileNets and SqueezeNets cost millions of MACs even at 28x28 and take
minutes per epoch on two CPU cores; the question a study asks is "would a different, efficient
architecture of this size class do better than compressing the base?", so these are
LeNet-sized (about 0.2 M MACs) networks made of the same blocks.
"""

from __future__ import annotations

from torch import nn

from effai.zoo.blocks import ConvBNAct, DepthwiseSeparable, Fire, InvertedResidual


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


class TinyMobileNetV2(nn.Module):
    """MobileNet v2 style: inverted residuals with linear bottlenecks (expansion 4)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            ConvBNAct(in_channels, w, 3, stride=2, act=nn.ReLU6),  # (N,w,H/2,W/2)
            InvertedResidual(w, 4 * w, w),  # residual
            InvertedResidual(w, 4 * w, 2 * w, stride=2),  # (N,2w,H/4,W/4)
            InvertedResidual(2 * w, 8 * w, 2 * w),  # residual
            InvertedResidual(2 * w, 8 * w, 4 * w, stride=2),  # (N,4w,H/8,W/8)
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class TinySqueezeNet(nn.Module):
    """SqueezeNet style: Fire modules (1x1 squeeze, 1x1 + 3x3 expand), a 1x1 conv classifier
    and global pooling instead of fully connected layers. BatchNorm after the stem and each
    Fire module lets it train in a few epochs (the original has none and trains for days)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8):
        super().__init__()
        w = width

        def fire(cin, squeeze, expand):  # (N,2*expand,H,W)
            return nn.Sequential(Fire(cin, squeeze, expand, expand), nn.BatchNorm2d(2 * expand))

        self.features = nn.Sequential(
            ConvBNAct(in_channels, 2 * w, 3, stride=2),  # (N,2w,H/2,W/2)
            fire(2 * w, w // 2, w),
            fire(2 * w, w // 2, 2 * w),  # (N,4w,H/2,W/2)
            nn.MaxPool2d(2),  # (N,4w,H/4,W/4)
            fire(4 * w, w, 2 * w),
            fire(4 * w, w, 4 * w),  # (N,8w,H/4,W/4)
        )
        self.classifier = nn.Sequential(nn.Conv2d(8 * w, num_classes, 1), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.classifier(self.features(x)).flatten(1)


ARCHS = {"mobilenet_tiny": TinyMobileNet, "mobilenetv2_tiny": TinyMobileNetV2, "squeezenet_tiny": TinySqueezeNet}
