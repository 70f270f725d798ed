"""Real savings, measured: does the pruned model deploy smaller and faster?

`savings(original, pruned, example_inputs)` counts parameters and MACs, writes both models'
weights to bytes (dense FP32, and for sparse weights a real sparse encoding: CSR or a bitmask
plus the nonzero values, whichever is smaller per tensor) and times both with ONNX Runtime in
interleaved rounds. When the deployed model is not faster or not smaller it says so: a
`warnings.warn` and a flag in the report. Masks alone (unstructured sparsity run densely)
save file size at best, never time; this report makes that visible.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class SavingsReport:
    params_before: int
    params_after: int
    nonzero_after: int
    macs_before: int
    macs_after: int
    dense_bytes_before: int
    dense_bytes_after: int
    sparse_bytes_after: int
    latency_before_ms: float | None
    latency_after_ms: float | None
    latency_method: str
    smaller: bool
    faster: bool | None
    warnings: list[str] = field(default_factory=list)

    @property
    def mac_reduction(self) -> float:
        return self.macs_before / max(1, self.macs_after)

    @property
    def speedup(self) -> float | None:
        if not self.latency_before_ms or not self.latency_after_ms:
            return None
        return self.latency_before_ms / self.latency_after_ms

    @property
    def size_reduction(self) -> float:
        return self.dense_bytes_before / max(1, min(self.dense_bytes_after, self.sparse_bytes_after))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(mac_reduction=self.mac_reduction, speedup=self.speedup, size_reduction=self.size_reduction)
        return d


def macs(model: nn.Module, example: torch.Tensor) -> int:
    """Dense multiply-accumulates of one forward pass (zeros in weights still cost MACs)."""
    import effai.profile as P

    return int(P.profile(model, example_inputs=example, latency=False).total.macs)


def dense_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict written with `torch.save` (FP32 as stored)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def encode_sparse(t: torch.Tensor) -> bytes:
    """One tensor in the smallest of: dense, bitmask + nonzeros, CSR (rows = dim 0).

    Header: format byte (0 dense, 1 bitmask, 2 CSR), ndim, shape (u32 each).

    >>> w = torch.zeros(64, 64); w[0, :8] = 1.0
    >>> len(encode_sparse(w)) < w.numel() * 4 // 10
    True
    """
    a = t.detach().cpu().float().numpy()
    header = struct.pack("<BB", 0, a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
    dense = a.astype("<f4").tobytes()
    flat = a.reshape(a.shape[0] if a.ndim else 1, -1)
    nz = flat != 0
    values = flat[nz].astype("<f4").tobytes()
    bitmask = np.packbits(nz.ravel()).tobytes() + values
    cols = np.nonzero(nz)[1]
    col_dtype = "<u2" if flat.shape[1] < 65536 else "<u4"
    rowptr = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype("<u4").tobytes()
    csr = rowptr + cols.astype(col_dtype).tobytes() + values
    best = min((len(dense), 0, dense), (len(bitmask), 1, bitmask), (len(csr), 2, csr))
    return bytes([best[1]]) + header[1:] + best[2]


def sparse_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers in the sparse encoding above (really encoded)."""
    return sum(len(encode_sparse(v)) + len(k) for k, v in model.state_dict().items() if v.is_floating_point())


def savings(original: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor, latency: bool = True,
            threads: int = 1, rounds: int = 5, runs: int = 10, min_speedup: float = 1.05) -> SavingsReport:
    """Measure what pruning really saved, and warn when the deployed model is not better.

    >>> from effai.prune import ChannelConfig, prune_
    >>> import copy
    >>> a = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 4, 3))
    >>> b = prune_(copy.deepcopy(a), ChannelConfig(0.5, input_shape=(1, 3, 8, 8)))
    >>> r = savings(a, b, torch.zeros(1, 3, 8, 8), latency=False)
    >>> r.params_after < r.params_before, r.mac_reduction > 1.9, r.smaller
    (True, True, True)
    """
    from effai.errors import InputError

    if not isinstance(example_inputs, torch.Tensor):
        raise InputError(f"example_inputs: expected a tensor, got {type(example_inputs).__name__}")
    with torch.no_grad():
        out_a, out_b = original.eval()(example_inputs), pruned.eval()(example_inputs)
    if out_a.shape != out_b.shape:
        raise InputError(f"pruned model: output shape {tuple(out_b.shape)} differs from {tuple(out_a.shape)}")
    before, after = dense_bytes(original), dense_bytes(pruned)
    sparse_after = sparse_bytes(pruned)
    lat_a = lat_b = None
    method = "not measured"
    if latency:
        from effai.prune.latency import measure_models

        lat_a, lat_b = measure_models([original, pruned], example_inputs, threads, rounds, runs)
        method = (f"ONNX Runtime CPU, batch {example_inputs.shape[0]}, {threads} thread(s), "
                  f"{rounds} interleaved rounds x {runs} runs, median of the per-round means")
    smaller = min(after, sparse_after) < before
    faster = None if lat_a is None or lat_b is None else lat_a / lat_b >= min_speedup
    rep = SavingsReport(
        params_before=sum(p.numel() for p in original.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        nonzero_after=sum(int((p != 0).sum()) for p in pruned.parameters()),
        macs_before=macs(original, example_inputs), macs_after=macs(pruned, example_inputs),
        dense_bytes_before=before, dense_bytes_after=after, sparse_bytes_after=sparse_after,
        latency_before_ms=lat_a, latency_after_ms=lat_b, latency_method=method, smaller=smaller, faster=faster)
    if not smaller:
        rep.warnings.append("the pruned model is not smaller on disk, dense or sparse-encoded")
    if faster is False:
        rep.warnings.append(f"the pruned model is not faster in ONNX Runtime ({lat_a:.3f} ms -> {lat_b:.3f} ms); "
                            "unstructured zeros run as dense math: use structured pruning for speed")
    for w in rep.warnings:
        warnings.warn(w, stacklevel=2)
    return rep
