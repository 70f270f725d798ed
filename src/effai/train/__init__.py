"""The one training loop every capability uses: fit, score (accuracy and loss), checkpoint, resume.

>>> import torch, torch.nn as nn
>>> from effai import data
>>> _ = torch.manual_seed(0)  # the initial weights (fit seeds only its own shuffling)
>>> ds = data.load("synthetic", n=200, shape=(1, 8, 8), num_classes=2)
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
>>> r = fit(net, ds, TrainConfig(epochs=10, seed=0), progress=False)
>>> r.test_accuracy > 0.9
True
"""

from effai.train.checkpoint import load_checkpoint, save_checkpoint
from effai.train.loop import Score, TrainConfig, TrainResult, fit, predict, score

__all__ = ["Score", "TrainConfig", "TrainResult", "fit", "load_checkpoint", "predict", "save_checkpoint", "score"]
