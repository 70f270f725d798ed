"""A study on your own data: write an .npz (IDX and image folders work the same), register
your own architecture, train it, and let the study pick a variant under a size limit.

Run: .venv/bin/python examples/own_data.py
Guide: docs/guides/own-data.md
"""

import os

import numpy as np
from sklearn.datasets import load_digits
from torch import nn

import effai
from effai import zoo
from effai.study import StudyConfig, run

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

x, y = load_digits(return_X_y=True)
np.savez("mydata.npz", x=(x.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8), y=y)


class TinyCNN(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, width_mult=1.0):
        super().__init__()
        w = int(16 * width_mult)
        self.features = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),  # (N,w,8,8)
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())               # (N,16w)
        self.head = nn.Linear(16 * w, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


if "tiny_cnn_example" not in zoo.names():
    @zoo.register("tiny_cnn_example", zoo.ModelInfo("tiny_cnn_example", "custom", (1, 8, 8), 10, "ours"))
    def tiny_cnn_example(*, num_classes, in_channels, width_mult, resolution):
        return TinyCNN(num_classes, in_channels, width_mult)

ds = effai.data.load("mydata.npz")
net = zoo.create("tiny_cnn_example", num_classes=ds.num_classes)
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 10), out_dir="runs/tiny_cnn", progress=False)

variants = ("fp32", "int8_ptq") if QUICK else None
result = run(StudyConfig(dataset="mydata.npz", model="runs/tiny_cnn", quick=QUICK, variants=variants,
                         max_size="20KB", out="runs/tiny_cnn_study"))
print("chosen:", result.selection.best, "-", result.selection.reason)
print("report:", os.path.join("runs/tiny_cnn_study", "report.html"))
