"""effai.profile against hand-computed counts, byte counts and the zoo's published numbers."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import effai
from effai.errors import InputError
from effai.profile import measure_latency, profile, weight_bytes


def prof(model, shape, **kw):
    return profile(model, input_shape=shape, latency=False, **kw)


def only(p, typ):
    rows = [lp for lp in p.layers if lp.type == typ]
    assert len(rows) == 1, [(lp.name, lp.type) for lp in p.layers]
    return rows[0]


# ---------------------------------------------------------------- MACs by hand
def test_conv():
    # out 1x16x32x32 = 16384 values, each 3 in-channels x 3x3 = 27 MACs; bias adds 16384 FLOPs
    p = prof(nn.Conv2d(3, 16, 3, padding=1), (1, 3, 32, 32))
    assert p.total.macs == 16384 * 27 == 442_368
    assert p.total.flops == 2 * 442_368
    assert p.total.elementwise_flops == 16384
    assert p.total.params == 16 * 27 + 16
    assert p.layers[0].output_shape == [1, 16, 32, 32]


def test_depthwise_conv():
    # groups = channels: each output sees 1 channel x 3x3 = 9 MACs
    p = prof(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), (2, 16, 8, 8))
    assert p.total.macs == 2 * 16 * 8 * 8 * 9 == 18_432
    assert p.total.params == 16 * 9


def test_grouped_conv():
    # 4 groups: each output sees 16/4 = 4 channels x 3x3 = 36 MACs; 32x8x8 outputs
    p = prof(nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), (1, 16, 8, 8))
    assert p.total.macs == 32 * 64 * 36 == 73_728
    assert p.total.params == 32 * 4 * 9


def test_transposed_conv():
    # every input value (8x5x5) is scattered into Cout/groups = 4 channels x 4x4 kernel
    p = prof(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), (1, 8, 5, 5))
    assert p.total.macs == 8 * 25 * 4 * 16 == 12_800
    assert p.layers[0].output_shape == [1, 4, 10, 10]
    assert p.total.params == 8 * 4 * 16 + 4
    # grouped transposed: weight (Cin, Cout/g, k, k) = (4, 3, 3, 3)
    p = prof(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, bias=False), (1, 4, 5, 5))
    assert p.total.macs == 4 * 25 * 3 * 9 == 2_700


def test_linear():
    p = prof(nn.Linear(100, 50), (8, 100))
    assert p.total.macs == 8 * 100 * 50 == 40_000
    assert p.total.flops == 80_000
    assert p.total.elementwise_flops == 8 * 50  # the bias
    assert p.total.params == 5050
    assert only(p, "Linear").output_shape == [8, 50]


class MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(5, 5, bias=False)  # 2*4 rows x 5x5 = 200 MACs

    def forward(self, x):  # (2, 4, 5) @ (2, 5, 4) -> (2, 4, 4): 2*4*4 outputs x 5 MACs
        return self.proj(x) @ x.transpose(-1, -2)


def test_matmul_in_a_functional_call():
    p = prof(MatMul(), (2, 4, 5))
    assert p.total.macs == 200 + 2 * 4 * 4 * 5 == 360
    row = only(p, "bmm")  # a functional op in a container gets its own row
    assert (row.name, row.macs, row.output_shape) == ("bmm", 160, [2, 4, 4])
    assert prof(MatMul().proj, (3, 5)).layers[0].name == "Linear"  # a bare leaf is one row


class Attention(nn.Module):
    def forward(self, q):
        k = q.new_ones(q.shape[0], q.shape[1], 10, q.shape[3])
        v = q.new_ones(q.shape[0], q.shape[1], 10, 4)
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_sdpa():
    # q (1, 2, 6, 8), k (1, 2, 10, 8), v (1, 2, 10, 4): QK^T 2*6*10*8 + AV 2*6*10*4
    p = prof(Attention(), (1, 2, 6, 8))
    assert p.total.macs == 2 * 6 * 10 * 8 + 2 * 6 * 10 * 4 == 1_440
    assert not p.uncounted


def test_attention_matches_torch_flop_counter_where_it_counts():
    # FlopCounterMode has no formula for the CPU flash-attention kernel: it reports 0 here.
    from torch.utils.flop_counter import FlopCounterMode

    q = torch.randn(2, 4, 16, 8)
    with FlopCounterMode(display=False) as fc:
        F.scaled_dot_product_attention(q, q, q)
    p = profile(Attention(), example_inputs=(torch.randn(2, 4, 16, 8),), latency=False)
    assert p.total.macs == 2 * 4 * 16 * 10 * 8 + 2 * 4 * 16 * 10 * 4
    assert fc.get_total_flops() in (0, 2 * 2 * 4 * 16 * 16 * 8 * 2)  # 0 on CPU in torch 2.13


def test_shared_weights_counted_once_but_run_twice():
    lin = nn.Linear(10, 10)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    p = prof(m, (1, 10))
    assert p.total.params == 110
    assert p.total.macs == 2 * 100
    assert sum(lp.params for lp in p.layers) == 110
    assert p.total.weight_bytes == 110 * 4


def test_tied_parameter_across_modules():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8, bias=False)
            self.b = nn.Linear(8, 8, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    p = prof(Tied(), (1, 8))
    assert p.total.params == 64
    assert sum(lp.params for lp in p.layers) == 64


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return self.fc(torch.fft.rfft(x).abs()[..., :16].repeat(1, 2)[..., :16])


def test_uncounted_ops_are_named_with_their_layer():
    p = prof(Spectral(), (1, 16))
    assert {"layer": "_fft_r2c", "op": "_fft_r2c", "calls": 1} in p.uncounted
    assert p.total.macs == 16 * 16  # the rest is still counted
    assert p.to_dict()["uncounted"]


def test_elementwise_and_pooling_reported_separately():
    m = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    p = prof(m, (1, 1, 4, 4))
    # conv 32 MACs; BN 2 FLOPs x 32; ReLU 32; max-pool 8 outputs x 4 comparisons
    assert p.total.macs == 32
    assert p.total.elementwise_flops == 64 + 32 + 32
    assert p.total.flops == 64 and p.total.flops_all == 64 + 128


# ---------------------------------------------------------------- memory
class Branchy(nn.Module):
    """x -> a -> b -> c, and c + a: the skip keeps a alive while b and c run."""

    def __init__(self, skip=True):
        super().__init__()
        self.skip = skip
        self.a = nn.Conv2d(4, 8, 1, bias=False)
        self.b = nn.Conv2d(8, 8, 1, bias=False)
        self.c = nn.Conv2d(8, 8, 1, bias=False)

    def forward(self, x):
        y = self.a(x)
        w = self.c(self.b(y))
        return w + y if self.skip else w


@pytest.mark.parametrize("exact", [False, True])
def test_peak_activation_memory_branching(exact):
    # float32, batch 1: x 4x8x8 = 1024 B; y, z, w, out 8x8x8 = 2048 B each.
    # with the skip: at conv c, y (kept for the add) + z + w are live = 6144 B; at the add y + w + out = 6144.
    p = prof(Branchy(skip=True), (1, 4, 8, 8), exact=exact)
    assert p.total.peak_activation_bytes == 3 * 2048
    assert p.total.peak_at == "c"
    # without it: x + y = 3072 at a, y + z = 4096 at b, z + w = 4096 at c
    p = prof(Branchy(skip=False), (1, 4, 8, 8), exact=exact)
    assert p.total.peak_activation_bytes == 2 * 2048
    # batch 4 scales every activation by 4
    assert prof(Branchy(), (4, 4, 8, 8), exact=exact).total.peak_activation_bytes == 4 * 6144


def test_in_place_ops_and_views_add_no_bytes():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(inplace=True), nn.Flatten())
    p = prof(m, (1, 3, 8, 8))
    assert p.total.peak_activation_bytes == 3 * 64 * 4 + 4 * 36 * 4  # input + conv output
    assert p.total.allocator_peak_bytes is None and "not available" in p.total.allocator_note


def test_weight_bytes_at_any_bit_width():
    lin = nn.Linear(128, 64, bias=False)
    assert weight_bytes(lin) == 8192 * 4
    assert weight_bytes(lin, bits=8) == 8192 + 64 * 4  # int8 + fp32 scale per output channel
    assert weight_bytes(lin, bits=4, group_size=32, scale_bits=16) == 4096 + 256 * 2
    assert weight_bytes(lin, bits=16) == 8192 * 2
    assert weight_bytes(lin.half()) == 8192 * 2
    with pytest.raises(InputError):
        weight_bytes(lin, bits=0)


# ---------------------------------------------------------------- API, output, ONNX
def test_package_is_callable_and_dataclasses_importable():
    from effai.profile import LayerProfile, Profile

    p = effai.profile(nn.Linear(4, 2), input_shape=(1, 4), latency=False)
    assert isinstance(p, Profile) and isinstance(p.layers[0], LayerProfile)


def test_json_schema_and_csv(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    p = profile(m, input_shape=(1, 3, 8, 8), repeats=3, warmup=1, min_seconds=0)
    d = json.loads(json.dumps(p.to_dict()))
    assert {"model", "input_shape", "total", "layers", "latency", "energy"} <= set(d)
    assert {"params", "macs", "flops", "weight_bytes", "peak_activation_bytes"} <= set(d["total"])
    assert {"name", "type", "output_shape", "params", "macs", "flops"} <= set(d["layers"][0])
    assert {"runtime", "p50_ms", "p90_ms", "p99_ms", "threads"} <= set(d["latency"])
    assert {"joules", "method"} <= set(d["energy"])
    assert d["energy"]["method"] in ("measured", "estimated")
    assert sum(lp["latency_ms"] for lp in d["layers"]) > 0
    path = p.to_csv(tmp_path / "layers.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("name,type,output_shape,params,macs,flops")
    assert len(lines) == 1 + len(p.layers)


def test_onnx_graph_counts_match_torch(tmp_path):
    from effai.profile.latency import export_fp32_onnx

    m = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
                      nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    x = torch.randn(2, 3, 8, 8)
    f = export_fp32_onnx(m, tmp_path / "m.onnx", x)
    pt, po = prof(m, (2, 3, 8, 8)), profile(f, latency=False)
    assert po.source == "onnx"
    assert (po.total.params, po.total.macs) == (pt.total.params, pt.total.macs)
    assert {"Conv", "ConvTranspose", "Gemm"} <= {lp.type for lp in po.layers}
    assert po.total.peak_activation_bytes > 0


def test_measure_latency_every_runtime():
    m, x = nn.Linear(16, 16), torch.randn(4, 16)
    for rt in ("torch", "onnxruntime", "openvino"):
        lat = measure_latency(m, x, runtime=rt, threads=1, warmup=1, repeats=5, min_seconds=0)
        assert lat.runtime == rt and lat.threads == 1 and lat.batch_size == 4 and lat.repeats >= 5
        assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p99_ms and lat.iqr_ms >= 0
        assert math.isclose(lat.throughput, 4 / (lat.p50_ms / 1e3))
    with pytest.raises(InputError):
        measure_latency("x.onnx", x, runtime="torch")
    with pytest.raises(InputError, match="runtime: expected one of torch, onnxruntime, openvino"):
        measure_latency(m, x, runtime="tensorrt")


def test_onnx_runtimes_agree_and_missing_openvino_is_named(tmp_path, monkeypatch):
    import sys

    from effai.profile import onnx_runner
    from effai.profile.latency import export_fp32_onnx

    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    f = export_fp32_onnx(m, tmp_path / "m.onnx", x)
    with torch.no_grad():
        ref = m(x).numpy()
    for rt in ("onnxruntime", "openvino"):
        np.testing.assert_allclose(onnx_runner(f, rt)(x.numpy())[0], ref, rtol=1e-4, atol=1e-5)
    p = profile(f, latency=True, runtime="openvino", repeats=3, min_seconds=0, warmup=1)
    assert p.latency.runtime == "openvino" and p.latency.p50_ms > 0
    with pytest.raises(InputError, match="cannot run it on inputs of shape"):
        measure_latency(str(f), torch.randn(2, 5, 8, 8), runtime="openvino", repeats=1, min_seconds=0)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(InputError, match=r"OpenVINO is not installed \(pip install 'effai\[openvino\]'\)"):
        onnx_runner(f, "openvino")


def test_interleaved_ranks_candidates_and_checks_arguments(monkeypatch):
    """Timed against a fake clock that only the callables advance, so load cannot move the result."""
    import types

    from effai.profile import interleaved
    from effai.profile import latency as latency_module

    clock = {"ns": 0}

    def spend(ms: float) -> None:
        clock["ns"] += int(ms * 1e6)

    monkeypatch.setattr(latency_module, "time", types.SimpleNamespace(perf_counter_ns=lambda: clock["ns"]))
    calls = []
    ms = interleaved({"fast": lambda: (calls.append("f"), spend(0.5)), "slow": lambda: (calls.append("s"), spend(2.0))},
                     rounds=3, inner=2, warmup=1)
    assert ms == {"fast": 0.5, "slow": 2.0}
    assert calls[:2] == ["f", "s"] and calls.count("f") == calls.count("s") == 1 + 3 * 2
    with pytest.raises(InputError, match="rounds >= 1"):
        interleaved({"a": lambda: None}, rounds=0)
    with pytest.raises(InputError, match="statistic must be"):
        interleaved({"a": lambda: None}, statistic="mean")
    for stat, expected in (("median", 10.0), ("min", 1.0)):  # rounds of 10, 10 and 1 ms
        pauses = iter([10.0, 10.0, 1.0])
        ms = interleaved({"a": lambda it=pauses: spend(next(it))}, rounds=3, inner=1, warmup=0, statistic=stat)
        assert ms["a"] == expected, (stat, ms)
    with pytest.raises(InputError, match="clock must be"):
        interleaved({"a": lambda: None}, clock="cpu")
    # clock="thread_cpu" reads the thread's CPU clock (time spent descheduled is not counted)
    monkeypatch.setattr(latency_module, "time", types.SimpleNamespace(perf_counter_ns=lambda: 0,
                                                                      thread_time_ns=lambda: clock["ns"]))
    assert interleaved({"a": lambda: spend(3.0)}, rounds=3, inner=1, warmup=0, clock="thread_cpu") == {"a": 3.0}
    monkeypatch.setattr(latency_module, "time", types.SimpleNamespace(perf_counter_ns=lambda: clock["ns"]))
    # min_round_ms: the fast callable is called more often per round, the slow one at least `inner` times
    counts = {"fast": 0, "slow": 0}

    def fast():
        counts["fast"] += 1
        spend(0.1)

    def slow():
        counts["slow"] += 1
        spend(4.0)

    ms = interleaved({"fast": fast, "slow": slow}, rounds=2, inner=1, warmup=0, min_round_ms=10.0)
    # one sizing call each, then rounds of ceil(10 / 0.1) = 100 and ceil(10 / 4) = 3 calls
    assert counts == {"fast": 1 + 2 * 100, "slow": 1 + 2 * 3}
    assert ms == {"fast": pytest.approx(0.1), "slow": pytest.approx(4.0)}


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="forward failed"):
        prof(nn.Linear(4, 2), (1, 5))
    with pytest.raises(InputError):
        profile(nn.Linear(4, 2), latency=False)


def test_energy_is_estimated_without_counters():
    p = prof(nn.Linear(64, 64), (1, 64))
    assert p.energy.method == "estimated" and "Horowitz" in p.energy.detail and p.energy.joules > 0
    assert prof(nn.Linear(64, 64), (1, 64), bits=8).energy.joules < p.energy.joules


# ---------------------------------------------------------------- zoo and CLI
def _zoo():
    return pytest.importorskip("effai.zoo")


def test_zoo_totals_match_published_counts():
    zoo = _zoo()
    for name in zoo.names():
        info = zoo.info(name)
        with torch.device("meta"):  # no weight init: counting needs shapes only
            m = zoo.create(name)
        p = prof(m, (1, *info.input_shape))
        if info.published_params:
            assert p.total.params == info.published_params, name
        if getattr(info, "published_macs", None):
            assert abs(p.total.macs - info.published_macs) <= 0.03 * info.published_macs, (name, p.total.macs)
        assert not p.uncounted, (name, p.uncounted)


def test_cli_profile_json_and_bad_input(tmp_path):
    _zoo()
    from typer.testing import CliRunner

    from effai.cli import app

    r = CliRunner().invoke(app, ["profile", "lenet5", "--no-latency", "--json", "--csv", str(tmp_path / "l.csv")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["model"] == "lenet5" and d["latency"] is None and d["total"]["params"] > 0
    assert (tmp_path / "l.csv").exists()
    r = CliRunner().invoke(app, ["profile", "lenet5", "--input", "1x3x9x9", "--no-latency"])
    assert r.exit_code != 0 and isinstance(r.exception, InputError) and "expected" in str(r.exception)
    r = CliRunner().invoke(app, ["profile", "lenet5", "--runtime", "openvino", "--json"])
    assert r.exit_code == 0, r.output
    lat = json.loads(r.stdout)["latency"]
    assert lat["runtime"] == "openvino" and lat["threads"] == 1 and 0 < lat["p50_ms"] <= lat["p99_ms"]
    r = CliRunner().invoke(app, ["profile", "lenet5", "--runtime", "tvm"])
    assert r.exit_code != 0 and "--runtime: expected one of torch, onnxruntime, openvino" in str(r.exception)


def test_torchscript_model_is_counted_by_op():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    want = 8 * 36 * 27 + 288 * 4
    for ts in (torch.jit.script(m), torch.jit.trace(m, torch.randn(1, 3, 8, 8))):
        p = prof(ts, (1, 3, 8, 8))
        assert (p.total.params, p.total.macs, p.uncounted) == (sum(x.numel() for x in m.parameters()), want, [])


def test_onnx_wrong_input_shape_is_an_input_error(tmp_path):
    from effai.profile.latency import export_fp32_onnx

    f = export_fp32_onnx(nn.Conv2d(3, 4, 3), tmp_path / "c.onnx", torch.randn(1, 3, 8, 8))
    with pytest.raises(InputError, match="expected 1x3x8x8, got 1x1x8x8"):
        profile(f, input_shape=(1, 1, 8, 8), latency=False)


def test_weight_bytes_counts_quantized_codes_and_scales():
    """A quantized model stores int8 codes in buffers: its size must be ~25% of FP32, not ~0."""
    from effai import quantize, zoo

    torch.manual_seed(0)
    fp32 = zoo.create("lenet300_100")
    q = zoo.create("lenet300_100")
    q.load_state_dict(fp32.state_dict())
    quantize.quantize_(q, quantize.WeightOnlyConfig(bits=8))
    ratio = weight_bytes(q) / weight_bytes(fp32)
    assert 0.24 < ratio < 0.30, ratio
    assert profile(q, input_shape=(1, 1, 28, 28), latency=False).total.weight_bytes == weight_bytes(q)


def test_profile_table_fits_80_columns_whole_names_and_no_empty_latency_column():
    """Issue 21's small items: layer names are never cut at 80 columns, --no-latency shows no
    latency column of dashes, and the energy line says "estimated" once."""
    from rich.console import Console

    from effai import zoo

    p = profile(zoo.create("mobilenet_v2"), input_shape=(1, 3, 224, 224), latency=False)
    con = Console(width=80, record=True)
    con.print(p.table(top=15))
    text = con.export_text()
    top = sorted(p.layers, key=lambda lp: (lp.macs, lp.elementwise_flops), reverse=True)[:15]
    assert all(lp.name in text for lp in top) and "…" not in text, text
    assert "time" not in text and "latency" not in text.split("params 3,504,872")[0], text
    assert "estimated with Horowitz" in text and "estimated: estimated" not in text
    assert max(map(len, text.splitlines())) <= 80


def test_profile_times_one_thread_by_default_as_the_cli():
    m = nn.Sequential(nn.Linear(8, 8))
    nested = nn.Sequential()
    nested.add_module("a_rather_long_block_name", nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
    p = profile(nested, input_shape=(1, 8), repeats=3, min_seconds=0, warmup=1)
    assert p.latency.threads == 1
    from rich.console import Console

    con = Console(width=80, record=True)
    con.print(p.table())
    text = con.export_text()
    assert "time" in text and "a_rather_long_block_name.0" in text and "1 thread," in text, text
    assert max(map(len, text.splitlines())) <= 80
    assert profile(m, input_shape=(1, 8), repeats=3, min_seconds=0, warmup=1, threads=None).latency.threads == \
        torch.get_num_threads()
