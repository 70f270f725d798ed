"""The one training loop every capability uses: fit, evaluate, checkpoint, resume.

>>> import torch.nn as nn
>>> from effai import data
>>> ds = data.load("synthetic", n=200, shape=(1, 8, 8), num_classes=2)
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
>>> r = fit(net, ds, TrainConfig(epochs=3, seed=0), progress=False)
>>> r.test_accuracy > 0.9
True
"""

from effai.train.checkpoint import load_checkpoint, save_checkpoint
from effai.train.loop import TrainConfig, TrainResult, evaluate, fit, predict

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "load_checkpoint", "predict", "save_checkpoint"]
