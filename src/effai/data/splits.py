"""`load()`: one entry point for every data set, validated once, split by a seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from effai.data import builtin, files
from effai.errors import InputError, suggest


@dataclass
class DataSplits:
    """Seeded, stratified train / val / test splits of one data set.

    Images are float32 NCHW (uint8 pixels scaled to [0, 1], other values as given); token
    sequences are int64 ids (N, L) with `masks` (per split, 1 for real tokens) when the data
    set has one; labels are int64 class indices.
    """

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    class_names: list[str]
    seed: int = 0
    meta: dict = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None  # attention masks of token data, per split

    @property
    def is_tokens(self) -> bool:
        return not self.train.tensors[0].is_floating_point() and self.train.tensors[0].dim() == 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, (C, H, W)."""
        return tuple(self.train.tensors[0].shape[1:])

    def loaders(self, batch_size: int = 128, shuffle_train: bool = True):
        """(train, val, test) DataLoaders; the training order is seeded."""
        g = torch.Generator().manual_seed(self.seed)
        return (
            DataLoader(self.train, batch_size=batch_size, shuffle=shuffle_train, generator=g),
            DataLoader(self.val, batch_size=512),
            DataLoader(self.test, batch_size=512),
        )

    def calibration(self, n: int = 256) -> torch.Tensor:
        """The first `n` training images (already shuffled by the split), for PTQ calibration."""
        return self.train.tensors[0][:n]


def load(
    name: str | Path,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    **options,
) -> DataSplits:
    """Load a built-in data set by name, or the user's data from a path.

    A path may be a folder of IDX files (MNIST / Fashion-MNIST format), an `.npz` file
    holding `x` and `y`, or an image folder with one subfolder per class.
    `options` go to the built-in generator (e.g. `synthetic` takes n, shape, num_classes).

    >>> ds = load("synthetic", n=200, shape=(3, 8, 8), num_classes=4)
    >>> ds.input_shape, ds.num_classes, len(ds.test)
    ((3, 8, 8), 4, 20)
    """
    for arg, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < v < 0.5:
            raise InputError(f"{arg}={v}: expected a fraction in (0, 0.5)")
    key = str(name)
    if key in builtin.BUILTIN:
        loaded: tuple = builtin.BUILTIN[key](**options)
        x, y, class_names = loaded[:3]
        mask = loaded[3] if len(loaded) > 3 else None
        where = key
    else:
        path = Path(key)
        if not path.exists():
            if "/" not in key and "." not in key:
                raise suggest(key, builtin.names(), "data set")
            raise InputError(f"{path}: no such file or folder")
        mask = None
        if path.is_dir():
            has_idx = any("idx" in p.name for p in path.iterdir())
            x, y, class_names = files.load_idx_dir(path) if has_idx else files.load_image_folder(path)
        elif path.suffix == ".npz":
            x, y, class_names, mask = files.load_npz(path)
        elif "idx" in path.name:
            raise InputError(f"{path}: give the folder holding both the idx3 image and idx1 label files")
        else:
            raise InputError(f"{path}: unknown data format (expected an IDX folder, .npz or image folder)")
        where = str(path)
    _validate(x, y, class_names, where)
    return _split(key if key in builtin.BUILTIN else Path(key).name, x, y, class_names, seed, val_fraction,
                  test_fraction, mask)


def _validate(x: np.ndarray, y: np.ndarray, class_names: list[str], where: str) -> None:
    if len(y) == 0:
        raise InputError(f"{where}: zero samples")
    tokens = x.ndim == 2 and x.dtype.kind in "iu"
    if x.ndim != 4 and not tokens:
        raise InputError(f"{where}: expected images of shape (N, C, H, W), (N, H, W) or (N, H, W, C), or integer "
                         f"token ids (N, L); got {x.shape} {x.dtype}")
    if y.min() < 0:
        raise InputError(f"{where}: label {int(y.min())} is negative")
    if y.max() >= len(class_names):
        raise InputError(f"{where}: label {int(y.max())} out of range for {len(class_names)} classes")
    counts = np.bincount(y, minlength=len(class_names))
    if (counts > 0).sum() < 2:
        raise InputError(f"{where}: only one class present ({class_names[int(y[0])]!r}); need at least two")
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(f"{where}: class(es) {empty} have no samples (labels must be 0..K-1 with every class present)")
    if not np.isfinite(x).all():
        raise InputError(f"{where}: data holds NaN or Inf values")


def _split(name, x, y, class_names, seed, val_fraction, test_fraction, mask=None) -> DataSplits:
    """Stratified split: within each class, a seeded shuffle, then test / val / train shares."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for c in range(len(class_names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) - n_test - n_val < 1:
            raise InputError(f"{name}: class {class_names[c]!r} has {len(idx)} sample(s), too few to split")
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    sets, masks = {}, {}
    for k, chunks in parts.items():
        idx = rng.permutation(np.concatenate(chunks))
        sets[k] = TensorDataset(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx]))
        if mask is not None:
            masks[k] = torch.from_numpy(np.ascontiguousarray(mask[idx]))
    return DataSplits(name, sets["train"], sets["val"], sets["test"], list(class_names), seed,
                      masks=masks if mask is not None else None)
