"""Deep Compression: prune, share weights (k-means), Huffman-code; a real file, reloaded.

Run: .venv/bin/python examples/deep_compression.py
Guide: docs/guides/deep-compression.md
"""

import os

from torch import nn

import effai
from effai.compress import DeepCompressionConfig, deep_compression, load_compressed

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


ds = effai.data.load("digits")
net = mlp()
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 10), progress=False)
cfg = (DeepCompressionConfig(sparsity=0.8, prune_epochs=1, finetune_epochs=1, kmeans_iters=5) if QUICK
       else DeepCompressionConfig(sparsity=0.92, prune_epochs=12, prune_lr=3e-3, finetune_epochs=4))
net, report = deep_compression(net, ds, cfg, out_path="mlp.effdc")
for st in report.stages:
    print(f"{st['stage']:28s} {st['bytes']:8d} B  x{st['ratio']:5.1f}  accuracy {st['accuracy']:.1%}")
back = load_compressed("mlp.effdc", model=mlp())
print("reloaded accuracy", effai.train.score(back, ds.loaders()[2]).accuracy)
