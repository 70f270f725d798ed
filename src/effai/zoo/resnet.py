"""ResNet-18/34/50, ResNeXt-50 32x4d and SE-ResNet-50.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385;
Xie et al. 2017, "Aggregated Residual Transformations" (ResNeXt), arXiv:1611.05431;
Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507.

ResNet/ResNeXt match torchvision (stride on the 3x3 conv, "v1.5"; fc keeps PyTorch's default
init). SE-ResNet-50 matches the SENet reference as ported by Cadene `pretrainedmodels`
(`se_resnet50`, also timm `legacy_seresnet50`): SE reduction 16 with biased 1x1 convs, stride in
the first 1x1 conv as in the original Caffe models, 28,088,024 parameters.

`width_mult` scales the four stage widths (64, 128, 256, 512). Small inputs: for resolution < 64
the 7x7 stem uses stride 1 and the stem max-pool is dropped (CIFAR-style; parameters unchanged).
"""

from __future__ import annotations

from torch import nn

from .blocks import BasicBlock, Bottleneck, init_weights, is_small
from .registry import ModelInfo, register


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, in_channels=3, width_mult=1.0, small_input=False,
                 groups=1, base_width=64, se_reduction=None, stride_in_1x1=False):
        super().__init__()
        widths = [max(1, int(w * width_mult)) for w in (64, 128, 256, 512)]
        c = widths[0]
        self.conv1 = nn.Conv2d(in_channels, c, 7, 1 if small_input else 2, 3, bias=False)  # (N,64,H/2,W/2)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)  # (N,64,H/4,W/4)
        stages = []
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(c, planes, stride, groups, base_width, se_reduction, stride_in_1x1))
                c = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages  # H/4, H/8, H/16, H/32
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self, linear_std=None)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _register(name, block, layers, params, macs, paper, **kw):
    @register(name, info=ModelInfo(name, "resnet", (3, 224, 224), 1000, paper, published_params=params,
                                   published_macs=macs, min_resolution=8))
    def build(*, num_classes, in_channels, width_mult, resolution):
        return ResNet(block, layers, num_classes, in_channels, width_mult, is_small(resolution), **kw)

    build.__doc__ = f"{name} (ImageNet 224x224 default; see the module docstring)."
    return build


_HE = "He et al. 2016, arXiv:1512.03385"
# MACs: torchvision's reference counts (v1.5) for ResNets; the SENet paper's 3.87 G for SE-ResNet-50
resnet18 = _register("resnet18", BasicBlock, [2, 2, 2, 2], 11_689_512, 1_814_000_000, _HE)
resnet34 = _register("resnet34", BasicBlock, [3, 4, 6, 3], 21_797_672, 3_664_000_000, _HE)
resnet50 = _register("resnet50", Bottleneck, [3, 4, 6, 3], 25_557_032, 4_089_000_000, _HE)
resnext50_32x4d = _register("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], 25_028_904, 4_230_000_000,
                            "Xie et al. 2017, arXiv:1611.05431", groups=32, base_width=4)
se_resnet50 = _register("se_resnet50", Bottleneck, [3, 4, 6, 3], 28_088_024, 3_870_000_000,
                        "Hu et al. 2018, arXiv:1709.01507", se_reduction=16, stride_in_1x1=True)
