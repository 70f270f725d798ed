"""Weight sharing (Han et al. 2016, section 3): per-layer k-means on the surviving weights,
linear centroid initialisation, and centroid fine-tuning with gradients summed per cluster.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from effai.prune.core import weight_of


def kmeans_1d(values: np.ndarray, k: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars with linear initialisation between min and max (the paper's
    best init: it keeps centroids for the rare large weights). Returns (centroids, labels).

    >>> c, lab = kmeans_1d(np.array([0.0, 0.1, 1.0, 1.1]), 2)
    >>> [round(float(x), 2) for x in c], lab.tolist()
    ([0.05, 1.05], [0, 0, 1, 1])
    """
    values = np.asarray(values, dtype=np.float64)
    k = max(1, min(k, len(np.unique(values))))
    centroids = np.linspace(values.min(), values.max(), k)
    labels = np.zeros(len(values), dtype=np.int64)
    for _ in range(iters):
        mids = (centroids[1:] + centroids[:-1]) / 2  # sorted centroids: nearest = bucket by midpoints
        labels = np.searchsorted(mids, values)
        sums = np.bincount(labels, values, minlength=k)
        counts = np.bincount(labels, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(new, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(new)
    mids = (centroids[1:] + centroids[:-1]) / 2
    labels = np.searchsorted(mids, values)
    return centroids.astype(np.float32), labels


@torch.no_grad()
def share_(module: nn.Module, bits: int, iters: int = 30) -> torch.Tensor:
    """Replace `module.weight`'s nonzeros by their k-means centroid (k = 2**bits); zeros stay
    zero. Returns the cluster index of every weight (-1 for pruned weights)."""
    w = weight_of(module)
    flat = w.detach().flatten().numpy()
    nz = flat != 0
    idx = np.full(flat.shape, -1, dtype=np.int64)
    if nz.any():
        centroids, labels = kmeans_1d(flat[nz], 2**bits, iters)
        idx[nz] = labels
        new = np.zeros_like(flat)
        new[nz] = centroids[labels]
        w.copy_(torch.from_numpy(new).view_as(w))
    return torch.from_numpy(idx).view_as(w)


def tie_gradients(module: nn.Module, idx: torch.Tensor):
    """Make every weight of a cluster receive the cluster's summed gradient (pruned: zero).

    All members then see identical gradient histories, so any elementwise optimizer
    (SGD, Adam, weight decay) keeps them exactly equal: the weights stay shared while the
    centroids are fine-tuned. Returns the hook handle (remove it after fine-tuning)."""
    flat_idx = idx.flatten()
    alive = flat_idx >= 0
    k = int(flat_idx.max()) + 1 if alive.any() else 1
    safe = flat_idx.clamp(min=0)

    def hook(grad: torch.Tensor) -> torch.Tensor:
        g = grad.flatten()
        sums = torch.zeros(k, dtype=g.dtype).index_add_(0, safe[alive], g[alive])
        return torch.where(alive, sums[safe], torch.zeros_like(g)).view_as(grad)

    return weight_of(module).register_hook(hook)
