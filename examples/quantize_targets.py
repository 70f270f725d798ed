"""Quantize one model for a CPU (INT8 in ONNX Runtime), a GPU (FP16/BF16/FP8) and a
microcontroller (INT8/INT4/ternary + fit check).

Run: .venv/bin/python examples/quantize_targets.py
Guide: docs/guides/quantize.md
"""

import copy
import os
import tempfile
from pathlib import Path

from torch import nn

import effai
from effai import quantize as Q

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

ds = effai.data.load("digits")
net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                    nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 8), progress=False)
test = ds.loaders()[2]

configs = {
    "int8 (CPU)": Q.Int8StaticConfig(calibration=ds.calibration()),
    "fp16 (GPU)": Q.Float16Config(),
    "bf16 (GPU/TPU)": Q.BFloat16Config(),
    "fp8 (H100)": Q.FP8Config(),
    "int4 (MCU)": Q.WeightOnlyConfig(bits=4, group_size=32),
    "ternary (MCU)": Q.TernaryConfig(),
}
print(f"{'fp32':15s} {effai.train.score(net, test).accuracy:.1%} {Q.state_dict_bytes(net):7d} B")
for name, cfg in configs.items():
    m = Q.quantize_(copy.deepcopy(net), cfg)
    print(f"{name:15s} {effai.train.score(m, test).accuracy:.1%} {Q.state_dict_bytes(m):7d} B")

x = ds.test.tensors[0][:1]
with tempfile.TemporaryDirectory() as tmp:
    # Deploy the model evaluated above: the file carries quantize_'s own scales, checked against it.
    int8 = Q.quantize_(copy.deepcopy(net), configs["int8 (CPU)"])
    info = Q.export_onnx(int8, Path(tmp) / "int8.onnx", x)
    print(f"INT8 ONNX: {info['bytes']} bytes, {info['verification']['sqnr_db']:.0f} dB SQNR against the torch model")
    if not QUICK:
        p = effai.profile(str(info["path"]), input_shape=(1, 1, 8, 8), threads=1)
        print(f"ONNX Runtime INT8 p50 {p.latency.p50_ms * 1e3:.1f} us")

p = effai.profile(net, input_shape=(1, 1, 8, 8), latency=False)
print("fits nano33ble at int8:", effai.hardware.fit(p, "nano33ble", dtype="int8").fits)
print("H100 fp8 estimate:", f"{effai.hardware.estimate(p, 'h100', dtype='fp8').latency_ms:.4f} ms (estimate)")
