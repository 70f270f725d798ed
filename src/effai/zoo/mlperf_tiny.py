"""The four MLPerf Tiny v0.5+ reference models, ported from the Keras code in
github.com/mlcommons/tiny, `benchmark/training/*` (Banbury et al. 2021, "MLPerf Tiny Benchmark",
arXiv:2106.07597).

Faithful to the Keras references: convs and dense layers keep their biases even before
BatchNorm, BatchNorm uses Keras' eps=1e-3 / momentum 0.99 (PyTorch momentum 0.01), ReLU (not
ReLU6), he_normal (fan-in Kaiming) conv init. Parameter counts: PyTorch counts only trainable
tensors, i.e. Keras' "Trainable params"; Keras' "Total params" adds BatchNorm's moving mean and
variance (2 per BN channel). Both are pinned in tests/test_zoo.py:

====================  =========  ===========  ======  ================================================
model                 trainable  Keras total  MACs    reference file (benchmark/training/...)
====================  =========  ===========  ======  ================================================
resnet8               78,186     78,666       12.50M  image_classification/keras_model.py (16 filters)
ds_cnn                23,756     24,908       2.66M   keyword_spotting/keras_model.py ('ds_cnn')
mobilenet_v1_025_vww  216,322    221,794      7.49M   visual_wake_words/vww_model.py
fc_autoencoder        267,928    269,992      0.26M   anomaly_detection/keras_model.py (640 inputs)
====================  =========  ===========  ======  ================================================
"""

from __future__ import annotations

from functools import partial

from torch import nn

from .blocks import ConvBNAct, DepthwiseSeparable, init_weights, is_small
from .mobilenet_v1 import MobileNetV1
from .registry import ModelInfo, register

KerasBN2d = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
KerasBN1d = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)
_TINY = "Banbury et al. 2021, MLPerf Tiny, arXiv:2106.07597"


class ResidualStack(nn.Module):
    """One ResNet-8 stack: two 3x3 convs, shortcut through a biased 1x1 conv (no BN) when striding."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride, bias=True, norm=KerasBN2d)
        self.conv2 = ConvBNAct(cout, cout, 3, bias=True, act=None, norm=KerasBN2d)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv2(self.conv1(x)))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification (CIFAR-10): stem + 3 residual stacks (16, 32, 64 filters)."""

    def __init__(self, num_classes=10, in_channels=3, width_mult=1.0):
        super().__init__()
        c1, c2, c3 = (max(1, int(f * width_mult)) for f in (16, 32, 64))
        self.stem = ConvBNAct(in_channels, c1, 3, bias=True, norm=KerasBN2d)  # (N,16,32,32)
        self.stacks = nn.Sequential(ResidualStack(c1, c1, 1), ResidualStack(c1, c2, 2),  # (N,32,16,16)
                                    ResidualStack(c2, c3, 2))  # (N,64,8,8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c3, num_classes)
        init_weights(self, "fan_in", linear_std=None)

    def forward(self, x):
        return self.fc(self.pool(self.stacks(self.stem(x))).flatten(1))


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting: 10x4 conv (stride 2) + 4 depthwise-separable blocks, 64 channels.

    Input is 49 frames x 10 MFCCs (30 ms windows, 20 ms hop over 1 s of 16 kHz audio).
    Keras 'same' padding of the 10x4/stride-2 stem is asymmetric; symmetric padding (5, 1) gives
    the same 25x5 output. The reference pools over the first 24 of the 25 rows
    (AveragePooling2D((24, 5))); we average all rows (adaptive pooling, any input size).
    """

    def __init__(self, num_classes=12, in_channels=1, width_mult=1.0):
        super().__init__()
        c = max(1, int(64 * width_mult))
        self.features = nn.Sequential(
            ConvBNAct(in_channels, c, (10, 4), 2, bias=True, padding=(5, 1), norm=KerasBN2d),  # (N,64,25,5)
            nn.Dropout(0.2),
            *[DepthwiseSeparable(c, c, 1, act=nn.ReLU, bias=True, norm=KerasBN2d) for _ in range(4)],
            nn.Dropout(0.4),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self, "fan_in", linear_std=None)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class FCAutoencoder(nn.Module):
    """MLPerf Tiny anomaly detection (ToyADMOS): 640-128x4-8-128x4-640 dense autoencoder.

    Every hidden Dense is followed by BatchNorm and ReLU; the output layer is linear. The input
    is 5 frames x 128 log-mel bins; the anomaly score is the reconstruction error.
    """

    def __init__(self, input_dim=640, width_mult=1.0):
        super().__init__()
        h, b = max(1, int(128 * width_mult)), max(1, int(8 * width_mult))
        dims = [input_dim, h, h, h, h, b, h, h, h, h]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), KerasBN1d(d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(h, input_dim))  # reconstruction (N,640)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.flatten(1))


@register("resnet8", info=ModelInfo("resnet8", "mlperf_tiny", (3, 32, 32), 10, _TINY,
                                    published_params=78_186, published_macs=12_500_000, min_resolution=4))
def resnet8(*, num_classes, in_channels, width_mult, resolution):
    """MLPerf Tiny ResNet-8 for CIFAR-10 (later MLPerf Tiny training scripts try 26 filters:
    width_mult=1.625).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("resnet8")(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """
    return ResNet8(num_classes, in_channels, width_mult)


@register("ds_cnn", info=ModelInfo("ds_cnn", "mlperf_tiny", (1, 49, 10), 12, _TINY + "; Zhang et al. 2017, "
                                   "Hello Edge, arXiv:1711.07128", published_params=23_756,
                                   published_macs=2_656_768, min_resolution=2))
def ds_cnn(*, num_classes, in_channels, width_mult, resolution):
    """MLPerf Tiny DS-CNN keyword spotter (12 classes: 10 words, silence, unknown).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("ds_cnn")(torch.zeros(1, 1, 49, 10)).shape
    torch.Size([1, 12])
    """
    return DSCNN(num_classes, in_channels, width_mult)


@register("mobilenet_v1_025_vww", info=ModelInfo(
    "mobilenet_v1_025_vww", "mlperf_tiny", (3, 96, 96), 2, _TINY + "; Chowdhery et al. 2019, Visual Wake "
    "Words, arXiv:1906.05721", published_params=216_322, published_macs=7_489_664, width_mult=0.25,
    min_resolution=8))
def mobilenet_v1_025_vww(*, num_classes, in_channels, width_mult, resolution):
    """MLPerf Tiny Visual Wake Words: MobileNetV1 alpha=0.25 on 96x96 RGB, person / no person.

    Unlike Keras' ImageNet MobileNet it uses ReLU and biased convs (as the reference
    `vww_model.py`). `width_mult` is alpha itself (default 0.25). Resolution < 64 uses a stride-1 stem.

    >>> import torch
    >>> from effai.zoo import create
    >>> create("mobilenet_v1_025_vww")(torch.zeros(1, 3, 96, 96)).shape
    torch.Size([1, 2])
    """
    return MobileNetV1(num_classes, in_channels, width_mult, is_small(resolution), act=nn.ReLU, bias=True,
                       norm=KerasBN2d, conv_init="fan_in")


@register("fc_autoencoder", info=ModelInfo("fc_autoencoder", "mlperf_tiny", (640,), None, _TINY + "; Koizumi "
                                           "et al. 2020, DCASE 2020 Task 2 baseline", published_params=267_928,
                                           published_macs=264_192, task="autoencoder", fixed_input=True))
def fc_autoencoder(*, num_classes, in_channels, width_mult, resolution):
    """MLPerf Tiny anomaly-detection autoencoder; `in_channels` is the input vector length (640).

    >>> import torch
    >>> from effai.zoo import create
    >>> create("fc_autoencoder")(torch.zeros(2, 640)).shape
    torch.Size([2, 640])
    """
    return FCAutoencoder(in_channels, width_mult)
