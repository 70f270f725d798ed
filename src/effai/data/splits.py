"""`load()`: one entry point for every data set, validated once, split by a seed."""

from __future__ import annotations

import inspect
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
    def vocab_size(self) -> int | None:
        """Token data: the largest id in any split + 1, the rows an embedding table needs (None for images)."""
        if not self.is_tokens:
            return None
        return 1 + max(int(s.tensors[0].max()) for s in (self.train, self.val, self.test))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, (C, H, W), or (L,) for token sequences."""
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
    `options` go to the built-in generator (e.g. `synthetic` takes n, shape, num_classes);
    the name may carry them too, as a CLI's `--dataset` does: `"kws:n_per_class=50"`.

    >>> ds = load("synthetic", n=200, shape=(3, 8, 8), num_classes=4)
    >>> ds.input_shape, ds.num_classes, len(ds.test)
    ((3, 8, 8), 4, 20)
    >>> load("synthetic:n=100,num_classes=2").num_classes
    2
    """
    from effai.limits import check_seed

    check_seed(seed, "--seed")  # every command loads its data with the run's seed: one check for all
    for arg, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < v < 0.5:
            raise InputError(f"{arg}={v}: expected a fraction in (0, 0.5)")
    key = str(name)
    slices = []
    mask = None
    base, _, spec = key.partition(":")
    if spec and base in builtin.BUILTIN:
        options = {**_parse_options(spec, key), **options}
    if base in builtin.BUILTIN:
        make = builtin.BUILTIN[base]
        try:
            inspect.signature(make).bind(**options)
        except TypeError as e:  # an option the generator does not take
            raise InputError(f"data set {key!r}: {e}") from None
        x, y, class_names, *slices = make(**options)
        if slices and isinstance(slices[0], np.ndarray):  # a token set's attention mask, not slices
            mask, slices = slices[0], []
        where = key
    else:
        path = Path(key)
        if not path.exists():
            if "/" not in key and "." not in key:
                raise suggest(key, builtin.names(), "data set")
            raise InputError(f"{path}: no such file or folder")
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
    return _split(key if base in builtin.BUILTIN else Path(key).name, x, y, class_names, seed, val_fraction,
                  test_fraction, slices[0] if slices else None, mask)


def _parse_options(spec: str, where: str) -> dict:
    """`"a=1,b=0.5,c=x"` -> {"a": 1, "b": 0.5, "c": "x"} (ints, then floats, else strings)."""
    out = {}
    for item in spec.split(","):
        k, eq, v = (s.strip() for s in item.partition("="))
        if not (eq and k.isidentifier() and v):
            raise InputError(f"data set {where!r}: options must look like name=value[,name=value], got {item!r}")
        for cast in (int, float, str):
            try:
                out[k] = cast(v)
                break
            except ValueError:
                continue
    return out


def _validate(x: np.ndarray, y: np.ndarray, class_names: list[str], where: str) -> None:
    files.class_names(y, where, class_names)  # samples present, labels in range
    tokens = x.ndim == 2 and x.dtype.kind in "iu"
    if x.ndim != 4 and not tokens:
        raise InputError(f"{where}: expected images of shape (N, C, H, W), (N, H, W) or (N, H, W, C), or integer "
                         f"token ids (N, L); got {x.shape} {x.dtype}")
    counts = np.bincount(y, minlength=len(class_names))
    if (counts > 0).sum() < 2:
        raise InputError(f"{where}: only one class present ({class_names[int(y[0])]!r}); need at least two")
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(f"{where}: class(es) {empty} have no samples (labels must be 0..K-1 with every class present)")
    if not np.isfinite(x).all():
        raise InputError(f"{where}: data holds NaN or Inf values")


def _split(name, x, y, class_names, seed, val_fraction, test_fraction, slices=None, mask=None) -> DataSplits:
    """Stratified split: within each class, a seeded shuffle, then test / val / train shares.
    A generator's `Slices` go along: `meta["slices"]` holds the test samples' labels."""
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
    sets, meta, masks = {}, {}, {}
    for k, chunks in parts.items():
        if not sum(map(len, chunks)):  # training validates and tests on every split
            raise InputError(f"{name}: {len(y)} samples leave the {k} split empty ({len(class_names)} classes; "
                             f"{k} takes {val_fraction if k == 'val' else test_fraction:.0%} of each class); "
                             "give more samples per class")
        idx = rng.permutation(np.concatenate(chunks))
        sets[k] = TensorDataset(torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx]))
        if slices is not None and k == "test":
            meta = {"slices": [str(v) for v in slices.labels[idx]], "slices_name": slices.name}
        if mask is not None:
            masks[k] = torch.from_numpy(np.ascontiguousarray(mask[idx]))
    return DataSplits(name, sets["train"], sets["val"], sets["test"], list(class_names), seed, meta,
                      masks=masks if mask is not None else None)
