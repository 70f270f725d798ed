"""quantize_: every config, real storage sizes, calibration, BN folding, QAT, mixed precision, ONNX."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import effai.numerics as nx
from effai import data, train
from effai.errors import InputError
from effai.quantize import (
    BFloat16Config,
    BinaryConfig,
    Float16Config,
    FP4Config,
    FP8Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    QATConfig,
    QuantLayer,
    TernaryConfig,
    WeightOnlyConfig,
    choose,
    export_onnx,
    fold_bn_,
    int8_candidates,
    ort_int8_settings,
    quantize_,
    register,
    save,
    sensitivity,
)


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


@pytest.fixture(scope="module")
def trained():
    ds = data.load("mnist5k", seed=0)
    m = _cnn()
    train.fit(m, ds, train.TrainConfig(epochs=1, seed=0, threads=2), progress=False)
    m.eval()
    test = torch.utils.data.DataLoader(ds.test, batch_size=500)
    calib = torch.stack([ds.train[i][0] for i in range(128)])
    return ds, m, test, calib


def _acc(m, loader):
    return train.score(m, loader).accuracy


# ------------------------------------------------------------------ memory claims on real files
def test_memory_claims_on_real_files(tmp_path):
    torch.manual_seed(0)
    base = nn.Sequential(*[nn.Linear(512, 512) for _ in range(4)])
    sizes = {"fp32": save(base, tmp_path / "fp32.pt")}
    for name, cfg in [("fp16", Float16Config()), ("int8", WeightOnlyConfig(bits=8)), ("int4", WeightOnlyConfig(bits=4)),
                      ("fp8", FP8Config()), ("ternary", TernaryConfig()), ("binary", BinaryConfig(skip_first_last=False))]:
        m = quantize_(copy.deepcopy(base), cfg)
        sizes[name] = save(m, tmp_path / f"{name}.pt")
        assert (tmp_path / f"{name}.pt").stat().st_size == sizes[name]
    r = {k: v / sizes["fp32"] for k, v in sizes.items()}
    assert 0.48 < r["fp16"] < 0.52  # the seed: FP16 needs half the memory of FP32
    assert 0.24 < r["int8"] < 0.27  # 25% plus scales and fp32 biases
    assert 0.12 < r["int4"] < 0.145  # 12.5% plus scales
    assert 0.24 < r["fp8"] < 0.27
    assert 0.06 < r["ternary"] < 0.08 and 0.03 < r["binary"] < 0.05


# ------------------------------------------------------------------ accuracy of every config
def test_every_config_runs_and_int8_ptq_is_close(trained):
    ds, m, test, calib = trained
    base = _acc(m, test)
    assert base > 0.8
    accs = {}
    for cfg in [Float16Config(), BFloat16Config(), FP8Config(), FP8Config(fmt="fp8_e5m2", activations=True), FP4Config(),
                Int8DynamicConfig(), WeightOnlyConfig(bits=4, group_size=16), TernaryConfig(), BinaryConfig()]:
        q = copy.deepcopy(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_(q, cfg)
        assert any(isinstance(x, QuantLayer) for x in q.modules())
        accs[repr(cfg)] = _acc(q, test)
    assert accs[repr(Float16Config())] >= base - 0.01
    assert accs[repr(Int8DynamicConfig())] >= base - 0.01
    for method in ("minmax", "percentile", "entropy", "mse"):
        q = quantize_(copy.deepcopy(m), Int8StaticConfig(calibration=calib, method=method))
        assert not any(isinstance(x, nn.BatchNorm2d) for x in q.modules())  # folded
        assert _acc(q, test) >= base - 0.01, method


def test_fp8_weights_are_ml_dtypes_values():
    lin = nn.Linear(16, 4)
    w = lin.weight.detach().numpy().copy()
    q = quantize_(nn.Sequential(lin), FP8Config(scaled=False))[0]
    np.testing.assert_array_equal(q.dequantized_weight().numpy(), nx.cast(w, "fp8_e4m3", saturate=True))
    assert q.w_codes.dtype == torch.float8_e4m3fn


def test_fold_bn_matches_unfolded():
    m = _cnn().eval()
    for bn in (m[1], m[5]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 1, 28, 28)
    y = m(x)
    assert fold_bn_(m) == [("0", "1"), ("4", "5")]
    torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ QAT
def test_qat_trains_and_freezes(trained):
    ds, m, test, _ = trained
    small = data.load("synthetic", n=256, shape=(1, 28, 28), num_classes=10)
    q = quantize_(copy.deepcopy(m), QATConfig(fmt="int4", data=small, train=train.TrainConfig(epochs=1, lr=1e-4, threads=2)))
    layers = [x for x in q.modules() if isinstance(x, QuantLayer)]
    assert layers and all(not x.qat and x.w_codes.dtype == torch.uint8 for x in layers)
    assert 0 <= _acc(q, test) <= 1
    prepared = quantize_(copy.deepcopy(m), QATConfig(fmt="ternary"))
    loss = prepared(torch.randn(2, 1, 28, 28)).sum()
    loss.backward()  # straight-through: gradients reach the float master weights
    assert all(x.weight.grad is not None for x in prepared.modules() if isinstance(x, QuantLayer))


# ------------------------------------------------------------------ mixed precision
def test_mixed_precision_under_budget(trained):
    _, m, test, calib = trained
    table = sensitivity(m, calib[:64], loader=None, formats=("int8", "int4", "int2"))
    assert {r.fmt for r in table} == {"int8", "int4", "int2"}
    assert all(r.sqnr_db > 0 for r in table if r.fmt == "int8")
    params = sum(r.params for r in table if r.fmt == "int8")
    cfg, info = choose(m, table, budget_bytes=params * 0.6)
    assert info["cost"] <= params * 0.6
    q = quantize_(copy.deepcopy(m), cfg)
    assert _acc(q, test) > 0.5
    cfg2, info2 = choose(m, table, budget_bops=sum(r.macs for r in table if r.fmt == "int8") * 8 * 8)
    assert set(cfg2.layer_formats) == {r.layer for r in table}
    with pytest.raises(InputError, match="budget"):
        choose(m, table, budget_bytes=10)


# ------------------------------------------------------------------ ONNX export
def test_export_onnx_int8_and_fp16_run_in_ort(tmp_path, trained):
    import onnxruntime as ort

    _, m, _, calib = trained
    x = calib[:8]
    with torch.no_grad():
        ref = m(x).numpy()
    sizes = {}
    for dtype in ("fp32", "int8", "fp16"):
        info = export_onnx(copy.deepcopy(m), tmp_path / f"{dtype}.onnx", x[:1], dtype, calibration=calib)
        sizes[dtype] = info["bytes"]
        sess = ort.InferenceSession(info["path"], providers=["CPUExecutionProvider"])
        out = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1].numpy()})[0] for i in range(8)])
        assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.75
        assert nx.sqnr_db(ref, out) > (15 if dtype == "int8" else 40)
    assert sizes["int8"] < 0.4 * sizes["fp32"] and sizes["fp16"] < 0.6 * sizes["fp32"]


def test_export_for_openvino_runs_int8_in_openvino(tmp_path, trained):
    import onnx

    from effai.profile import onnx_runner

    _, m, _, calib = trained
    x = calib[:8]
    with torch.no_grad():
        ref = m(x).numpy()
    info = export_onnx(copy.deepcopy(m), tmp_path / "ov.onnx", x[:1], "int8", calibration=calib, runtime="openvino")
    assert info["runtime"] == "openvino" and info["settings"]["quant_format"] == "QDQ" and info["candidates"] is None
    g = onnx.load(info["path"]).graph
    int8_weights = [t for t in g.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 2  # both convolutions store INT8 weights
    run = onnx_runner(info["path"], "openvino")
    out = np.concatenate([run(x[i:i + 1].numpy())[0] for i in range(8)])
    assert nx.sqnr_db(ref, out) > 15 and (out.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_auto_runtime_keeps_the_fastest_accurate_candidate(tmp_path, trained):
    _, m, _, calib = trained
    info = export_onnx(copy.deepcopy(m), tmp_path / "auto.onnx", calib[:1], "int8", calibration=calib,
                       runtime="auto", max_sqnr_loss_db=1.0)
    rows = info["candidates"]
    assert {r["runtime"] for r in rows} == {"onnxruntime", "openvino"}
    assert len(rows) == len(int8_candidates("onnxruntime")) + len(int8_candidates("openvino"))
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["runtime"] == info["runtime"]
    from effai.quantize.export import settings_label

    default = int8_candidates("onnxruntime")[0]  # the CPU-chosen settings are the accuracy reference
    assert (rows[0]["runtime"], rows[0]["settings"]) == ("onnxruntime", settings_label(default))
    assert all(r["error"] is None for r in rows)  # a small CNN runs on every candidate
    # the floor is absolute (>= 20 dB), and within 1 dB of the CPU-chosen default where that clears it
    ref = rows[0]["sqnr_db"] if rows[0]["sqnr_db"] >= 20 else max(r["sqnr_db"] for r in rows)
    eligible = [r for r in rows if r["sqnr_db"] >= max(20.0, ref - 1.0)]
    assert chosen[0] in eligible and chosen[0]["latency_ms"] == min(r["latency_ms"] for r in eligible)
    assert all(r["latency_ms"] is None for r in rows if r not in eligible)  # below the floor: not even timed
    assert info["bytes"] == chosen[0]["bytes"]  # the file written is the chosen candidate
    # a tolerance of 0 dB keeps only candidates at least as accurate as the CPU-chosen default
    strict = export_onnx(copy.deepcopy(m), tmp_path / "s.onnx", calib[:1], "int8", calibration=calib,
                         runtime="onnxruntime", tune=True, max_sqnr_loss_db=0.0)
    picked = next(r for r in strict["candidates"] if r["chosen"])
    assert picked["sqnr_db"] >= strict["candidates"][0]["sqnr_db"] >= 20


def test_a_candidate_that_cannot_run_is_recorded_not_fatal(tmp_path, trained, monkeypatch):
    """A runtime that cannot run one candidate (an op it lacks) leaves that candidate out with
    the reason; the others are still timed and one is chosen."""
    import effai.profile.latency as lat

    real = lat.onnx_runner

    def flaky(path, runtime="onnxruntime", threads=1):
        if runtime == "openvino" and "candidate" in str(path):
            raise RuntimeError("Model wasn't fully converted.\nNo conversion rule found for operations: com.microsoft.QGemm")
        return real(path, runtime, threads)

    monkeypatch.setattr(lat, "onnx_runner", flaky)
    _, m, _, calib = trained
    info = export_onnx(copy.deepcopy(m), tmp_path / "a.onnx", calib[:1], "int8", calibration=calib, runtime="auto")
    failed = [r for r in info["candidates"] if r["error"]]
    assert [r["runtime"] for r in failed] == ["openvino"] and "com.microsoft.QGemm" in failed[0]["error"]
    assert not failed[0]["chosen"] and info["runtime"] == "onnxruntime" and (tmp_path / "a.onnx").exists()


def test_export_rejects_bad_runtime_arguments(tmp_path, trained):
    _, m, _, calib = trained
    with pytest.raises(InputError, match="runtime: expected one of onnxruntime, openvino or 'auto'"):
        export_onnx(m, tmp_path / "x.onnx", calib[:1], "int8", calibration=calib, runtime="tflite")
    with pytest.raises(InputError, match="runtime='auto'"):
        export_onnx(m, tmp_path / "x.onnx", calib[:1], "fp16", runtime="auto")
    with pytest.raises(InputError, match="max_sqnr_loss_db >= 0"):
        export_onnx(m, tmp_path / "x.onnx", calib[:1], "int8", calibration=calib, tune=True, max_sqnr_loss_db=-1)
    assert not (tmp_path / "x.onnx").exists()


def test_int8_candidates_follow_cpu_flags():
    vnni = int8_candidates("onnxruntime", {"avx512_vnni", "avx2"})
    assert vnni[0] == ort_int8_settings({"avx512_vnni", "avx2"})
    assert {(s["quant_format"], s["per_channel"]) for s in vnni} == {("QOperator", True), ("QOperator", False), ("QDQ", True)}
    assert all(s["reduce_range"] for s in int8_candidates("onnxruntime", {"avx2"}))
    assert all(s["quant_format"] == "QDQ" for s in int8_candidates("onnxruntime", {"asimddp"}))
    with pytest.raises(InputError):
        int8_candidates("coreml")


def test_ort_settings_follow_cpu_flags():
    assert ort_int8_settings({"avx512_vnni", "avx2"})["reduce_range"] is False
    assert ort_int8_settings({"avx2", "fma"})["reduce_range"] is True
    assert ort_int8_settings(set())["quant_format"] == "QDQ"


# ------------------------------------------------------------------ registry and bad input
def test_registry_accepts_new_config():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class HalveConfig:
        pass

    @register(HalveConfig)
    def _halve(model, cfg, targets):
        for _, mod in targets:
            mod.weight.data.mul_(0.5)
        return model

    lin = nn.Linear(2, 2)
    w = lin.weight.detach().clone()
    quantize_(nn.Sequential(lin), HalveConfig())
    torch.testing.assert_close(lin.weight.detach(), w * 0.5)
    with pytest.raises(InputError, match="no quantization handler"):
        quantize_(nn.Linear(2, 2), object())


def test_unsupported_layer_named_and_left_float():
    m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=r"layer '0' \(Embedding\).*left in float"):
        quantize_(m, WeightOnlyConfig(bits=4))
    assert isinstance(m[0], nn.Embedding) and isinstance(m[1], QuantLayer)
    m2 = nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.Flatten())
    with pytest.warns(UserWarning, match="ConvTranspose2d"), \
            pytest.raises(InputError, match=r"no supported layer among the 1 chosen \(ConvTranspose2d\)"):
        quantize_(m2, Float16Config())


def test_quantizing_nothing_is_an_error_saying_why():
    """A model quantize_ cannot touch must not come back unchanged under a quantized name."""
    from effai.quantize import NothingToQuantize

    scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(NothingToQuantize, match="TorchScript"), pytest.warns(UserWarning, match="RecursiveScriptModule"):
        quantize_(scripted, Int8StaticConfig(calibration=torch.randn(8, 4)))
    with pytest.raises(InputError, match="no layer with a weight"):
        quantize_(nn.Sequential(nn.ReLU(), nn.MaxPool1d(2)), WeightOnlyConfig(bits=4))
    with pytest.raises(InputError, match="filter_fn matched no layer"):
        quantize_(nn.Sequential(nn.Linear(4, 2)), WeightOnlyConfig(), filter_fn=lambda m, n: n == "fc")
    done = quantize_(nn.Sequential(nn.Linear(4, 2)), WeightOnlyConfig())
    with pytest.raises(InputError, match="quantized already"):
        quantize_(done, WeightOnlyConfig())


def test_nan_or_inf_weights_named():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    with pytest.raises(InputError, match=r"'1\.weight' contains NaN"):
        quantize_(m, WeightOnlyConfig())
    with torch.no_grad():
        m[1].weight[0, 0] = float("inf")
    with pytest.raises(InputError, match=r"'1\.weight' contains Inf"):
        quantize_(m, Int8DynamicConfig())


def test_empty_calibration_rejected():
    m = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(InputError, match="empty"):
        quantize_(m, Int8StaticConfig(calibration=torch.zeros(0, 4)))
    with pytest.raises(InputError, match="empty"):
        quantize_(m, Int8StaticConfig(calibration=[]))
    empty_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 4)), batch_size=4)
    with pytest.raises(InputError, match="empty"):
        quantize_(m, Int8StaticConfig(calibration=empty_loader))


def test_config_validation_names_argument():
    with pytest.raises(InputError, match="WeightOnlyConfig.bits"):
        WeightOnlyConfig(bits=3)
    with pytest.raises(InputError, match="method"):
        Int8StaticConfig(calibration=torch.zeros(1, 2), method="kl")
    with pytest.raises(InputError, match="calibration is required"):
        Int8StaticConfig()
