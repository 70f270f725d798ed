"""The `.effdc` file: Deep Compression's pruned, shared, Huffman-coded weights. No pickle.

Layout (little-endian):

    magic      8 bytes  b"EFFAIDC1"
    hlen       u32      length of the header
    header     hlen bytes: zlib-compressed UTF-8 JSON (no spaces):
               {"arch": str|null, "options": {...}, "t": [entry, ...]}
    payload    the entries' blobs, back to back, in header order

Each entry describes one state-dict tensor: `n` name, `s` shape, `d` dtype, `e` encoding.

- `e="raw"` (biases, norms, anything not shared): the tensor's bytes as stored, `b` bytes.
- `e="dc"` (a shared, pruned weight): `k` codebook size, `gb` gap bits, `m` entries,
  `li`/`lg` byte lengths of the two Huffman streams. The blob is
    codebook     k x f32                  (cluster centroids)
    idx_lengths  ceil((k+1)/2) bytes      (4-bit canonical code length of symbols 0..k;
                                           symbol k is the filler zero)
    gap_lengths  2**(gb-1) bytes          (4-bit lengths of gap symbols 0..2**gb-1)
    idx_stream   li bytes                 (m cluster indices, Huffman-coded)
    gap_stream   lg bytes                 (m gaps, Huffman-coded)
  Walking the weight flattened row-major, entry j sits at position p_j = p_{j-1} + gap_j + 1
  (p_{-1} = -1). Its value is codebook[idx_j], or 0 when idx_j == k: a filler entry, emitted
  when the gap to the next nonzero exceeds 2**gb - 1 (the paper's relative indexing with
  filler zeros, Han et al. 2016, Fig. 2). Every other position is zero.

Loading reads numbers only, so the restored weights are bit-identical to the saved model.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effai.compress import huffman
from effai.errors import InputError
from effai.fileio import write_atomic

MAGIC = b"EFFAIDC1"
MAX_SHARED = 4096  # more distinct values than this: the tensor is not shared, store it raw


def _is_fc(name: str, t: torch.Tensor) -> bool:
    return t.dim() == 2


def sparse_entries(w: np.ndarray, gap_bits: int) -> dict:
    """Counts of the relative-index encoding without coding it: nonzeros, fillers, clusters."""
    nzpos = np.nonzero(w.ravel())[0]
    gaps = np.diff(np.concatenate([[-1], nzpos])) - 1
    fillers = int((gaps // (2**gap_bits)).sum())  # each filler jumps 2**gap_bits positions
    return {"nonzero": len(nzpos), "entries": len(nzpos) + fillers, "fillers": fillers,
            "clusters": len(np.unique(w.ravel()[nzpos]))}


def encode_shared(w: np.ndarray, gap_bits: int) -> tuple[dict, bytes, dict]:
    """One shared weight -> (header entry fields, blob, stage sizes in bits)."""
    flat = w.ravel()
    nzpos = np.nonzero(flat)[0]
    codebook, labels = np.unique(flat[nzpos], return_inverse=True)
    k = len(codebook)
    max_gap = 2**gap_bits - 1
    idx_list, gaps = [], []
    prev = -1
    for p, lab in zip(nzpos.tolist(), labels.tolist(), strict=True):
        while p - prev - 1 > max_gap:  # filler zero: jump max_gap + 1 positions
            prev += max_gap + 1
            idx_list.append(k)
            gaps.append(max_gap)
        idx_list.append(lab)
        gaps.append(p - prev - 1)
        prev = p
    idx, gap = np.asarray(idx_list, dtype=np.int64), np.asarray(gaps, dtype=np.int64)
    li = huffman.code_lengths(np.bincount(idx, minlength=k + 1)) if len(idx) else np.zeros(k + 1, np.int64)
    lg = huffman.code_lengths(np.bincount(gap, minlength=max_gap + 1)) if len(gap) else np.zeros(max_gap + 1, np.int64)
    si, sg = huffman.encode(idx, li), huffman.encode(gap, lg)
    blob = (codebook.astype("<f4").tobytes() + huffman.pack_lengths(li) + huffman.pack_lengths(lg) + si + sg)
    entry = {"e": "dc", "k": k, "gb": gap_bits, "m": len(idx), "li": len(si), "lg": len(sg)}
    stats = {"nonzero": len(nzpos), "entries": len(idx), "fillers": len(idx) - len(nzpos), "clusters": k}
    return entry, blob, stats


def decode_shared(entry: dict, blob: bytes, shape, name: str) -> np.ndarray:
    k, gb, m = entry["k"], entry["gb"], entry["m"]
    o = 0
    codebook = np.frombuffer(blob, "<f4", k, o)
    o += 4 * k
    n_li, n_lg = (k + 2) // 2, (2**gb + 1) // 2
    li = huffman.unpack_lengths(blob[o:o + n_li], k + 1)
    o += n_li
    lg = huffman.unpack_lengths(blob[o:o + n_lg], 2**gb)
    o += n_lg
    try:
        idx = huffman.decode(blob[o:o + entry["li"]], li, m)
        o += entry["li"]
        gap = huffman.decode(blob[o:o + entry["lg"]], lg, m)
    except (ValueError, IndexError):
        raise InputError(f"{name}: corrupt Huffman stream in the compressed file") from None
    pos = np.cumsum(gap + 1) - 1
    n = int(np.prod(shape))
    if len(pos) and pos[-1] >= n:
        raise InputError(f"{name}: compressed positions run past the tensor's {n} elements")
    out = np.zeros(n, dtype=np.float32)
    real = idx < k
    out[pos[real]] = codebook[idx[real]]
    return out.reshape(shape)


def save_compressed(model: nn.Module | dict, path: str | os.PathLike, arch: str | None = None,
                    options: dict | None = None, conv_gap_bits: int = 8, fc_gap_bits: int = 5,
                    filter_fn=None, auto_gap_bits: bool = True) -> dict:
    """Write `model`'s state dict to `path` in the format above; returns sizes per tensor.

    Conv/Linear weights with at most 4096 distinct values are stored shared (codebook +
    Huffman-coded indices and gaps); everything else raw. With `auto_gap_bits`, each layer's
    relative-index width is the one of 3..8 bits giving the smallest blob (lossless: only
    the number of filler entries and the gap code table change); otherwise conv / fc use
    `conv_gap_bits` / `fc_gap_bits` (the paper's 8 / 5).

    >>> import tempfile, os
    >>> net = nn.Linear(64, 8)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.randint(-2, 3, (8, 64)).float() * 0.5)
    >>> p = os.path.join(tempfile.mkdtemp(), "m.effdc")
    >>> _ = save_compressed(net, p)
    >>> back = load_compressed(p, model=nn.Linear(64, 8))
    >>> torch.equal(back.weight, net.weight), os.path.getsize(p) < 64 * 8 * 4 // 4
    (True, True)
    """
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    shared_names = set()
    if isinstance(model, nn.Module):
        for n, m in model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and (filter_fn is None or filter_fn(m, n)):
                shared_names.add(f"{n}.weight" if n else "weight")
    entries, blobs, stats = [], [], {}
    for name, t in sd.items():
        t = t.detach().cpu()
        a = t.numpy()
        if name in shared_names and t.dtype == torch.float32 and len(np.unique(a)) <= MAX_SHARED:
            widths = range(3, 9) if auto_gap_bits else [fc_gap_bits if _is_fc(name, t) else conv_gap_bits]
            entry, blob, st = min((encode_shared(a, gb) for gb in widths), key=lambda r: len(r[1]))
        else:
            blob = np.ascontiguousarray(a).tobytes()
            entry, st = {"e": "raw", "b": len(blob)}, {}
        entry.update(n=name, s=list(t.shape), d=str(t.dtype).replace("torch.", ""))
        st["bytes"] = len(blob)
        entries.append(entry)
        blobs.append(blob)
        stats[name] = st
    header = zlib.compress(json.dumps({"arch": arch, "options": options or {}, "t": entries},
                                      separators=(",", ":")).encode(), 9)
    write_atomic(path, MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs))
    return stats


def _blob_size(e: dict) -> int:
    if e["e"] == "raw":
        return e["b"]
    return 4 * e["k"] + (e["k"] + 2) // 2 + (2 ** e["gb"] + 1) // 2 + e["li"] + e["lg"]


def load_compressed(path: str | os.PathLike, arch: str | None = None, options: dict | None = None,
                    model: nn.Module | None = None) -> nn.Module:
    """Rebuild the model from a `.effdc` file: into `model` if given, else a zoo model
    `arch` (default: the one recorded in the file) created with `options`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:8] != MAGIC or len(data) < 12:
        raise InputError(f"{path}: not an effai compressed file (bad magic)")
    (hlen,) = struct.unpack("<I", data[8:12])
    try:
        header = json.loads(zlib.decompress(data[12:12 + hlen]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, zlib.error):
        raise InputError(f"{path}: corrupt header") from None
    if model is None:
        from effai import zoo

        name = arch or header.get("arch")
        if not name:
            raise InputError(f"{path}: the file names no architecture; pass arch=")
        model = zoo.create(name, **{**header.get("options", {}), **(options or {})})
    o = 12 + hlen
    sd = {}
    for e in header["t"]:
        size = _blob_size(e)
        blob = data[o:o + size]
        if len(blob) != size:
            raise InputError(f"{path}: truncated at tensor {e['n']!r}")
        o += size
        dtype = getattr(torch, e["d"])
        if e["e"] == "raw":
            arr = np.frombuffer(blob, dtype=torch.empty(0, dtype=dtype).numpy().dtype).reshape(e["s"])
            sd[e["n"]] = torch.from_numpy(arr.copy())
        else:
            sd[e["n"]] = torch.from_numpy(decode_shared(e, blob, e["s"], f"{path}: {e['n']}"))
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        raise InputError(f"{path}: does not fit the model ({str(err).splitlines()[0][:160]})") from None
    return model
