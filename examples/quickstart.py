"""Quickstart: train a small CNN on bundled digits, profile it, quantize to INT8, compare.

Run: .venv/bin/python examples/quickstart.py   (EFFAI_EXAMPLE_QUICK=1: tiny settings for tests)
Guide: docs/guides/quickstart.md
"""

import copy
import os

from torch import nn

import effai
from effai.quantize import Int8StaticConfig, quantize_, state_dict_bytes

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

ds = effai.data.load("digits")
net = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),             # (N,16,8,8)
    nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),  # (N,32,4,4)
    nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
)
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 10), progress=False)

p = effai.profile(net, input_shape=(1, 1, 8, 8), latency=not QUICK)
print(f"params {p.total.params:,}  MACs {p.total.macs:,}  peak activations {p.total.peak_activation_bytes:,} B")
if p.latency:
    print(f"latency p50 {p.latency.p50_ms:.3f} ms ({p.latency.runtime}, {p.latency.threads} threads)")

int8 = quantize_(copy.deepcopy(net), Int8StaticConfig(calibration=ds.calibration()))
test = ds.loaders()[2]
for name, m in [("fp32", net), ("int8", int8)]:
    acc = effai.train.score(m, test).accuracy
    print(f"{name}: accuracy {acc:.1%}, {state_dict_bytes(m) / 1e3:.1f} KB")
assert state_dict_bytes(int8) < 0.4 * state_dict_bytes(net)
