"""The hostile corpus, generated in temporary folders by the tests (no blobs in the repo).

Every generator takes a folder and returns the path it wrote. Pickle payloads create a
marker folder when they run, so a test can prove they never ran.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch


class Payload:
    """Unpickling this calls os.mkdir(marker): proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def lenet5_state(num_classes: int = 10) -> dict:
    from effai import zoo

    return zoo.create("lenet5", num_classes=num_classes).state_dict()


def payload_state_dict(folder: Path, marker: Path) -> Path:
    """A lenet5 state dict with one entry that runs code when unpickled."""
    p = folder / "evil_state.pt"
    torch.save({**lenet5_state(), "evil": Payload(marker)}, p)
    return p


def payload_checkpoint(folder: Path, marker: Path) -> Path:
    """A checkpoint folder (model.json + model.pt) whose model.pt carries a payload."""
    d = folder / "evil_ckpt"
    d.mkdir()
    torch.save({**lenet5_state(), "evil": Payload(marker)}, d / "model.pt")
    (d / "model.json").write_text(json.dumps({"arch": "lenet5", "options": {"num_classes": 10},
                                              "input_shape": [1, 28, 28]}))
    return d


def payload_resume(folder: Path, marker: Path) -> Path:
    """A training folder whose last.pt (the resume file `effai train` reads) carries a payload."""
    d = folder / "evil_train"
    d.mkdir()
    torch.save({"model": lenet5_state(), "evil": Payload(marker)}, d / "last.pt")
    return d


def empty_pt(folder: Path) -> Path:
    p = folder / "empty.pt"
    p.write_bytes(b"")
    return p


def truncated_pt(folder: Path) -> Path:
    p = folder / "truncated.pt"
    full = folder / "_full.pt"
    torch.save(lenet5_state(), full)
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return p


def wrong_arch_state(folder: Path) -> Path:
    """A resnet-ish state dict given as lenet5 (first key differs)."""
    from effai import zoo

    p = folder / "wrong_arch.pt"
    torch.save(zoo.create("lenet300_100", num_classes=10).state_dict(), p)
    return p


def wrong_shape_state(folder: Path) -> Path:
    """lenet5 keys, but the classifier has 7 classes instead of 10."""
    p = folder / "wrong_shape.pt"
    torch.save(lenet5_state(num_classes=7), p)
    return p


def nonfinite_state(folder: Path, value: float) -> Path:
    sd = lenet5_state()
    first = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first] = sd[first].clone()
    sd[first].view(-1)[3] = value
    p = folder / f"{'nan' if value != value else 'inf'}.pt"
    torch.save(sd, p)
    return p


def torchscript_file(folder: Path) -> Path:
    from effai import zoo

    p = folder / "scripted.pt"
    m = zoo.create("lenet5", num_classes=10).eval()
    torch.jit.trace(m, torch.randn(1, 1, 28, 28)).save(str(p))
    return p


def onnx_unsupported_op(folder: Path) -> Path:
    """A valid ONNX graph with a custom-domain op no runtime knows (node 'evil_node')."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 28, 28])
    node = helper.make_node("FrobnicateTensor", ["x"], ["y"], name="evil_node", domain="com.evil")
    g = helper.make_graph([node], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])
    p = folder / "unsupported_op.onnx"
    onnx.save(m, str(p))
    return p


def onnx_external_escape(folder: Path) -> Path:
    """An ONNX file whose initializer's external data is '../../etc/passwd'."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    node = helper.make_node("Add", ["x", "w"], ["y"], name="add")
    g = helper.make_graph([node], "g", [x], [y], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = folder / "onnx_escape"
    d.mkdir()
    p = d / "escape.onnx"
    onnx.save(m, str(p))
    return p


# ---------------------------------------------------------------- data
def _idx(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def idx_folder(folder: Path, name: str, images: bytes | None = None, labels: bytes | None = None,
               n: int = 40) -> Path:
    d = folder / name
    d.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(n, 8, 8), dtype=np.uint8)
    y = (np.arange(n) % 2).astype(np.uint8)
    (d / "train-images-idx3-ubyte.gz").write_bytes(images if images is not None else gzip.compress(_idx(x)))
    (d / "train-labels-idx1-ubyte.gz").write_bytes(labels if labels is not None else gzip.compress(_idx(y)))
    return d


def corrupt_gzip_idx(folder: Path) -> Path:
    good = gzip.compress(b"\x00" * 200)
    return idx_folder(folder, "corrupt_gzip", images=good[:10] + b"\xde\xad\xbe\xef" * 8 + good[-8:])


def bad_idx_header(folder: Path) -> Path:
    # magic says 3 dims of uint8, dims claim 1000x28x28 but the body holds 64 bytes
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 1000, 28, 28) + b"\x00" * 64
    return idx_folder(folder, "bad_idx_header", images=gzip.compress(raw))


def npz(folder: Path, name: str, x, y) -> Path:
    p = folder / name
    np.savez(p, x=np.asarray(x), y=np.asarray(y))
    return p


def images_mixed_sizes(folder: Path) -> Path:
    from PIL import Image

    d = folder / "mixed_sizes"
    for c, size in (("a", (8, 8)), ("b", (12, 9))):
        (d / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full(size[::-1], 40 * i, dtype=np.uint8)).save(d / c / f"{i}.png")
    return d


# ---------------------------------------------------------------- a model with hostile names
class ScriptNamed(torch.nn.Module):
    """A small model whose submodule names are not identifiers a report would expect."""

    def __init__(self):
        super().__init__()
        self.add_module("<script>alert(1)</script>", torch.nn.Linear(4, 3))

    def forward(self, x):
        return getattr(self, "<script>alert(1)</script>")(x)
