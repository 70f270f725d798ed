"""Pruning that saves for real: unstructured (magnitude, OBD, Taylor, gradual), structured
channel removal with a dependency graph, latency-aware allocation, and a savings check.

>>> import torch, copy
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3))
>>> _ = prune_(net, ChannelConfig(ratio=0.5, input_shape=(1, 3, 8, 8)))
>>> net[0].out_channels, net[1].num_features, net[3].in_channels, net(torch.zeros(1, 3, 8, 8)).shape
(8, 8, 8, torch.Size([1, 8, 4, 4]))
"""

from effai.prune.core import apply_masks, make_permanent, prunable, prune_, register_handler, sparsity
from effai.prune.layers import LayerHandler, register_layer
from effai.prune.savings import SavingsReport, savings
from effai.prune.structured import ChannelConfig, recalibrate_batchnorm
from effai.prune.transformer import HeadFFNConfig, register_block
from effai.prune.unstructured import MagnitudeConfig, OBDConfig, PolynomialSchedule, TaylorConfig, gradual

__all__ = ["ChannelConfig", "HeadFFNConfig", "register_block", "LayerHandler", "MagnitudeConfig", "OBDConfig", "PolynomialSchedule", "SavingsReport",
           "TaylorConfig", "apply_masks", "gradual", "make_permanent", "prunable", "prune_", "recalibrate_batchnorm",
           "register_handler", "register_layer", "savings", "sparsity"]
