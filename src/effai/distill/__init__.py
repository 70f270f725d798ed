"""Knowledge distillation (Hinton et al. 2015) with optional hint losses (FitNets, Romero et al.
2015), trained by the one loop, `effai.train.fit`, through its `loss_fn` hook.

>>> import torch
>>> from torch import nn
>>> from effai import data
>>> ds = data.load("synthetic", n=200, shape=(1, 8, 8), num_classes=2)
>>> teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
>>> student = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
>>> s = distill(teacher, student, ds, KDConfig(epochs=2))
>>> s is student
True
"""

from effai.distill.kd import KDConfig, distill, kd_loss

__all__ = ["KDConfig", "distill", "kd_loss"]
