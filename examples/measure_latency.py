"""The latency protocol in action: warm-up, enough timed calls, percentiles, threads, and a
contention flag; torch eager against ONNX Runtime on the same model.

Run: .venv/bin/python examples/measure_latency.py
Guide: docs/guides/measurement.md
"""

import os

import torch

from effai.profile import measure_latency

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
x = torch.randn(1, 256)
settings = {"warmup": 2, "repeats": 10, "min_seconds": 0.05} if QUICK else {"warmup": 20, "repeats": 200,
                                                                            "min_seconds": 2.0}
for runtime in ("torch", "onnxruntime"):
    lat = measure_latency(net, x, runtime=runtime, threads=1, **settings)
    print(f"{runtime:12s} p50 {lat.p50_ms:.4f} ms  p90 {lat.p90_ms:.4f}  p99 {lat.p99_ms:.4f}  "
          f"cpu p50 {lat.cpu_p50_ms:.4f}  {lat.repeats} calls  contended={lat.contended}")
