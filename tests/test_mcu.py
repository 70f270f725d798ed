"""effai.mcu: int8 lowering, integer reference, memory planner, and firmware built with
arm-none-eabi-gcc and run in qemu-system-arm (`make test` installs them: DEBIAN_PACKAGES;
these tests are not skipped when they are missing: they fail, naming what to install)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

import effai
from effai.errors import InputError
from effai.mcu import lower, planner, reference

TINY = {"ds_cnn": (1, 49, 10), "resnet8": (3, 32, 32), "mobilenet_v1_025_vww": (3, 96, 96), "fc_autoencoder": (640,)}


def _model(name):
    torch.manual_seed(0)
    return effai.zoo.create(name).eval()


@pytest.fixture(scope="module")
def graphs():
    return {n: lower.lower(_model(n), torch.randn(8, *s, generator=torch.Generator().manual_seed(1))) for n, s in TINY.items()}


def test_integer_reference_tracks_the_float_model(graphs):
    for name, shape in TINY.items():
        m, g = _model(name), graphs[name]
        x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(2))
        q = reference.run(g, reference.quantize_input(g, x.numpy()))[g.output]
        y, ref = reference.dequantize_output(g, q), m(x).detach().numpy()
        assert np.abs(y - ref).max() < 0.15 * np.abs(ref).max(), name  # int8 error through a whole (untrained) network
        assert np.abs(y - ref).mean() < 0.03 * np.abs(ref).max(), name  # a wrong lowering is off by ~100%


def test_lowering_fuses_batchnorm_and_relu(graphs):
    ops = graphs["ds_cnn"].ops
    assert [op.label for op in ops[:3]] == ["conv", "depthwise_conv", "pointwise_conv"]
    assert all(op.act_min == graphs["ds_cnn"].tensors[op.output].zp for op in ops[:9])  # ReLU = clamp at zero


def test_planner_beats_tflm_greedy_and_is_valid(graphs):
    ratios = {}
    for name, g in graphs.items():
        ours, tflm = planner.plan(g), planner.tflm_greedy(g)
        planner.check(g, ours.offsets)
        planner.check(g, tflm.offsets, {})
        assert ours.arena_bytes <= tflm.arena_bytes, name
        ratios[name] = tflm.arena_bytes / ours.arena_bytes
    assert sum(r >= 1.3 for r in ratios.values()) >= 2, ratios


def test_plan_check_catches_a_bad_overlap(graphs):
    g = graphs["resnet8"]
    offsets = dict.fromkeys(planner.tflm_greedy(g).offsets, 0)
    with pytest.raises(AssertionError, match="overlap"):
        planner.check(g, offsets)


def test_onnxruntime_runs_the_same_integer_graph_within_a_bit():
    from effai.mcu import ort

    m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.MaxPool2d(2),
                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).eval()
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    g = lower.lower(m, x)
    q = reference.quantize_input(g, x.numpy())
    ref = reference.run(g, q)[g.output].reshape(16, -1)
    worst, equal = ort.compare(ref, ort.run(g, q.reshape(16, -1)))
    assert worst <= 1 and equal > 0.8


def test_unsupported_op_is_one_line_input_error():
    with pytest.raises(InputError, match="not supported on the microcontroller path"):
        lower.lower(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), torch.randn(2, 1, 5, 5))


def _size(elf):
    out = subprocess.run(["arm-none-eabi-size", elf], capture_output=True, text=True, check=True).stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return text + data, data + bss


@pytest.mark.parametrize("name", list(TINY))
def test_mlperf_tiny_model_runs_bit_exact_on_cortex_m4(name, tmp_path):
    r = effai.mcu.deploy(_model(name), "nano33ble", out=tmp_path, input_shape=TINY[name], n_inputs=8)
    assert r.fits and r.exit_code == 0
    assert r.bit_exact and r.inputs_checked == 8 and r.mismatches == 0
    assert (r.flash_bytes, r.sram_bytes) == _size(r.elf)
    assert r.arena_bytes <= r.tflm_greedy_arena_bytes
    assert r.instructions == sum(layer.instructions for layer in r.layers) > r.macs  # counted, not estimated
    assert 0 < r.stack_bytes < 2048
    saved = json.loads((tmp_path / "deploy.json").read_text())
    assert saved["bit_exact"] is True and saved["elf"] == r.elf
    assert "estimated" in r.latency_method
    # ONNX Runtime (float requantization) differs by <= 1 LSB per layer; the differences add up over deep random nets
    assert r.onnxruntime_max_diff_lsb is not None and r.onnxruntime_max_diff_lsb <= 32
    if name != "fc_autoencoder":  # DSP kernels: every convolution layer <= 3 instructions per MAC (portable C: 5-16)
        conv = [la for la in r.layers if la.op in ("conv", "depthwise_conv", "pointwise_conv")]
        assert conv and all(la.instructions <= 3.0 * la.macs for la in conv), [(la.name, la.instructions_per_mac) for la in conv]


def test_portable_kernels_and_other_cores_are_bit_exact(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.MaxPool2d(2),
                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).eval()
    counts = {}
    for target, kernels in (("nano33ble", "portable"), ("nano33ble", "dsp"), ("stm32f746", "dsp"), ("corstone300", "mve"),
                            ("corstone300", "portable")):
        r = effai.mcu.deploy(m, target, out=tmp_path / f"{target}-{kernels}", input_shape=(3, 16, 16), n_inputs=4,
                             kernels=kernels)
        assert r.bit_exact and r.inputs_checked == 4, (target, kernels)
        counts[target, kernels] = r.instructions
    assert counts["nano33ble", "dsp"] < counts["nano33ble", "portable"]  # the SMLAD build really is another build
    assert counts["corstone300", "mve"] < counts["corstone300", "portable"]


def _cancelling_pointwise():
    """A 1x1 convolution whose output nearly cancels: requantization multipliers >= 0.5 (negative
    shifts), which the fast DSP requantization does not take (effai_rq_t.fast = 0)."""
    conv = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([[1, -1, 0.5, -0.5], [0.3, 0.3, -0.3, -0.3]]).reshape(2, 4, 1, 1)
        conv.bias.zero_()
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).eval()


KERNEL_CASES = {  # model, input shape, kernels the DSP build must have used
    # a 1-channel stem (5x3 window, stride 2, uneven padding); depthwise over 6 and 10 channels (groups of 4
    # and channels left over), stride 1 and 2, odd output widths (vertical pairs); pointwise over 6 channels
    # (im2col) and to 7 channels (odd: the generic kernel)
    "stem1": (lambda: nn.Sequential(nn.Conv2d(1, 6, (5, 3), stride=2, padding=(2, 1)), nn.ReLU(),
                                    nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.ReLU(), nn.Conv2d(6, 10, 1), nn.ReLU6(),
                                    nn.Conv2d(10, 10, 3, stride=2, padding=1, groups=10), nn.Conv2d(10, 7, 1),
                                    nn.Flatten(), nn.Linear(7 * 4 * 3, 5)), (1, 13, 9),
              ("effai_conv_dsp(", "effai_dwconv3x3_dsp(", "effai_conv_s8(")),
    # a 3-channel stem with ReLU6 (clamped both sides), depthwise at even width, pointwise read in place with stride 2
    "stem3": (lambda: nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                                    nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 12, 1, stride=2),
                                    nn.ReLU(), nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12), nn.Flatten(),
                                    nn.Linear(12 * 2 * 2, 4)), (3, 15, 11), ("effai_conv_dsp(", "effai_dwconv3x3_dsp(")),
    "negative_shift": (_cancelling_pointwise, (4, 5, 5), ("effai_conv_s8(",)),  # the generic kernel, fast = 0
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_dsp_kernels_are_bit_exact_on_edge_shapes(case, tmp_path):
    make, shape, calls = KERNEL_CASES[case]
    torch.manual_seed(0)
    m = make().eval()
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(3))
    if case == "negative_shift":  # channels nearly equal, so the weighted sums nearly cancel
        x = x[:, :1].repeat(1, 4, 1, 1) + 0.002 * x
    for target, kernels in (("nano33ble", "dsp"), ("nano33ble", "portable"), ("stm32f746", "dsp"), ("corstone300", "mve")):
        r = effai.mcu.deploy(m, target, out=tmp_path / f"{target}-{kernels}", inputs=x, kernels=kernels)
        assert r.bit_exact and r.inputs_checked == 4, (case, target, kernels)
        if (target, kernels) == ("nano33ble", "dsp"):
            source = (tmp_path / f"{target}-{kernels}" / "build" / "model.c").read_text()
            assert all(c in source for c in calls), case
    if case == "negative_shift":
        assert (lower.lower(m, x).ops[0].shift < 0).any()


def test_model_that_does_not_fit_fails_at_link_with_the_overflow(tmp_path):
    m = nn.Sequential(nn.Linear(640, 1024), nn.ReLU(), nn.Linear(1024, 1024)).eval()  # 1.7 MB of int8 weights
    r = effai.mcu.deploy(m, "nano33ble", out=tmp_path, input_shape=(640,), n_inputs=1)
    assert not r.fits and r.elf is None and not r.bit_exact
    assert "flash overflows by" in r.reason and r.flash_bytes > 1024 * 1024


@pytest.mark.slow
def test_cli_deploy_json_and_not_fitting_exit_code(tmp_path):
    cmd = [".venv/bin/python", "-m", "effai.cli", "deploy", "fc_autoencoder", "--target", "nano33ble", "--inputs", "2",
           "--out", str(tmp_path / "ok"), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["bit_exact"] and d["inputs_checked"] == 2 and d["fits"]
    for key in ("flash_bytes", "sram_bytes", "arena_bytes", "tflm_greedy_arena_bytes", "stack_bytes", "instructions",
                "layers", "estimated_latency_ms", "elf"):
        assert key in d
    big = subprocess.run([".venv/bin/python", "-m", "effai.cli", "deploy", "mobilenet_v2", "--target", "nano33ble",
                          "--out", str(tmp_path / "big")], capture_output=True, text=True)
    assert big.returncode == 1
    assert len(big.stderr.strip().splitlines()) == 1 and "flash overflows by" in big.stderr
    assert json.loads((tmp_path / "big" / "deploy.json").read_text())["fits"] is False
    bad = subprocess.run([".venv/bin/python", "-m", "effai.cli", "deploy", "ds_cnn", "--target", "t4"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a microcontroller" in bad.stderr


def test_fit_uses_built_firmware_for_int8_on_a_microcontroller():
    base = [".venv/bin/python", "-m", "effai.cli", "fit", "fc_autoencoder", "--target", "nano33ble", "--json"]
    built = json.loads(subprocess.run([*base, "--dtype", "int8"], capture_output=True, text=True, check=True).stdout)
    assert built["mcu_numbers"] == "built and run in QEMU"
    assert built["firmware"]["bit_exact"] and built["firmware"]["flash_bytes"] > built["firmware"]["weight_bytes"]
    fp32 = [*base[:4], "ds_cnn", *base[5:]]
    est = json.loads(subprocess.run(fp32, capture_output=True, text=True, check=True).stdout)  # fp32: estimate only
    assert est["mcu_numbers"] == "estimated" and est["firmware"] is None


def test_model_quantized_by_effai_deploys_with_its_int8_weights(tmp_path):
    import copy

    from effai.quantize import Int8StaticConfig, quantize_

    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4))
    x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    q = quantize_(copy.deepcopy(net.eval()), Int8StaticConfig(calibration=[x]))
    r = effai.mcu.deploy(q, "nano33ble", out=tmp_path, inputs=x[:4], calibration=x)
    assert r.bit_exact and r.inputs_checked == 4
    g = lower.lower(q, x)  # the int8 codes effai.quantize stored are the codes in flash
    codes = q[0].w_codes.permute(0, 2, 3, 1).reshape(8, -1).numpy()
    assert np.array_equal(g.ops[0].weights, codes)


def test_int8_onnx_qoperator_file_deploys_bit_exact(tmp_path):
    import onnx
    import onnxruntime as rt

    from effai.mcu import onnx_import, ort

    m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.MaxPool2d(2),
                      nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).eval()
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    g = lower.lower(m, x)
    path = tmp_path / "m_int8.onnx"
    onnx.save(ort.to_onnx(g, float_io=True), path)  # a QOperator file with float input and output
    g2 = onnx_import.load(path)
    q = reference.quantize_input(g2, x.numpy())
    ours = reference.run(g2, q)[g2.output]
    assert np.array_equal(ours, reference.run(g, q)[g.output])  # the file's integers are the graph's integers
    sess = rt.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(8)])
    lsb = np.abs(reference.dequantize_output(g2, ours.reshape(8, -1)) - theirs.reshape(8, -1)) / g2.tensors[g2.output].scale
    assert lsb.max() <= 1.01  # ONNX Runtime on the file itself, float requantization: within one LSB
    r = effai.mcu.deploy(path, "nano33ble", out=tmp_path / "fw", inputs=x)
    assert r.bit_exact and r.inputs_checked == 8
    with pytest.raises(InputError, match="float operator"):
        from effai.quantize.export import export_float

        export_float(m, tmp_path / "f.onnx", x[:1])
        onnx_import.load(tmp_path / "f.onnx")
