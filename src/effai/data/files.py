"""Loaders for the user's own data: IDX (MNIST / Fashion-MNIST format), .npz, image folders.

Each returns (x float32 NCHW, y int64, class names) or raises InputError naming the file
and what is wrong with it.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from effai.errors import InputError

_IDX_DTYPES: dict[int, type | str] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IMAGE_PIXELS = 1 << 24  # 16 Mpixel per image (4096x4096); PIL only warns below 179 M
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or .gz): magic 0x0000 TT DD, DD big-endian dims, then data.

    The declared size is checked (exactly: Python integers, no wrap-around) against the bytes
    present before anything is allocated, and a .gz is inflated no further than that.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip_idx(path, raw)
    dims, dtype, offset = _idx_header(path, raw)
    expected = math.prod(dims) * dtype.itemsize
    body = raw[offset:]
    if len(body) != expected:
        raise InputError(f"{path}: IDX header declares dims {list(dims)} ({expected} bytes) but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx_header(path: Path, raw: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise InputError(f"{path}: IDX header truncated ({ndim} dimensions declared)")
    return struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]), np.dtype(_IDX_DTYPES[raw[2]]), 4 + 4 * ndim


def _gunzip_idx(path: Path, raw: bytes) -> bytes:
    """Inflate a .gz IDX file no further than one byte past what its header declares (and
    never past the zip-bomb limit), so a tiny file cannot fill memory."""
    from effai.limits import INFLATION_FLOOR, MAX_INFLATION, check_inflation

    bomb = max(INFLATION_FLOOR, MAX_INFLATION * len(raw))
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, 4 + 4 * 255)  # room for the longest header
        cap = bomb
        if len(out) >= 4 and out[3] and len(out) >= 4 + 4 * out[3]:
            dims, dtype, offset = _idx_header(path, out)
            cap = min(bomb, offset + math.prod(dims) * dtype.itemsize)
        if len(out) <= cap:  # (max_length 0 would mean no limit)
            out += d.decompress(d.unconsumed_tail, cap + 1 - len(out))
    except zlib.error as e:
        raise InputError(f"{path}: corrupt gzip data ({e})") from None
    if len(out) > cap:
        if cap == bomb:
            check_inflation(len(out), len(raw), str(path))
        return out  # more than the header declares: read_idx reports the mismatch
    if not d.eof:
        raise InputError(f"{path}: corrupt gzip data (the stream is truncated)")
    return out


def load_idx_dir(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images and labels from a folder of IDX files (e.g. train-images-idx3-ubyte.gz).

    Training and test files, when both present, are pooled: effai makes its own seeded
    stratified splits so every data set is treated alike.
    """
    files = sorted(p for p in folder.iterdir() if "idx" in p.name and p.is_file())
    images = [p for p in files if "idx3" in p.name]
    labels = [p for p in files if "idx1" in p.name]
    if not images or len(images) != len(labels):
        raise InputError(f"{folder}: expected matching *idx3* image and *idx1* label files, found {[p.name for p in files]}")
    xs, ys = [], []
    for img, lab in zip(images, labels, strict=True):
        x, y = read_idx(img), read_idx(lab)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise InputError(f"{img.name}/{lab.name}: {x.shape[0]} images of shape {x.shape[1:]} vs {y.shape} labels")
        if len(x) == 0:
            raise InputError(f"{img}: holds 0 images")
        if y.dtype.kind not in "iu":
            raise InputError(f"{lab}: labels must be integers, the file holds {y.dtype.name} values")
        xs.append(x)
        ys.append(y)
    if len({x.shape[1:] for x in xs}) > 1:
        raise InputError(f"{folder}: image files hold different image sizes {sorted({x.shape[1:] for x in xs})}")
    x = np.concatenate(xs).astype(np.float32)[:, None] / 255.0
    y = np.concatenate(ys).astype(np.int64)
    return x, y, class_names(y, folder)


def class_names(y: np.ndarray, where, names=None) -> list[str]:
    """Names of classes 0..max(y), checked before any list is built: at least one sample, no
    negative label, and labels below len(names) or, without names, below the number of samples
    (every class must have one) and MAX_CLASSES.

    >>> class_names(np.array([0, 2, 1]), "d")
    ['0', '1', '2']
    >>> class_names(np.array([0, 10**12]), "d.npz")
    Traceback (most recent call last):
    effai.errors.InputError: d.npz: label 1000000000000 out of range: labels are class numbers 0..K-1, every class present, and 2 samples hold at most 2 classes
    """
    from effai.limits import MAX_CLASSES

    if len(y) == 0:
        raise InputError(f"{where}: zero samples")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise InputError(f"{where}: label {lo} is negative")
    if names is not None:
        if hi >= len(names):
            raise InputError(f"{where}: label {hi} out of range for {len(names)} classes")
        return [str(n) for n in names]
    if hi >= min(len(y), MAX_CLASSES):
        most = min(len(y), MAX_CLASSES)
        raise InputError(f"{where}: label {hi} out of range: labels are class numbers 0..K-1, every class present, "
                         f"and {len(y)} samples hold at most {most} classes")
    return [str(c) for c in range(hi + 1)]


def load_npz(path: Path):  # noqa: C901 - each branch refuses one kind of bad file with its own one-line message
    """Arrays `x` and integer labels `y` (N,) from an .npz file: (x, y, class names, mask or None).

    Images / features: `x` (N,F), (N,H,W), (N,C,H,W) or (N,H,W,C); uint8 pixels are divided by
    255, any other values are kept as they are (never rescaled behind the user's back). Token
    sequences: an integer `x` of shape (N, L) stays int64 token ids, with an optional `mask` (N, L)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        kind = "a pickle, which effai never loads from data files" if head[:1] == b"\x80" else (
            "empty" if not head else f"starts with {head[:4]!r}")
        raise InputError(f"{path}: not a readable .npz file (expected a zip of .npy arrays; the file is {kind})")
    from effai.fileio import check_zip_inflation

    check_zip_inflation(path)
    _check_npy_headers(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise InputError(f"{path}: .npz must hold arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
            names = f["class_names"] if "class_names" in f else None
            mask = f["mask"] if "mask" in f else None
    except InputError:
        raise
    except ValueError as e:
        raise InputError(f"{path}: refused: {e}".splitlines()[0]) from None
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError...
        raise InputError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})".splitlines()[0]) from None
    if x.dtype.kind not in "fiu":
        raise InputError(f"{path}: 'x' must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise InputError(f"{path}: 'x' must be (N, F), (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {x.shape}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise InputError(f"{path}: 'y' must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if len(x) != len(y):
        raise InputError(f"{path}: 'x' has {len(x)} samples but 'y' has {len(y)}")
    if names is not None and names.ndim != 1:
        raise InputError(f"{path}: 'class_names' must be a 1-D array of names, got shape {names.shape}")
    if x.ndim == 2 and x.dtype.kind in "iu":  # token ids
        if mask is not None and (mask.shape != x.shape or mask.dtype.kind not in "iub"):
            raise InputError(f"{path}: 'mask' must be an integer array of x's shape {x.shape}, got "
                             f"shape {mask.shape} dtype {mask.dtype}")
        if x.size and x.min() < 0:
            raise InputError(f"{path}: token id {int(x.min())} in 'x' is negative")
        return (np.ascontiguousarray(x.astype(np.int64)), y.astype(np.int64), class_names(y, path, names),
                None if mask is None else mask.astype(np.int64))
    pixels = x.dtype == np.uint8
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if pixels:
        x = x / 255.0
    return np.ascontiguousarray(x), y.astype(np.int64), class_names(y, path, names), None


def _check_npy_headers(path: Path) -> None:
    """Each .npy member's header must declare exactly the bytes the member holds (numpy
    allocates the declared shape before reading a zip member)."""
    import zipfile

    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                with z.open(info) as fh:
                    version = npy.read_magic(fh)
                    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                    shape, _, dtype = read(fh, max_header_size=10_000)
                    if dtype.hasobject:
                        raise InputError(f"{path}: member {info.filename!r} holds Python objects (a pickle), "
                                         "which effai never loads from data files")
                    declared = math.prod(shape) * dtype.itemsize
                    if declared != info.file_size - fh.tell():
                        raise InputError(f"{path}: member {info.filename!r} declares shape {list(shape)} "
                                         f"({declared} bytes) but holds {info.file_size - fh.tell()} bytes")
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - not a zip, or a damaged member: np.load names the problem
        return


def load_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An image folder with one subfolder per class (the ImageFolder convention)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise InputError("reading image folders needs Pillow: pip install pillow") from None
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{folder}: no class subfolders (expected one folder of images per class)")
    xs, ys, size, mode = [], [], None, None
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{folder / cls}: class {cls!r} has no images")
        for f in files:
            try:
                with Image.open(f) as im:
                    if im.width * im.height > MAX_IMAGE_PIXELS:
                        raise InputError(f"{f}: declares {im.width}x{im.height} pixels; refused (limit "
                                         f"{MAX_IMAGE_PIXELS} pixels per image)")
                    im.load()
                    mode = mode or ("L" if im.mode in ("L", "1", "I", "I;16") else "RGB")
                    arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
            except InputError:
                raise
            except Exception as e:
                raise InputError(f"{f}: unreadable image ({type(e).__name__})") from None
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise InputError(f"{f}: image size {arr.shape[:2]} differs from the first image's {size[:2]}; resize them to one size")
            xs.append(arr)
            ys.append(label)
    x = np.stack(xs)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return x, np.asarray(ys, dtype=np.int64), classes
