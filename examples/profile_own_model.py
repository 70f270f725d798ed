"""Profile your own model: per-layer params, MACs, memory, latency and energy; CSV and JSON.

Run: .venv/bin/python examples/profile_own_model.py
Guide: docs/guides/profile.md
"""

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

import effai

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.w = nn.Parameter(torch.randn(10, 16) * 0.1)

    def forward(self, x):
        x = F.relu(self.stem(x))  # (N,16,32,32)
        return F.adaptive_avg_pool2d(x, 1).flatten(1) @ self.w.t()  # (N,10)


p = effai.profile(MyNet(), input_shape=(1, 3, 32, 32), repeats=5 if QUICK else 30,
                  min_seconds=0.05 if QUICK else 1.0)
for layer in p.layers:
    print(f"{layer.name:6s} {layer.type:22s} {layer.params:6d} params {layer.macs:9d} MACs")
print(f"p50 {p.latency.p50_ms:.3f} ms; energy {p.energy.joules:.2e} J ({p.energy.method})")
assert p.total.macs == 32 * 32 * 16 * 27 + 160
p.to_csv("mynet_layers.csv")
with open("mynet_profile.json", "w") as f:
    json.dump(p.to_dict(), f, indent=1, default=str)
