"""Knowledge distillation: a 1/30-size student learns from a teacher's soft targets.

Run: .venv/bin/python examples/distill.py
Guide: docs/guides/distill.md
"""

import os

import torch
from torch import nn

import effai
from effai.distill import KDConfig, distill

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"
E = 1 if QUICK else 10

ds = effai.data.load("digits")
teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
effai.train.fit(teacher, ds, effai.train.TrainConfig(epochs=E), progress=False)


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


alone = small()
effai.train.fit(alone, ds, effai.train.TrainConfig(epochs=E), progress=False)
student = distill(teacher, small(), ds, KDConfig(temperature=4, alpha=0.9, epochs=E))
test = ds.loaders()[2]
for name, m in [("teacher", teacher), ("student alone", alone), ("student distilled", student)]:
    n = sum(p.numel() for p in m.parameters())
    print(f"{name:18s} {n:6d} params  accuracy {effai.train.score(m, test).accuracy:.1%}")
