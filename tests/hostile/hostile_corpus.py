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


# ---------------------------------------------------------------- round two (issue 20)
def whole_module_pt(folder: Path) -> Path:
    """A whole nn.Module pickled with torch.save(model) (needs its class to unpickle)."""
    from effai import zoo

    p = folder / "whole_model.pt"
    torch.save(zoo.create("lenet5"), p)
    return p


def zip_bomb(path: Path, member: str, inflated: int, head: bytes = b"") -> Path:
    """A zip whose `member` inflates to `inflated` bytes (zeros after `head`) from a small file."""
    import zipfile

    chunk = bytes(16 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open(member, "w", force_zip64=True) as f:
            f.write(head)
            left = inflated - len(head)
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return path


def npz_zip_bomb(folder: Path, gib: float = 1.0) -> Path:
    """An .npz whose 'x' declares and holds `gib` GiB of zeros, deflated to about 1/1000 of it."""
    from numpy.lib import format as npy

    n = int(gib * (1 << 30)) // 4
    import io

    hdr = io.BytesIO()
    npy.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    return zip_bomb(folder / "bomb.npz", "x.npy", len(hdr.getvalue()) + 4 * n, hdr.getvalue())


def pt_zip_bomb(folder: Path, gib: float = 1.0) -> Path:
    """A torch-style zip (archive/data.pkl + archive/data/0) whose storage inflates to `gib` GiB."""
    import zipfile

    p = folder / "bomb.pt"
    zip_bomb(p, "archive/data/0", int(gib * (1 << 30)))
    with zipfile.ZipFile(p, "a") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/version", b"3\n")
    return p


def npz_lying_header(folder: Path) -> Path:
    """An .npz whose 'x' header declares 10^12 floats but holds 16 bytes (numpy would allocate 4 TB)."""
    import io
    import zipfile

    from numpy.lib import format as npy

    hdr = io.BytesIO()
    npy.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    p = folder / "lying_header.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", hdr.getvalue() + bytes(16))
        buf = io.BytesIO()
        np.save(buf, np.zeros(4, np.int64))
        z.writestr("y.npy", buf.getvalue())
    return p


def idx_raw(dtype_code: int, dims, body: bytes) -> bytes:
    return bytes([0, 0, dtype_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def onnx_model(folder: Path, name: str, nodes, inputs, outputs, opsets=(("", 17),)) -> Path:
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    p = folder / name
    onnx.save(m, str(p))
    return p


def onnx_no_nodes(folder: Path) -> Path:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    return onnx_model(folder, "no_nodes.onnx", [], [x], [x])


def onnx_custom_op_in_if(folder: Path) -> Path:
    """An If whose then-branch holds a custom op (node 'hidden') that no runtime defines."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    then_g = helper.make_graph([helper.make_node("Frob", ["x"], ["t"], name="hidden", domain="com.evil")], "then",
                               [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="plain")], "else",
                               [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)
    return onnx_model(folder, "custom_in_if.onnx", [node], [c, x], [y], (("", 17), ("com.evil", 1)))


def onnx_huge_input(folder: Path) -> Path:
    """A one-node graph declaring a 1x100000x100000x100 input (4 TB of float32)."""
    from onnx import TensorProto, helper

    shape = [1, 100_000, 100_000, 100]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    return onnx_model(folder, "huge_input.onnx", [helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def checkpoint_folder(folder: Path, name: str, meta: dict) -> Path:
    d = folder / name
    d.mkdir()
    torch.save(lenet5_state(), d / "model.pt")
    (d / "model.json").write_text(json.dumps(meta))
    return d
