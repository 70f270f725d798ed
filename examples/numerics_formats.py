"""Every number format on the same weights: bits, SQNR and worst error, plus the range
surprises (FP16 overflow, BF16 coarse steps).

Run: .venv/bin/python examples/numerics_formats.py
Guide: docs/guides/numerics.md
"""

import torch

import effai.numerics as nx

torch.manual_seed(0)
w = torch.randn(256, 256) * 0.05
for fmt in ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "fp4_e2m1", "ternary", "binary"]:
    if fmt == "fp4_e2m1":
        q = nx.cast(w, fmt, granularity="group", group_size=32)
    elif fmt in ("int8", "int4", "ternary", "binary"):
        q = nx.cast(w, fmt, granularity="channel")
    else:
        q = nx.cast(w, fmt)
    print(f"{fmt:9s} {nx.get(fmt).bits:2d} bits  SQNR {nx.sqnr_db(w, q):6.1f} dB  max error {nx.max_abs_error(w, q):.2e}")

x = torch.tensor([3.14159, 70000.0, 1e-8])
print("fp16:", nx.cast(x, "fp16").tolist())
print("bf16:", nx.cast(x, "bf16").tolist())
