"""Hostile data sets: missing, unreadable, corrupt, mislabelled, degenerate, oddly named."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hostile_corpus import bad_idx_header, corrupt_gzip_idx, images_mixed_sizes, npz
from hostile_util import assert_rejected, cli, cmd_text, record, run_and_record

from effai.errors import InputError


@pytest.fixture(scope="module")
def data_corpus(tmp_path_factory):
    t = tmp_path_factory.mktemp("data")
    x = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)
    two = np.arange(40) % 2
    unreadable = npz(t, "unreadable.npz", x, two)
    os.chmod(unreadable, 0)
    root = os.geteuid() == 0
    if root:  # chmod 000 does not stop root: a folder posing as the file is what root cannot read
        unreadable = t / "folder_named.npz"
        unreadable.mkdir()
    lab = t / "labels_out_of_range.npz"
    np.savez(lab, x=x, y=np.where(two == 1, 5, 0), class_names=np.array(["a", "b"]))
    files = {
        "missing file": (t / "nope" / "missing.npz", ("missing.npz", "no such file")),
        "unreadable file" + (" (root: a folder named .npz)" if root else " (chmod 000)"):
            (unreadable, (unreadable.name,) if root else (unreadable.name, "permission")),
        "corrupt gzip IDX": (corrupt_gzip_idx(t), ("train-images-idx3-ubyte.gz", "corrupt gzip")),
        "IDX header larger than its data": (bad_idx_header(t), ("train-images-idx3-ubyte.gz", "[1000, 28, 28]")),
        "labels out of range": (lab, ("labels_out_of_range.npz", "label 5 out of range for 2 classes")),
        "negative label": (npz(t, "negative.npz", x, two - 1), ("negative.npz", "label -1")),
        "one class only": (npz(t, "one_class.npz", x, np.zeros(40, int)), ("one_class.npz", "only one class")),
        "zero samples": (npz(t, "zero.npz", x[:0], two[:0]), ("zero.npz", "zero samples")),
        "images of mixed sizes": (images_mixed_sizes(t), ("mixed_sizes", "differs from the first image")),
        "text file posing as .npz": (t / "text.npz", ("text.npz", "not a readable .npz")),
        "NaN pixels": (npz(t, "nan_pixels.npz", np.where(x > 0.99, np.nan, x), two), ("nan_pixels.npz", "NaN")),
    }
    (t / "text.npz").write_text("x,y\n1,2\n")
    return t, files


def test_data_via_cli(data_corpus):
    t, files = data_corpus
    cases, expect = {}, {}
    for what, (path, words) in files.items():
        cases[f"{what} → train"] = ["train", "lenet5", "--dataset", path, "--epochs", "1", "--out", t / "o"]
        expect[f"{what} → train"] = (2, *words)
    for what in ("one class only", "corrupt gzip IDX"):
        path, words = files[what]
        cases[f"{what} → study"] = ["study", "--dataset", path, "--quick", "--out", t / f"s{len(cases)}"]
        expect[f"{what} → study"] = (2, *words)
    recipe = t / "recipe.yaml"
    recipe.write_text(f"dataset: {files['zero samples'][0]}\n")
    cases["zero samples → compress"] = ["compress", "lenet5", "--recipe", recipe, "--out", t / "c"]
    expect["zero samples → compress"] = (2, "zero.npz", "zero samples")
    run_and_record(cases, t, expect)


def test_non_utf8_file_name(tmp_path):
    """A file name that is not valid UTF-8 (b'\\xff.npz') is read, and named in errors without crashing."""
    bad = os.fsencode(str(tmp_path)) + b"/\xff\xfe.npz"
    with open(bad, "wb") as f:
        f.write(b"not a zip")
    argv = [b"train", b"lenet5", b"--dataset", bad, b"--epochs", b"1", b"--out", os.fsencode(str(tmp_path / "o"))]
    r = cli(argv)
    err = r.stderr.decode("utf-8", "replace")
    record("non-UTF-8 file name (b'\\xff\\xfe.npz', corrupt) → train", cmd_text(argv), r.returncode, err)
    assert_rejected("non-UTF-8 name", {"exit_code": r.returncode, "stderr": err}, ".npz", "not a readable .npz")

    # The same name holding good data loads through the Python API.
    from effai import data

    x = np.random.default_rng(0).random((40, 1, 12, 12)).astype(np.float32)
    good = os.fsencode(str(tmp_path)) + b"/\xff\xfd.npz"
    with open(good, "wb") as f:
        np.savez(f, x=x, y=np.arange(40) % 2)
    ds = data.load(os.fsdecode(good))
    record("non-UTF-8 file name with good data → effai.data.load", "data.load(os.fsdecode(b'<tmp>/\\xff\\xfd.npz'))",
           "ok", outcome=f"loaded {ds.num_classes} classes, input {ds.input_shape}")
    assert ds.num_classes == 2


def test_data_api(data_corpus):
    from effai import data

    t, files = data_corpus
    for what, (path, words) in files.items():
        with pytest.raises(InputError) as e:
            data.load(path)
        msg = str(e.value)
        record(f"{what} → effai.data.load", f"data.load({path.name!r})", "InputError", outcome=msg)
        assert "\n" not in msg and all(w.lower() in msg.lower() for w in words), (what, msg)
