"""Memory: weight bytes at any bit-width, and peak activation memory from tensor liveness.

Peak activation memory is what must be alive at once when the executed graph runs in its
recorded order: a storage is live from the op that writes it (the model's inputs from the
start) to the last op that reads it (the model's outputs to the end). At each op its inputs
and outputs are live together. Views and in-place ops share their base's storage, so they
extend its life but add no bytes. Parameters and buffers are excluded (they are weights).
Kernel workspaces inside one op (im2col buffers, oneDNN scratch) are not visible at the
dispatch level and are not included.
"""

from __future__ import annotations

import math

import torch

from effai.errors import InputError


def weight_bytes(model: torch.nn.Module, bits: float | None = None, group_size: int | None = None,
                 scale_bits: int = 32, bias_bits: int | None = 32, include_buffers: bool = False) -> int:
    """Bytes to store the model's parameters (shared tensors once).

    - `bits=None`: the bytes the model stores now: every tensor of its state dict
      (parameters and persistent buffers, so a quantized model's integer codes and scales
      and BatchNorm statistics count) at its dtype's element size.
    - `bits=b`: every value packed at `b` bits (INT4 is half a byte a value). Below 16 bits,
      each weight with 2 or more dims also stores one `scale_bits` scale per output channel,
      or per group of `group_size` values when given; 1-D parameters (biases, norms) are
      kept at `bias_bits` (None: at `b` bits, no scales).

    >>> lin = torch.nn.Linear(64, 10)           # 640 weights + 10 biases, float32
    >>> weight_bytes(lin)
    2600
    >>> weight_bytes(lin, bits=4)                # 320 B packed + 10 fp32 scales + 10 fp32 biases
    400
    >>> weight_bytes(lin, bits=4, group_size=32) # 20 groups of 32 -> 20 scales
    440
    """
    if bits is not None and not (0 < bits <= 64):
        raise InputError(f"weight_bytes: bits must be in (0, 64], got {bits}")
    if group_size is not None and group_size < 1:
        raise InputError(f"weight_bytes: group_size must be >= 1, got {group_size}")
    if bits is None:
        tensors = [t for t in model.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
    else:
        tensors = list(model.parameters())
    if include_buffers and bits is not None:
        tensors += [b for b in model.buffers() if b.is_floating_point() or b.dtype.is_signed]
    seen: set[int] = set()
    total_bits = 0
    for t in tensors:
        key = _storage_key(t)
        if key in seen:
            continue
        seen.add(key)
        n = t.numel()
        if bits is None:
            total_bits += n * t.element_size() * 8
        elif t.dim() < 2 and bias_bits is not None:
            total_bits += n * bias_bits
        else:
            b = math.ceil(n * bits / 8) * 8  # packed, padded to whole bytes per tensor
            if bits < 16 and t.dim() >= 2:
                scales = math.ceil(n / group_size) if group_size else t.shape[0]
                b += scales * scale_bits
            total_bits += b
    return math.ceil(total_bits / 8)


def _storage_key(t: torch.Tensor):
    """Same key for tensors that are the same values in memory (also on the meta device)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    try:
        return (StorageWeakRef(t.untyped_storage()).cdata, t.storage_offset(), tuple(t.shape)) if t.numel() else id(t)
    except (RuntimeError, NotImplementedError, TypeError):
        return id(t)


def count_params(model: torch.nn.Module) -> int:
    """Parameters of `model`, a tensor shared by several modules counted once.

    >>> lin = torch.nn.Linear(4, 4); seq = torch.nn.Sequential(lin, lin)
    >>> count_params(seq)
    20
    """
    seen, n = set(), 0
    for p in model.parameters():
        key = _storage_key(p)
        if key not in seen:
            seen.add(key)
            n += p.numel()
    return n


def peak_from_events(events, sizes: dict[int, int], input_ids, output_ids) -> tuple[int, int]:
    """Peak live bytes over a recorded op sequence, and the index of the op at the peak.

    `events[i] = (read ids, written ids, row)`; `sizes[id]` is a storage's bytes.
    Inputs are live from before op 0; outputs until after the last op.

    >>> # x (100 B) -> a (200 B) -> b (300 B); then add(a, b) -> c (300 B); output c
    >>> ev = [([0], [1], "f"), ([1], [2], "g"), ([1, 2], [3], "add")]
    >>> peak_from_events(ev, {0: 100, 1: 200, 2: 300, 3: 300}, [0], [3])
    (800, 2)
    """
    n = len(events)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, (reads, writes, _) in enumerate(events):
        for s in writes:
            first.setdefault(s, i)
            last[s] = i
        for s in reads:
            first.setdefault(s, i)
            last[s] = i
    for s in input_ids:
        first[s] = 0
        last.setdefault(s, 0)
    for s in output_ids:
        first.setdefault(s, max(n - 1, 0))
        last[s] = max(n - 1, 0)
    delta = [0] * (n + 1)
    for s, f in first.items():
        delta[f] += sizes.get(s, 0)
        delta[last[s] + 1] -= sizes.get(s, 0)
    peak, at, live = 0, 0, 0
    for i in range(max(n, 1)):
        live += delta[i]
        if live > peak:
            peak, at = live, i
    return peak, at


def allocator_peak(device: torch.device) -> tuple[int | None, str]:
    """torch's allocator peak for `device` where it keeps statistics (CUDA), else None and why."""
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated during the pass"
    return None, f"not available: torch keeps no allocator statistics on {device.type}"
