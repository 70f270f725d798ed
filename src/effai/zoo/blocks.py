"""Building blocks shared by the zoo's models.

Each block is a small `nn.Module`; shapes are written as (N, C, H, W) in comments where
they change. Layer names follow torchvision where a torchvision equivalent exists, so a
reader can compare the two side by side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Act = Callable[[], nn.Module] | None


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation (activation optional).

    `padding=None` means "same" for odd kernels at stride 1 (k // 2 per side).

    >>> ConvBNAct(3, 8, 3, stride=2)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 8, 16, 16])
    """

    def __init__(self, cin: int, cout: int, kernel=3, stride=1, groups: int = 1, act: Act = nn.ReLU,
                 bias: bool = False, padding=None, norm: Callable[[int], nn.Module] = nn.BatchNorm2d):
        if padding is None:
            padding = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias), norm(cout)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)
        self.out_channels = cout


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1 block: 3x3 depthwise conv (spatial) then 1x1 pointwise conv (channels).

    Howard et al. 2017, "MobileNets", Fig. 3. Cost drops from k*k*Cin*Cout to k*k*Cin + Cin*Cout
    per output pixel.

    >>> DepthwiseSeparable(8, 16, stride=2)(torch.zeros(1, 8, 32, 32)).shape
    torch.Size([1, 16, 16, 16])
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, act: Act = nn.ReLU6, bias: bool = False,
                 norm=nn.BatchNorm2d):
        super().__init__(
            ConvBNAct(cin, cin, 3, stride, groups=cin, act=act, bias=bias, norm=norm),  # (N,Cin,H/s,W/s)
            ConvBNAct(cin, cout, 1, act=act, bias=bias, norm=norm),  # (N,Cout,H/s,W/s)
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation: global pool -> 1x1 bottleneck -> gate that rescales channels.

    Hu et al. 2018, "Squeeze-and-Excitation Networks". The 1x1 convs carry biases as in the
    reference implementations (Cadene pretrainedmodels, torchvision `SqueezeExcitation`).

    >>> SqueezeExcite(16, 4)(torch.ones(1, 16, 5, 5)).shape
    torch.Size([1, 16, 5, 5])
    """

    def __init__(self, channels: int, squeeze: int, act: Callable[[], nn.Module] = nn.ReLU,
                 gate: Callable[[], nn.Module] = nn.Sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)  # (N,C,1,1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand -> kxk depthwise -> (SE) -> 1x1 linear projection.

    Sandler et al. 2018 ("linear bottleneck": no activation after the projection) and
    Howard et al. 2019 (SE + hardswish). The residual is used when stride 1 and Cin == Cout.

    >>> InvertedResidual(16, 64, 16, se_channels=16, act=nn.Hardswish)(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(self, cin: int, expanded: int, cout: int, kernel: int = 3, stride: int = 1,
                 act: Act = nn.ReLU6, se_channels: int = 0, norm=nn.BatchNorm2d):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act, norm=norm))  # (N,E,H,W)
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act, norm=norm))
        if se_channels:
            layers.append(SqueezeExcite(expanded, se_channels, gate=nn.Hardsigmoid))
        layers.append(ConvBNAct(expanded, cout, 1, act=None, norm=norm))  # linear bottleneck (N,Cout,H/s,W/s)
        self.block = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated.

    Iandola et al. 2016, "SqueezeNet".

    >>> Fire(96, 16, 64, 64)(torch.zeros(1, 96, 54, 54)).shape
    torch.Size([1, 128, 54, 54])
    """

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        s = self.relu(self.squeeze(x))  # (N,S,H,W)
        return torch.cat([self.relu(self.expand1x1(s)), self.relu(self.expand3x3(s))], 1)  # (N,E1+E3,H,W)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    """1x1 conv + BN on the shortcut when the shape changes (ResNet "option B")."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs and an identity (or 1x1) shortcut. He et al. 2016.

    >>> BasicBlock(64, 128, stride=2)(torch.zeros(1, 64, 8, 8)).shape
    torch.Size([1, 128, 4, 4])
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 se_reduction: int | None = None, stride_in_1x1: bool = False):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64 (as torchvision)")
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, planes // se_reduction) if se_reduction else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)
        self.out_channels = planes

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))  # (N,P,H/s,W/s)
        y = self.bn2(self.conv2(y))
        return _add_shortcut(self, y, x)


class Bottleneck(nn.Module):
    """ResNet-50 block: 1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand (x4), + shortcut.

    `width = planes * base_width / 64 * groups` as in torchvision, so ResNeXt-50 32x4d is
    groups=32, base_width=4 (Xie et al. 2017). The stride sits on the 3x3 conv ("ResNet v1.5",
    torchvision) unless `stride_in_1x1` (original Caffe ResNet and the SENet reference).
    `se_reduction` adds Squeeze-and-Excitation before the addition (Hu et al. 2018).

    >>> Bottleneck(64, 64)(torch.zeros(1, 64, 8, 8)).shape
    torch.Size([1, 256, 8, 8])
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 se_reduction: int | None = None, stride_in_1x1: bool = False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        cout = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, width, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, s3, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout, cout // se_reduction) if se_reduction else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)
        self.out_channels = cout

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))  # (N,W,H,W)
        y = self.relu(self.bn2(self.conv2(y)))  # (N,W,H/s,W/s)
        y = self.bn3(self.conv3(y))  # (N,4P,H/s,W/s)
        return _add_shortcut(self, y, x)


def _add_shortcut(block, y, x):
    """The end of both ResNet blocks: SE on the residual branch (when present), then the
    shortcut (identity or the 1x1 downsample) added, then ReLU."""
    if block.se is not None:
        y = block.se(y)
    return block.relu(y + (x if block.downsample is None else block.downsample(x)))


def init_weights(model: nn.Module, conv_mode: str = "fan_out", linear_std: float | None = 0.01) -> None:
    """Reference initialisation: Kaiming-normal convs, BN weight 1 / bias 0, small-normal linears.

    `linear_std=None` keeps PyTorch's default Linear init (what torchvision's ResNet does).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")  # type: ignore[arg-type]  # fan_in | fan_out
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `v` (TF/torchvision rule).

    >>> make_divisible(32 * 0.35), make_divisible(1280 * 1.0)
    (16, 1280)
    """
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def is_small(resolution, threshold: int = 64) -> bool:
    """True when an ImageNet-stem network should switch to its small-input stem.

    >>> is_small(28), is_small(224), is_small([32, 128])
    (True, False, True)
    """
    return min((resolution, resolution) if isinstance(resolution, int) else resolution) < threshold
