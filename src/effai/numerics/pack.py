"""Real storage for sub-byte integer codes: several codes per byte, exact round-trip.

Codes are two's-complement in `bits` bits, packed little-end first (the first code in the
lowest bits of the first byte):

- int4: codes in [-8, 7], two per byte;
- int2 and ternary: codes in [-2, 1] (ternary uses -1, 0, 1), four per byte;
- binary: codes in {-1, +1}, eight per byte (bit 1 means +1);
- int8: one per byte (for completeness).
"""

from __future__ import annotations

import numpy as np

from effai.errors import InputError

_BITS = {"int8": 8, "int4": 4, "int2": 2, "ternary": 2, "binary": 1}


def _bits(bits) -> int:
    if isinstance(bits, str):
        if bits not in _BITS:
            raise InputError(f"bits must be 8, 4, 2, 1 or one of {', '.join(_BITS)}, got {bits!r}")
        return _BITS[bits]
    if bits not in (8, 4, 2, 1):
        raise InputError(f"bits must be 8, 4, 2 or 1, got {bits!r}")
    return int(bits)


def pack(q, bits) -> bytes:
    """Pack integer codes into bytes, `8 // bits` codes per byte.

    >>> pack([1, -1, 7, -8], 4).hex()
    'f187'
    >>> pack([1, -1, 1, 1, -1, -1, -1, 1, 1], "binary").hex()
    '8d01'
    """
    b = _bits(bits)
    a = np.asarray(q.detach().cpu().numpy() if hasattr(q, "detach") else q).reshape(-1)
    if a.size and a.dtype.kind not in "iub":
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise InputError(f"pack needs integer codes, got dtype {a.dtype} with non-integer values")
    a = a.astype(np.int64)
    if b == 1:
        bad = (a != 1) & (a != -1)
        if bad.any():
            raise InputError(f"binary codes must be -1 or +1; found {int(a[bad][0])} at index {int(np.argmax(bad))}")
        return np.packbits(a > 0, bitorder="little").tobytes()
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    bad = (a < lo) | (a > hi)
    if bad.any():
        raise InputError(f"{b}-bit codes must lie in [{lo}, {hi}]; found {int(a[bad][0])} at index {int(np.argmax(bad))}")
    u = (a & ((1 << b) - 1)).astype(np.uint8)
    per = 8 // b
    pad = (-u.size) % per
    if pad:
        u = np.concatenate([u, np.zeros(pad, np.uint8)])
    u = u.reshape(-1, per)
    out = np.zeros(u.shape[0], np.uint8)
    for i in range(per):
        out |= u[:, i] << np.uint8(i * b)
    return out.tobytes()


def unpack(buf, bits, n: int) -> np.ndarray:
    """The first `n` codes packed in `buf`, as int8.

    >>> unpack(bytes.fromhex("f187"), 4, 4).tolist()
    [1, -1, 7, -8]
    >>> unpack(pack([-1, 0, 1, 1, 0], "ternary"), "ternary", 5).tolist()
    [-1, 0, 1, 1, 0]
    """
    b = _bits(bits)
    raw = np.frombuffer(bytes(buf), dtype=np.uint8)
    per = 8 // b
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}")
    if n > raw.size * per:
        raise InputError(f"buffer of {raw.size} bytes holds at most {raw.size * per} {b}-bit codes, asked for {n}")
    if b == 1:
        bits_ = np.unpackbits(raw, bitorder="little")[:n]
        return np.where(bits_ > 0, 1, -1).astype(np.int8)
    if b == 8:
        return raw[:n].view(np.int8).copy()
    mask = (1 << b) - 1
    cols = [(raw >> np.uint8(i * b)) & np.uint8(mask) for i in range(per)]
    u = np.stack(cols, axis=1).reshape(-1)[:n].astype(np.int16)
    u = np.where(u >= (1 << (b - 1)), u - (1 << b), u)
    return u.astype(np.int8)


def packed_nbytes(n: int, bits) -> int:
    """Bytes `pack` uses for `n` codes.

    >>> packed_nbytes(1000, 4), packed_nbytes(1000, "binary")
    (500, 125)
    """
    b = _bits(bits)
    return -(-n * b // 8)
