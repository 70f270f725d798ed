"""LeNet-5 and LeNet-300-100, the classic MNIST networks.

LeCun et al. 1998, "Gradient-based learning applied to document recognition". LeNet-300-100 is
the fully connected net of that paper (784-300-100-10, 266,610 parameters), the standard
pruning benchmark of Han et al. 2015 ("Learning both Weights and Connections").

Our LeNet-5 is the common modern variant: conv 5x5 (6) -> max-pool 2 -> conv 5x5 (16) ->
max-pool 2 -> 120 -> 84 -> 10 with ReLU. Differences from the 1998 paper, all standard:
ReLU instead of scaled tanh, max- instead of trainable average subsampling, full C3
connectivity, C5 as a Linear(16*5*5, 120) (same weights as the paper's 5x5 conv) and a
Linear output instead of RBF units. The first conv has padding=2, so a 28x28 MNIST image
behaves like the paper's 32x32 padded input. 61,706 parameters.
"""

from __future__ import annotations

from torch import nn

from .registry import ModelInfo, register


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, width_mult=1.0):
        super().__init__()
        c1, c2 = max(1, int(6 * width_mult)), max(1, int(16 * width_mult))
        f1, f2 = max(1, int(120 * width_mult)), max(1, int(84 * width_mult))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,6,14,14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,16,5,5)
            nn.AdaptiveAvgPool2d(5),  # a no-op at 28x28; lets other sizes keep the 400-feature C5
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 25, f1), nn.ReLU(inplace=True),
            nn.Linear(f1, f2), nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class LeNet300100(nn.Module):
    def __init__(self, num_classes=10, in_features=784, width_mult=1.0):
        super().__init__()
        h1, h2 = max(1, int(300 * width_mult)), max(1, int(100 * width_mult))
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N,784)
            nn.Linear(in_features, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x):
        return self.classifier(x)


_PAPER = "LeCun et al. 1998, Proc. IEEE 86(11)"


@register("lenet5", info=ModelInfo("lenet5", "lenet", (1, 28, 28), 10, _PAPER, published_params=61_706,
                                   published_macs=416_520, min_resolution=12))
def lenet5(*, num_classes, in_channels, width_mult, resolution):
    """LeNet-5 for 1x28x28 inputs (padding 2 on the first conv).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("lenet5")(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    return LeNet5(num_classes, in_channels, width_mult)


@register("lenet300_100", info=ModelInfo("lenet300_100", "lenet", (1, 28, 28), 10, _PAPER,
                                         published_params=266_610, published_macs=266_200, fixed_input=True))
def lenet300_100(*, num_classes, in_channels, width_mult, resolution):
    """LeNet-300-100: flattens its (C, H, W) input, so the input size is fixed at creation.

    >>> import torch
    >>> from effai.zoo import create
    >>> create("lenet300_100")(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    return LeNet300100(num_classes, in_channels * h * w, width_mult)
