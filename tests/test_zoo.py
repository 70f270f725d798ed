"""Acceptance tests for effai.zoo: exact parameter counts, MACs against the papers, shapes, errors.

Sources of the pinned numbers:
- torchvision reference implementations (parameter counts in torchvision's model docs / weights
  metadata): mobilenet_v2, mobilenet_v3_large/small, squeezenet1_0/1_1, resnet18/34/50,
  resnext50_32x4d.
- se_resnet50: Cadene `pretrainedmodels` se_resnet50 (port of the SENet authors' Caffe model,
  reduction 16) = resnet50 + 2,530,992 SE parameters = 28,088,024 (timm legacy_seresnet50 agrees).
- mobilenet_v1 1.0-224: Keras `applications.MobileNet` "Trainable params" with 1000 classes.
- MLPerf Tiny: Keras references in github.com/mlcommons/tiny benchmark/training/* (v0.5 code).
  PyTorch counts trainable tensors; Keras "Total params" also counts BN moving mean/variance.
- lenet5 (our variant, padding 2, 5x5 convs, 120-84-10): 61,706; lenet300_100: 266,610.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import effai.zoo as zoo
from effai.errors import InputError

PARAMS = {
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnext50_32x4d": 25_028_904,
    "se_resnet50": 28_088_024,
    "lenet5": 61_706,
    "lenet300_100": 266_610,
    "resnet8": 78_186,
    "ds_cnn": 23_756,
    "mobilenet_v1_025_vww": 216_322,
    "fc_autoencoder": 267_928,
    "text_transformer": 73_348,  # 2 x (4*64*65 + 2*(64*128) + 128 + 64 + 4*64) + embeddings (64+32)*64 + head 260
}
# Keras model.summary() "Total params" of the MLPerf Tiny references (trainable + BN moving stats)
KERAS_TOTAL = {"resnet8": 78_666, "ds_cnn": 24_908, "mobilenet_v1_025_vww": 221_794, "fc_autoencoder": 269_992}

# (published MACs, relative tolerance, source)
PAPER_MACS = {
    "mobilenet_v1": (569e6, 0.01, "Howard et al. 2017, Table 8"),
    "mobilenet_v2": (300e6, 0.01, "Sandler et al. 2018, Table 4"),
    "resnet8": (12.5e6, 0.01, "MLPerf Tiny ResNet-8"),
    "resnet50": (4.1e9, 0.01, "torchvision ResNet-50 v1.5, 4.09 GFLOPS"),
    "resnet18": (1.8e9, 0.01, "He et al. 2016, Table 1"),
    "squeezenet1_1": (0.35e9, 0.01, "torchvision 0.35 GFLOPS"),
    "se_resnet50": (3.87e9, 0.01, "Hu et al. 2018, Table 2"),
    # Paper's 219 M includes more than conv/linear MACs; conv+linear gives 216.6 M (-1.1%).
    "mobilenet_v3_large": (219e6, 0.015, "Howard et al. 2019, Table 3"),
    "mobilenet_v3_small": (56e6, 0.01, "Howard et al. 2019, Table 3"),
}
# Our exact conv+linear MAC counts at the default configuration (regression pins).
EXACT_MACS = {
    "ds_cnn": 2_656_768, "fc_autoencoder": 264_192, "lenet300_100": 266_200, "lenet5": 416_520,
    "mobilenet_v1": 568_740_352, "mobilenet_v1_025_vww": 7_489_664, "mobilenet_v2": 300_774_272,
    "mobilenet_v3_large": 216_589_760, "mobilenet_v3_small": 56_510_400, "resnet18": 1_814_073_344,
    "resnet34": 3_663_761_408, "resnet50": 4_089_184_256, "resnet8": 12_501_632,
    "resnext50_32x4d": 4_230_479_872, "se_resnet50": 3_860_488_192, "squeezenet1_0": 818_924_576,
    "squeezenet1_1": 349_151_936,
    "text_transformer": 2_359_552,  # hand count 2 x (4*d^2*L + 2*L^2*d + 2*d*ff*L) + head, d 64, L 32, ff 128
}
CLASSIFIERS = [n for n in PARAMS if zoo.info(n).task == "classification"]


def count_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def count_macs(name: str, **opts) -> int:
    """MACs = FLOPs / 2 of conv/linear/matmul, counted on the meta device (no real compute)."""
    with torch.device("meta"):
        m = zoo.create(name, **opts).eval()
        x = torch.zeros((1, *zoo.input_shape(name, **opts)), dtype=getattr(torch, zoo.info(name).input_dtype))
    with FlopCounterMode(display=False) as fc:
        m(x)
    return fc.get_total_flops() // 2


def test_every_model_is_pinned():
    assert sorted(PARAMS) == zoo.names()
    assert sorted(EXACT_MACS) == zoo.names()


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count_exact(name):
    with torch.device("meta"):
        m = zoo.create(name)
    assert count_params(m) == PARAMS[name]
    assert zoo.info(name).published_params == PARAMS[name]


@pytest.mark.parametrize("name", sorted(KERAS_TOTAL))
def test_mlperf_tiny_keras_total(name):
    with torch.device("meta"):
        m = zoo.create(name)
    bn_stats = sum(b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert count_params(m) + bn_stats == KERAS_TOTAL[name]


@pytest.mark.parametrize("name", sorted(EXACT_MACS))
def test_macs(name):
    macs = count_macs(name)
    assert macs == EXACT_MACS[name]
    if name in PAPER_MACS:
        ref, tol, _source = PAPER_MACS[name]
        assert abs(macs - ref) / ref <= tol, (name, macs, ref)


def test_width_and_resolution_scale_macs():
    # MobileNetV1 0.5-160: 76 M MACs (paper Table 7: 1.32 M params, 76 M mult-adds)
    assert abs(count_macs("mobilenet_v1", width_mult=0.5, resolution=160) - 76e6) / 76e6 < 0.01
    with torch.device("meta"):
        m = zoo.create("mobilenet_v1", width_mult=0.5, resolution=160)
    assert abs(count_params(m) - 1.32e6) / 1.32e6 < 0.01


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_forward_default_shape(name):
    mi = zoo.info(name)
    big = (mi.published_macs or 0) > 50e6
    with torch.device("meta" if big else "cpu"), torch.no_grad():  # shapes only for the big nets
        m = zoo.create(name).eval()
        y = m(torch.zeros((1, *mi.input_shape), dtype=getattr(torch, mi.input_dtype)))
    want = (1, mi.num_classes) if mi.task.endswith("classification") else (1, *mi.input_shape)
    assert tuple(y.shape) == want
    if not big:
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_mnist_config(name):
    opts = dict(in_channels=1, num_classes=10, resolution=28)
    m = zoo.create(name, **opts).eval()
    assert zoo.input_shape(name, **opts) == (1, 28, 28)
    with torch.no_grad():
        y = m(torch.randn(2, 1, 28, 28))
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    zoo.check_input(m, (2, 1, 28, 28))


def test_small_input_stem_keeps_params_and_default_stays_imagenet():
    with torch.device("meta"):
        small, big = zoo.create("resnet18", resolution=28), zoo.create("resnet18")
    assert count_params(small) == count_params(big)
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, torch.nn.MaxPool2d)
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, torch.nn.Identity)


def test_effai_arch_roundtrip():
    m = zoo.create("mobilenet_v2", width_mult=0.5, resolution=96, num_classes=7)
    arch = m.effai_arch
    assert arch["name"] == "mobilenet_v2"
    assert arch["options"] == {"num_classes": 7, "in_channels": 3, "width_mult": 0.5, "resolution": 96}
    m2 = zoo.create(arch["name"], **arch["options"])
    assert count_params(m2) == count_params(m)
    assert zoo.create("ds_cnn").effai_arch["options"]["resolution"] == [49, 10]


def test_info():
    mi = zoo.info("mobilenet_v1")
    assert mi.family == "mobilenet" and mi.input_shape == (3, 224, 224) and mi.num_classes == 1000
    assert mi.published_macs == 569_000_000 and mi.task == "classification" and mi.paper
    d = zoo.info("fc_autoencoder").to_dict()
    assert d["task"] == "autoencoder" and d["input_shape"] == [640] and d["num_classes"] is None
    assert {zoo.info(n).family for n in zoo.names()} == {"mobilenet", "resnet", "squeezenet", "lenet",
                                                         "mlperf_tiny", "transformer"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        mi.family = "x"


def test_unknown_name_suggests():
    with pytest.raises(InputError, match="did you mean: .*mobilenet_v2"):
        zoo.create("mobilenet_v22")
    with pytest.raises(InputError, match="resnet18"):
        zoo.info("resnet-18")


@pytest.mark.parametrize("opts, arg", [
    ({"width_mult": 0}, "width_mult=0"),
    ({"width_mult": -1.5}, "width_mult=-1.5"),
    ({"num_classes": 0}, "num_classes=0"),
    ({"in_channels": 0}, "in_channels=0"),
    ({"resolution": 4}, "resolution=4"),
    ({"resolution": "big"}, "resolution='big'"),
    ({"bogus": 1}, "bogus"),
])
def test_invalid_options(opts, arg):
    with pytest.raises(InputError, match=arg):
        zoo.create("resnet18", **opts)


def test_options_not_applicable():
    with pytest.raises(InputError, match="num_classes"):
        zoo.create("fc_autoencoder", num_classes=10)
    with pytest.raises(InputError, match="resolution"):
        zoo.create("fc_autoencoder", resolution=28)


def test_check_input():
    with pytest.raises(InputError, match=r"expected input \(C,H,W\)=\(3,224,224\) but got \(1,28,28\)"):
        zoo.check_input("resnet18", (1, 28, 28))
    zoo.check_input("resnet18", (3, 160, 160))  # adaptive pooling: other sizes are fine
    lenet = zoo.create("lenet300_100")
    zoo.check_input(lenet, (4, 1, 28, 28))
    with pytest.raises(InputError, match="lenet300_100"):
        zoo.check_input(lenet, (1, 32, 32))  # flatten + dense: size is fixed
    zoo.check_input("fc_autoencoder", (8, 640))
    with pytest.raises(InputError, match=r"\(D,\)=\(640\)"):
        zoo.check_input("fc_autoencoder", (8, 128))
    with pytest.raises(InputError):
        zoo.check_input(torch.nn.Linear(2, 2), (1, 2))


def test_register_rejects_duplicates():
    with pytest.raises(ValueError):
        zoo.register("resnet18", info=zoo.info("resnet18"))(lambda **kw: None)
