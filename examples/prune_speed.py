"""Unstructured pruning makes a model compressible; structured (channel) pruning makes it faster.

Run: .venv/bin/python examples/prune_speed.py
Guide: docs/guides/prune.md
"""

import copy
import os

from torch import nn

import effai
from effai import prune

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

ds = effai.data.load("digits")
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.Flatten(), nn.Linear(64 * 8 * 8, 10))
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 6), progress=False)
x = ds.test.tensors[0][:1]

sparse = prune.make_permanent(prune.prune_(copy.deepcopy(net), prune.MagnitudeConfig(0.75)))
s = prune.savings(net, sparse, x, latency=False)
print(f"magnitude 75%: sparse storage {s.sparse_bytes_after} B vs dense {s.dense_bytes_before} B, "
      f"MACs x{s.mac_reduction:.1f}; {s.warnings}")

slim = prune.prune_(copy.deepcopy(net), prune.ChannelConfig(ratio=0.5, input_shape=(1, 1, 8, 8)))
effai.train.fit(slim, ds, effai.train.TrainConfig(epochs=1 if QUICK else 3, lr=1e-3), progress=False)
s = prune.savings(net, slim, x, latency=not QUICK, threads=1, rounds=3, runs=5)
print(f"channels 50%: MACs x{s.mac_reduction:.1f}, speed-up {s.speedup}, accuracy "
      f"{effai.train.score(slim, ds.loaders()[2]).accuracy:.1%}")
assert s.mac_reduction > 3
