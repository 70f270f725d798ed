"""Export from the simulation: the ONNX file carries quantize_'s own scales and is verified
against the torch model it came from; a file below the floor or that its runtime cannot load is
refused and nothing is written."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from effai import train, zoo
from effai.errors import InputError
from effai.profile.latency import onnx_runner
from effai.quantize import (
    Int8StaticConfig,
    MixedPrecisionConfig,
    QATConfig,
    WeightOnlyConfig,
    convert_,
    export_onnx,
    quantize_,
)
from effai.quantize.export import int8_candidates
from effai.quantize.kernels import format_kernel
from effai.quantize.verify import ExportRefused, torch_outputs


@pytest.fixture(scope="module")
def lenet(mnist5k):
    """LeNet-5 trained one epoch on mnist5k (about 97% test accuracy), with its test split."""
    m = zoo.create("lenet5")
    train.fit(m, mnist5k, train.TrainConfig(epochs=1, seed=0, threads=2), progress=False)
    calib = torch.stack([mnist5k.train[i][0] for i in range(256)])
    return mnist5k, m.eval(), calib


def _quantized(kind: str, ds, m, calib):
    m = copy.deepcopy(m)
    if kind in ("minmax", "mse"):
        return quantize_(m, Int8StaticConfig(calibration=calib, method=kind))
    if kind == "qat":  # int8 weights learned with the rounding in the loop, int8 dynamic activations
        q = quantize_(m, QATConfig(fmt="int8", act_bits=8))  # no data: 40 steps of our own, for speed
        opt = torch.optim.Adam(q.parameters(), lr=3e-4)
        x, y = ds.train.tensors
        for i in range(40):
            loss = nn.functional.cross_entropy(q(x[i * 64:(i + 1) * 64]), y[i * 64:(i + 1) * 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in q.named_parameters() if n.endswith("weight"))
        return convert_(q.eval())
    if kind == "mixed":  # INT8 static in the middle, the first conv and the classifier kept FP32
        first, last = "features.0", "classifier.4"
        names = {n for n, _ in m.named_modules()}
        assert {first, last} <= names
        return quantize_(m, Int8StaticConfig(calibration=calib), filter_fn=lambda mod, n: n not in (first, last)
                         and isinstance(mod, (nn.Conv2d, nn.Linear)))
    assert kind == "weight_only"
    return quantize_(m, MixedPrecisionConfig({"classifier.0": "int4", "classifier.4": "fp32"}, default="int8"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["minmax", "mse", "qat", "mixed", "weight_only"])
def test_exported_file_computes_what_torch_simulated(tmp_path, lenet, kind):
    """No calibration data at export; ONNX Runtime agrees with the torch-quantized model on the
    whole test split and its logits are within a few quantization steps."""
    ds, m, calib = lenet
    q = _quantized(kind, ds, m, calib)
    x = ds.test.tensors[0]
    info = export_onnx(q, tmp_path / "q.onnx", x[:1], verify_inputs=x[:64])
    assert info["source"] == "quantize_ simulation" and info["verification"]["passed"]
    run = onnx_runner(info["path"])
    deployed = np.concatenate([run(x[i:i + 1].numpy())[0] for i in range(len(x))])
    # QAT's dynamic activation ranges are per call: one row at a time, as deployed
    simulated = torch_outputs(q, [r.numpy() for r in x.split(1)])
    assert (deployed.argmax(1) == simulated.argmax(1)).mean() >= 0.998
    step = (simulated.max() - simulated.min()) / 255  # one int8 step of the logits' range
    assert np.abs(deployed - simulated).max() <= 3 * step
    kernels = info["kernels"]
    if kind in ("minmax", "mse", "mixed"):  # real int8 kernels, not float ops fed rounded values
        assert kernels["int8_ops"] >= 3 and kernels["ops"].get("QLinearConv", 0) >= 1
        assert any(layer["activation"] == "int8 static" for layer in info["layers"])
    if kind == "mixed":
        assert {layer["name"] for layer in info["layers"]}.isdisjoint({"features.0", "classifier.4"})
    if kind == "weight_only":
        assert kernels["ops"].get("MatMulNBits", 0) == 2  # the int4 and int8 Linears run on the n-bit kernel


def _ort_graph_ops(path) -> dict[str, int]:
    """Every op of ONNX Runtime's optimized graph for the file (after its QDQ fusions)."""
    import collections

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(path) + ".opt.onnx"
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node))


@pytest.mark.slow
def test_residual_model_deploys_on_int8_kernels_only_and_agrees(tmp_path, digits):
    """ResNet-8 (three residual stacks, one with a 1x1 shortcut conv): the simulation rounds the
    residual Adds as QLinearAdd writes them, so ONNX Runtime's graph is all int8 (one
    QuantizeLinear at the input, no float Add, Relu or pooling) and still computes what torch
    simulated, on the whole test split."""
    torch.manual_seed(0)
    m = zoo.create("resnet8", in_channels=1, resolution=8)
    train.fit(m, digits, train.TrainConfig(epochs=3, seed=0, threads=2), progress=False)
    calib = digits.train.tensors[0][:256]
    q = quantize_(copy.deepcopy(m.eval()), Int8StaticConfig(calibration=calib))
    assert [n for n, _ in q.named_modules() if n.endswith("effai_output_quant")] == [
        f"stacks.{i}.relu.effai_output_quant" for i in range(3)]
    x = digits.test.tensors[0]
    info = export_onnx(q, tmp_path / "r8.onnx", x[:1], verify_inputs=x[:64])
    ops = _ort_graph_ops(info["path"])
    assert ops["QLinearAdd"] == 3 and ops["QLinearConv"] == 9 and ops["QLinearGlobalAveragePool"] == 1
    assert ops["QuantizeLinear"] == 1 and not {"Add", "Relu", "GlobalAveragePool", "DequantizeLinear", "Conv"} & set(ops)
    run = onnx_runner(info["path"])
    deployed = np.concatenate([run(x[i:i + 1].numpy())[0] for i in range(len(x))])
    simulated = torch_outputs(q, [x.numpy()])
    assert (deployed.argmax(1) == simulated.argmax(1)).mean() >= 0.998
    assert np.abs(deployed - simulated).max() <= 3 * (simulated.max() - simulated.min()) / 255


def test_int4_linear_runs_on_matmulnbits_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 10)).eval()
    x = torch.randn(16, 256)
    info = export_onnx(m, tmp_path / "int4.onnx", x[:1], dtype="int4", verify_inputs=x)
    assert info["kernels"]["ops"] == {"MatMulNBits": 2}
    assert all("4-bit MatMulNBits, per group of 32" in layer["weights"] for layer in info["layers"])
    assert info["verification"]["sqnr_db"] > 60  # same codes and scales as effai's int4 simulation
    assert info["bytes"] < 0.2 * (256 * 512 + 512 * 10) * 4
    assert format_kernel("int4").kernel.startswith("MatMulNBits")
    assert format_kernel("ternary", "Conv").timing == "timed as fp32, labelled"
    assert format_kernel("fp8_e4m3").timing == "no kernel: not timed"


class _Encoder(nn.Module):
    """A 2-layer nn.TransformerEncoder classifier: 16 tokens x 64 features -> 10 logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16 * 64, 10)

    def forward(self, t):  # (batch, 16, 64)
        return self.head(self.encoder(t.transpose(0, 1)).transpose(0, 1).flatten(1))


def test_gate_keeps_transformer_within_the_floor_or_refuses_it(tmp_path):
    """effai's static INT8 keeps LayerNorm, Softmax and attention in float and passes the gate;
    ONNX Runtime's quantize_static of the float model is refused, naming the worst layers, and
    writes nothing."""
    model = _Encoder().eval()
    calib, held_out = torch.randn(64, 16, 64), torch.randn(24, 16, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_(copy.deepcopy(model), Int8StaticConfig(calibration=calib))
        info = export_onnx(q, tmp_path / "enc_sim.onnx", held_out[:1], verify_inputs=held_out)
    assert info["verification"]["passed"] and info["verification"]["sqnr_db"] >= 20
    # out_proj is read by nn.MultiheadAttention (its .weight), not called: weight-only, float input
    assert {(layer["activation"], "out_proj" in layer["name"]) for layer in info["layers"]} == {
        ("int8 static", False), ("float", True)}
    target = tmp_path / "enc_ort.onnx"
    vnni_default = int8_candidates("onnxruntime", {"avx512_vnni", "avx2"})[0]  # QOperator U8/S8 per channel
    with warnings.catch_warnings(), pytest.raises(ExportRefused, match=r"below the floor.*layers losing most: \S+"):
        warnings.simplefilter("ignore")
        export_onnx(model, target, held_out[:1], dtype="int8", calibration=calib, settings=vnni_default,
                    verify_inputs=held_out)
    assert not target.exists()
    # the tuner's floor is absolute: it never keeps a candidate below 20 dB for being fast
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = export_onnx(model, target, held_out[:1], dtype="int8", calibration=calib, runtime="auto",
                           verify_inputs=held_out)
    chosen = next(c for c in auto["candidates"] if c["chosen"])
    assert chosen["sqnr_db"] >= 20 and auto["verification"]["sqnr_db"] >= 20
    assert any(c["sqnr_db"] is not None and c["sqnr_db"] < 20 for c in auto["candidates"])  # the broken ones


def test_a_file_the_runtime_cannot_load_is_refused_and_not_written(tmp_path, monkeypatch):
    """As with the INVALID_GRAPH QGemm file ORT once wrote for BERT: the export must fail."""
    import onnx

    import effai.quantize.export as ex

    def broken_int8(float_path, out_path, *args, **kwargs):
        m = onnx.load(str(float_path))
        node = next(n for n in m.graph.node if n.op_type == "Gemm")
        node.op_type, node.domain = "QGemm", "com.microsoft"  # float inputs where QGemm wants int8 + scales
        onnx.save(m, str(out_path))
        return out_path

    monkeypatch.setattr(ex, "quantize_onnx_int8", broken_int8)
    m = nn.Sequential(nn.Linear(8, 4)).eval()
    target = tmp_path / "bad.onnx"
    with pytest.raises(ExportRefused, match="onnxruntime cannot load the exported file"):
        export_onnx(m, target, torch.randn(1, 8), dtype="int8", calibration=torch.randn(16, 8))
    assert not target.exists() and not list(tmp_path.iterdir())


def test_export_arguments_for_quantized_models(tmp_path):
    q = quantize_(nn.Sequential(nn.Linear(8, 4)).eval(), WeightOnlyConfig(bits=4))
    with pytest.raises(InputError, match="quantized already"):
        export_onnx(q, tmp_path / "x.onnx", torch.randn(1, 8), dtype="fp16")
    with pytest.raises(InputError, match="min_agreement"):
        export_onnx(q, tmp_path / "x.onnx", torch.randn(1, 8), min_agreement=2)
    with pytest.raises(InputError, match="MSE calibration is effai's own"):
        export_onnx(nn.Linear(8, 4), tmp_path / "x.onnx", torch.randn(1, 8), calibration=torch.randn(4, 8), method="mse")
    assert not list(tmp_path.iterdir())


class _Residual(nn.Module):
    """A stem with ReLU6 and max pooling, an identity-shortcut block whose Add is the module's
    output, and one whose Add feeds a GroupNorm inside the module (that Add stays float)."""

    class Block(nn.Module):
        def __init__(self, norm: bool):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.act = nn.ReLU()
            self.norm = nn.GroupNorm(2, 8) if norm else None

        def forward(self, x):
            y = x + self.conv(x)
            return self.act(y) if self.norm is None else self.norm(y)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(self.Block(False), self.Block(True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_residual_add_is_rounded_as_qlinearadd_writes_it(tmp_path):
    """Rounded by the innermost module returning it (here the ReLU); an Add used inside its module stays float."""
    torch.manual_seed(0)
    m = _Residual().eval()
    x = torch.randn(48, 3, 12, 12)
    q = quantize_(copy.deepcopy(m), Int8StaticConfig(calibration=x[:32]))
    assert [n for n, _ in q.named_modules() if n.endswith("effai_output_quant")] == ["blocks.0.act.effai_output_quant"]
    info = export_onnx(q, tmp_path / "r.onnx", x[:1], verify_inputs=x[32:])
    assert info["verification"]["sqnr_db"] > 40
    ops = _ort_graph_ops(info["path"])
    assert ops["QLinearAdd"] == 1  # the second Add feeds GroupNorm: float
    assert not {"Clip", "Relu", "MaxPool"} & set(ops) and ops["NhwcMaxPool"] == 1  # ReLU6 fused, pooling on int8
    assert ops["GlobalAveragePool"] == 1  # it reads GroupNorm's float output: nothing to run it on int8


class _TwoImages(nn.Module):
    """Two image inputs (a pair to compare), one conv tower each, merged into one classifier."""

    def __init__(self):
        super().__init__()
        self.left = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
        self.right = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(2 * 8 * 6 * 6, 4)

    def forward(self, a, b):
        return self.head(torch.cat([self.left(a), self.right(b)], 1))


@pytest.mark.parametrize("config", [Int8StaticConfig, WeightOnlyConfig])
def test_a_model_with_two_inputs_exports_both(tmp_path, config):
    import onnx

    torch.manual_seed(0)
    m = _TwoImages().eval()
    a, b = torch.randn(40, 1, 8, 8), torch.randn(40, 1, 8, 8)
    cfg = Int8StaticConfig(calibration={"a": a[:32], "b": b[:32]}) if config is Int8StaticConfig else WeightOnlyConfig(8)
    q = quantize_(copy.deepcopy(m), cfg)
    info = export_onnx(q, tmp_path / "two.onnx", (a[:1], b[:1]), verify_inputs=(a[32:], b[32:]))
    assert [i.name for i in onnx.load(info["path"]).graph.input] == ["input", "input1"]
    assert info["verification"]["passed"] and info["verification"]["samples"] == 8
    run = onnx_runner(info["path"])
    deployed = np.concatenate([run(a[i:i + 1].numpy(), b[i:i + 1].numpy())[0] for i in range(32, 40)])
    assert np.allclose(deployed, q(a[32:], b[32:]).detach().numpy(), atol=1e-4)
    if config is Int8StaticConfig:
        assert info["kernels"]["ops"]["QLinearConv"] == 2
        with pytest.raises(InputError, match="same number of rows"):
            quantize_(copy.deepcopy(m), Int8StaticConfig(calibration={"a": a[:3], "b": b[:2]}))
    with pytest.raises(InputError, match="same number of rows"):
        export_onnx(q, tmp_path / "bad.onnx", (a[:1], b[:1]), verify_inputs=(a[:3], b[:2]))


def test_float_model_with_a_batch_of_examples_exports_at_batch_1(tmp_path):
    # A batch of 64 example images fixed the file's batch at 64, and ONNX Runtime refused the
    # calibration rows (batch 1) with a raw INVALID_ARGUMENT error.
    import onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.rand(64, 1, 8, 8)
    info = export_onnx(net, tmp_path / "m.onnx", x, dtype="int8", calibration=x, min_agreement=0.0)
    dims = onnx.load(str(info["path"])).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and info["verification"]["samples"] == 64
