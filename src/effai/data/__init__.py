"""Data sets: built-in ones that need no network, and loaders for the user's own files.

`load(name_or_path)` returns a `DataSplits` with seeded, stratified train / val / test
splits, images as float32 NCHW tensors standardised with the training split's statistics.

>>> ds = load("digits", seed=0)
>>> ds.num_classes, ds.input_shape, len(ds.train) + len(ds.val) + len(ds.test)
(10, (1, 8, 8), 1797)
"""

from __future__ import annotations

from effai.data.builtin import BUILTIN, names
from effai.data.splits import DataSplits, load

__all__ = ["BUILTIN", "DataSplits", "load", "names"]
