"""Canonical Huffman coding (lengths limited to 15 bits) and the bit streams it writes.

A canonical code is fully described by each symbol's code length, so the file stores
only the lengths (4 bits per symbol of the alphabet), never the tree.
"""

from __future__ import annotations

import heapq

import numpy as np

MAX_LEN = 15


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol (0 for symbols that never occur), at most 15.

    >>> code_lengths(np.array([5, 1, 1, 0])).tolist()
    [1, 2, 2, 0]
    """
    counts = np.asarray(counts, dtype=np.int64)
    used = np.nonzero(counts)[0]
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    freq = counts.copy()
    while True:
        # classic two-queue-free heap build with parent pointers: O(n log n)
        heap = [(int(freq[s]), int(s)) for s in used]
        heapq.heapify(heap)
        parent = {}
        nxt = len(counts)
        while len(heap) > 1:
            f1, a = heapq.heappop(heap)
            f2, b = heapq.heappop(heap)
            parent[a] = parent[b] = nxt
            heapq.heappush(heap, (f1 + f2, nxt))
            nxt += 1
        # parents are created after their children, so walking ids downward sees a parent first
        depth = {nxt - 1: 0}
        for node in sorted(parent, reverse=True):
            depth[node] = depth[parent[node]] + 1
        for s in used:
            lengths[s] = depth[int(s)]
        if lengths.max() <= MAX_LEN:
            return lengths
        freq[used] = np.maximum(1, freq[used] // 2)  # flatten the distribution, retry


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Codes assigned in (length, symbol) order, as in DEFLATE."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for s in sorted((i for i in range(len(lengths)) if lengths[i]), key=lambda i: (lengths[i], i)):
        code <<= int(lengths[s]) - prev
        codes[s] = code
        prev = int(lengths[s])
        code += 1
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack `symbols` MSB-first with the canonical code of `lengths`.

    >>> ls = code_lengths(np.array([5, 1, 1]))
    >>> decode(encode(np.array([0, 1, 2, 0]), ls), ls, 4).tolist()
    [0, 1, 2, 0]
    """
    codes = canonical_codes(lengths)
    acc, nbits, out = 0, 0, bytearray()
    for s in np.asarray(symbols).tolist():
        acc = (acc << int(lengths[s])) | int(codes[s])
        nbits += int(lengths[s])
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
        acc &= (1 << nbits) - 1
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


def decode(data: bytes, lengths: np.ndarray, n: int) -> np.ndarray:
    """Read `n` symbols back from `data`."""
    codes = canonical_codes(lengths)
    table = {(int(lengths[s]), int(codes[s])): s for s in range(len(lengths)) if lengths[s]}
    out = np.empty(n, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist()
    pos, code, length = 0, 0, 0
    for i in range(n):
        while True:
            code = (code << 1) | bits[pos]
            pos += 1
            length += 1
            s = table.get((length, code))
            if s is not None:
                out[i] = s
                code = length = 0
                break
            if length > MAX_LEN:
                raise ValueError("corrupt Huffman stream")
    return out


def pack_lengths(lengths: np.ndarray) -> bytes:
    """Two 4-bit code lengths per byte."""
    ls = np.asarray(lengths, dtype=np.uint8)
    if len(ls) % 2:
        ls = np.append(ls, 0).astype(np.uint8)
    return ((ls[0::2] << 4) | ls[1::2]).astype(np.uint8).tobytes()


def unpack_lengths(data: bytes, n: int) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8)
    return np.stack([b >> 4, b & 15], 1).reshape(-1)[:n].astype(np.int64)
