"""Limits on what a file may declare, checked before anything is allocated.

A few bytes can declare gigabytes: a zip member that inflates 4000-fold, an IDX header whose
dimensions multiply past 2^64, a label of 10^12 (10^12 class names), an ONNX input of
10^12 elements. Every reader checks the declared size here first, against the file's own
size and these limits, so such a file is refused in well under a second, before any
allocation, with one line naming the file and the number.
"""

from __future__ import annotations

import math

from effai.errors import InputError

MAX_CLASSES = 1_000_000  # more than any classification data set (ImageNet-21k has 21,841)
MAX_INFLATION = 100  # a zip member may inflate at most 100-fold (torch.save stores, np.savez_compressed ~5x)
INFLATION_FLOOR = 64 << 20  # ... except that anything up to 64 MiB in all is fine
MAX_TENSOR_BYTES = 16 << 30  # one declared input or data array: 16 GiB
MAX_WIDTH_MULT = 16.0
MAX_CHANNELS = 65_536
MAX_RESOLUTION = 16_384
MAX_SEED = 2**63 - 1  # what torch.manual_seed and numpy accept


def human_bytes(n: float) -> str:
    """
    >>> human_bytes(5 * 2**30), human_bytes(1536)
    ('5.0 GiB', '1.5 KiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError  # pragma: no cover


def check_inflation(declared: int, stored: int, where: str) -> None:
    """Refuse an archive declaring `declared` bytes once inflated from a `stored`-byte file.

    >>> check_inflation(10 << 20, 2 << 20, "ok.npz")
    >>> check_inflation(6 << 30, 1_400_000, "bomb.npz")
    Traceback (most recent call last):
    effai.errors.InputError: bomb.npz: declares 6.0 GiB of content in a 1.3 MiB file (4601x); refused as a likely zip bomb (limit 100x)
    """
    if declared > max(INFLATION_FLOOR, MAX_INFLATION * stored):
        raise InputError(f"{where}: declares {human_bytes(declared)} of content in a {human_bytes(stored)} file "
                         f"({declared // max(stored, 1)}x); refused as a likely zip bomb (limit {MAX_INFLATION}x)")


def check_tensor(shape, itemsize: int, where: str, what: str = "array") -> int:
    """Bytes of an array of `shape` (exact: Python ints never wrap); refuse more than MAX_TENSOR_BYTES.

    >>> check_tensor((1, 100000, 100000, 100), 4, "m.onnx", "input 'x'")
    Traceback (most recent call last):
    effai.errors.InputError: m.onnx: input 'x' declares shape 1x100000x100000x100 (3.6 TiB as float32-sized items); refused (limit 16.0 GiB)
    """
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InputError(f"{where}: {what} declares a negative dimension ({'x'.join(map(str, dims))})")
    n = math.prod(dims) * itemsize
    if n > MAX_TENSOR_BYTES:
        kind = {1: "byte", 2: "16-bit", 4: "float32-sized", 8: "64-bit"}.get(itemsize, f"{itemsize}-byte")
        raise InputError(f"{where}: {what} declares shape {'x'.join(map(str, dims))} ({human_bytes(n)} as {kind} "
                         f"items); refused (limit {human_bytes(MAX_TENSOR_BYTES)})")
    return n


def check_seed(seed, where: str = "seed") -> int:
    """A seed torch and numpy accept: an integer in [0, 2^63 - 1].

    >>> check_seed(-1)
    Traceback (most recent call last):
    effai.errors.InputError: seed: expected an integer from 0 to 9223372036854775807, got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{where}: expected an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed
