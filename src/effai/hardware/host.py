"""The host CPU as a target, calibrated by micro-benchmarks on the machine itself.

`calibrate_host()` measures, at the thread count torch uses:

- peak fp32 compute: the best rate of square GEMMs (`torch.mm`) and the dense convolutions
  below (each timed as the median of repeated runs, the statistic latency's p50 uses);
- peak int8 compute: `torch._int_mm` where the CPU build has it, else ONNX Runtime's
  `MatMulInteger`;
- memory bandwidth: copies of buffers from 256 KiB (cache) to 256 MiB (DRAM), bytes read +
  written; the largest is the headline figure, the curve serves smaller working sets;
- per kernel kind (dense conv, depthwise conv, linear, max pooling, elementwise), eager calls of a few
  synthetic layer sizes, fitted by least squares to `t = overhead + ops / rate`: the rate over
  the peak is the kind's efficiency, the intercept its per-layer overhead (module call,
  dispatch, oneDNN setup).

None of these are zoo models: the host estimate is calibrated on micro-benchmarks only. The
result is cached as JSON under the user cache dir (`$EFFAI_CACHE_DIR`, else
`$XDG_CACHE_HOME/effai`, else `~/.cache/effai`) in `host.json`, keyed by threads and torch
version; `recalibrate=True` measures again.

>>> cal = calibrate_host(quick=True, cache=False)
>>> cal["peak_ops"]["fp32"] > 0 and cal["memory_bandwidth"] > 0 and 0 < cal["kernels"]["depthwise"] <= 1
True
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from effai.fileio import cache_dir
from effai.hardware.catalogue import MEASURED, Target, TargetSpec

CACHE_VERSION = 6


_CLOCK = {"fn": time.perf_counter}


def _best(fn, repeats: int, min_seconds: float) -> float:
    """Median time of `fn()` in seconds on the calibration clock (the statistic latency's p50 uses)."""
    clock = _CLOCK["fn"]
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = clock()
        fn()
        times.append(clock() - t0)
        if time.perf_counter() - start > 20 * max(min_seconds, 0.05) and len(times) >= repeats:
            break
    return max(statistics.median(times), 1e-9)


def _gemm_fp32(n: int, repeats: int, min_s: float) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    t = _best(lambda: torch.mm(a, b, out=out), repeats, min_s)
    return 2 * n**3 / t


def _gemm_int8(n: int, repeats: int, min_s: float) -> tuple[float, str]:
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    if hasattr(torch, "_int_mm"):
        try:
            torch._int_mm(a, b)
            t = _best(lambda: torch._int_mm(a, b), repeats, min_s)
            return 2 * n**3 / t, "torch._int_mm"
        except (RuntimeError, NotImplementedError):
            pass
    try:  # ONNX Runtime MatMulInteger
        import numpy as np
        from onnx import TensorProto, helper

        from effai.profile.latency import ort_session

        g = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mmi",
                              [helper.make_tensor_value_info("A", TensorProto.INT8, [n, n]),
                               helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        sess = ort_session(m.SerializeToString(), torch.get_num_threads())
        feed = {"A": a.numpy().astype(np.int8), "B": b.numpy().astype(np.int8)}
        t = _best(lambda: sess.run(None, feed), repeats, min_s)
        return 2 * n**3 / t, "onnxruntime MatMulInteger"
    except Exception:  # noqa: BLE001 - no int8 path on this machine
        return 0.0, "unavailable"


def _bandwidth(nbytes: int, repeats: int, min_s: float) -> float:
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    t = _best(lambda: dst.copy_(src), repeats, min_s)
    return 2 * nbytes / t  # read + write


def _conv_time(cin, cout, k, hw, groups, repeats, min_s) -> tuple[float, float]:
    """(ops, seconds) of one eager conv call with its bias, like a zoo layer."""
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups).eval()
    x = torch.randn(1, cin, hw, hw)
    with torch.inference_mode():
        t = _best(lambda: conv(x), repeats, min_s)
    return 2.0 * cout * hw * hw * (cin // groups) * k * k, t


def _linear_time(cin, cout, repeats, min_s) -> tuple[float, float]:
    lin = torch.nn.Linear(cin, cout).eval()
    x = torch.randn(1, cin)
    with torch.inference_mode():
        t = _best(lambda: lin(x), repeats, min_s)
    return 2.0 * cin * cout, t


def _elementwise_time(c, hw, repeats, min_s) -> tuple[float, float]:
    """(bytes moved, seconds) of an eager BatchNorm then ReLU, the usual non-MAC layers."""
    bn = torch.nn.BatchNorm2d(c).eval()
    x = torch.randn(1, c, hw, hw)
    with torch.inference_mode():
        t = _best(lambda: bn(x), repeats, min_s)
    return 2.0 * x.numel() * 4, t


def _pool_time(c, hw, repeats, min_s) -> tuple[float, float]:
    """(elementwise FLOPs as effai.profile counts them, seconds) of an eager 3x3/2 max pool."""
    pool = torch.nn.MaxPool2d(3, 2, ceil_mode=True).eval()
    x = torch.randn(1, c, hw, hw)
    with torch.inference_mode():
        t = _best(lambda: pool(x), repeats, min_s)
        out = pool(x)
    return 9.0 * out.numel(), t


def _fit_line(points) -> tuple[float, float]:
    """Least squares of t = overhead + work / rate, weighted by 1/t (relative error).

    >>> o, r = _fit_line([(1e6, 1e-5 + 1e6 / 1e10), (1e8, 1e-5 + 1e8 / 1e10)])
    >>> round(o * 1e6, 3), round(r / 1e10, 3)
    (10.0, 1.0)
    """
    import numpy as np

    w = np.array([1.0 / t for _, t in points])
    a = np.array([[1.0, x] for x, _ in points]) * w[:, None]
    b = np.array([t for _, t in points]) * w
    (o, inv), *_ = np.linalg.lstsq(a, b, rcond=None)
    if inv <= 0:  # work does not explain time: all overhead, rate from the largest point
        x, t = max(points)
        return float(min(t for _, t in points)), x / t
    if o < 0:
        inv = float(np.sum(b * a[:, 1]) / np.sum(a[:, 1] ** 2))
        o = 0.0
    return float(o), float(1.0 / inv)


def _call_overhead(module, x, repeats) -> float:
    clock = _CLOCK["fn"]
    with torch.inference_mode():
        for _ in range(20):
            module(x)
        samples = []
        for _ in range(repeats):
            t0 = clock()
            for _ in range(20):
                module(x)
            samples.append((clock() - t0) / 20)
    return statistics.median(samples)


def calibrate_host(quick: bool = False, threads: int | None = None, recalibrate: bool = False,
                   cache: bool = True, clock: str = "wall") -> dict:
    """Measure (or read from the cache) the host's peak compute, bandwidth and overheads.

    `quick=True` uses small problem sizes (well under a second; numbers are rougher and are
    never written to the cache). `clock="cpu"` times with the thread's CPU time instead of
    wall time (single-threaded only): on a machine shared with other work it measures what
    the core can do rather than how much of it this process got. Returns a plain dict.
    """
    from effai.errors import InputError

    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads: expected a positive integer, got {threads!r}")
    if clock not in ("wall", "cpu"):
        raise InputError(f"clock: expected 'wall' or 'cpu', got {clock!r}")
    n_threads = threads or torch.get_num_threads()
    if clock == "cpu" and n_threads != 1:
        raise InputError(f"clock='cpu' needs threads=1 (thread CPU time), got threads={n_threads}")
    key = f"threads={n_threads};clock={clock};torch={torch.__version__};v={CACHE_VERSION}"
    path = cache_dir() / "host.json"
    if cache and not quick and not recalibrate and path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if key in stored:
                return stored[key]
        except (OSError, json.JSONDecodeError):
            pass  # a corrupt cache is re-measured and rewritten
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    _CLOCK["fn"] = time.thread_time if clock == "cpu" else time.perf_counter
    try:
        cal = _measure(quick)
    finally:
        torch.set_num_threads(before)
        _CLOCK["fn"] = time.perf_counter
    cal.update(threads=n_threads, clock=clock, torch=torch.__version__, quick=quick,
               machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
               cpu_count=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
    if cache and not quick:
        from effai.fileio import write_json

        stored = {}
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                stored = {}
        stored[key] = cal
        write_json(path, stored)
    return cal


# Synthetic layer sizes (not zoo models): (cin, cout, kernel, hw, groups).
_CONVS = [(8, 16, 3, 48, 1), (32, 32, 3, 28, 1), (64, 64, 3, 28, 1), (128, 128, 3, 14, 1), (256, 256, 3, 7, 1),
          (8, 16, 1, 48, 1), (32, 64, 1, 28, 1), (128, 128, 1, 14, 1), (256, 512, 1, 7, 1)]
_DEPTHWISE = [(8, 48), (32, 28), (96, 28), (256, 14), (512, 7)]
_LINEARS = [(64, 10), (256, 128), (1024, 256)]
_ELEMENTWISE = [(8, 48), (64, 28), (256, 14), (256, 56)]
_POOLS = [(16, 28), (64, 56), (64, 112), (256, 14)]


def _measure(quick: bool) -> dict:
    r, s = (5, 0.01) if quick else (10, 0.2)
    gemm = max(_gemm_fp32(n, r, s) for n in ((128, 256) if quick else (512, 1024)))
    int8, int8_method = _gemm_int8(256 if quick else 1024, r, s)
    sizes = (2**18, 2**22, 2**24) if quick else (2**18, 2**21, 2**24, 2**28)
    curve = [[n, _bandwidth(n, r, s)] for n in sizes]
    pick = (lambda xs: xs[::2]) if quick else (lambda xs: xs)
    conv = [_conv_time(ci, co, k, hw, g, r, s) for ci, co, k, hw, g in pick(_CONVS)]
    dw = [_conv_time(c, c, 3, hw, c, r, s) for c, hw in pick(_DEPTHWISE)]
    lin = [_linear_time(ci, co, r, s) for ci, co in pick(_LINEARS)]
    elem = [_elementwise_time(c, hw, r, s) for c, hw in pick(_ELEMENTWISE)]
    pool = [_pool_time(c, hw, r, s) for c, hw in pick(_POOLS)]
    fits = {"conv": _fit_line(conv), "depthwise": _fit_line(dw), "linear": _fit_line(lin), "pool": _fit_line(pool)}
    o_elem, _ = _fit_line(elem)
    fp32 = max(gemm, max(fits[k][1] for k in ("conv", "depthwise", "linear")))  # best rate any MAC kernel reached
    return {
        "peak_ops": {"fp32": fp32, **({"int8": int8} if int8 > 0 else {})},
        "int8_method": int8_method,
        "memory_bandwidth": curve[-1][1],
        "bandwidth_curve": curve,
        "kernels": {k: min(1.0, rate / fp32) for k, (_, rate) in fits.items()},
        "kernel_ops_per_s": {"gemm": gemm, **{k: rate for k, (_, rate) in fits.items()}},
        "kernel_overhead_s": {**{k: o for k, (o, _) in fits.items()}, "other": o_elem},
        "points": {"conv": conv, "depthwise": dw, "linear": lin, "elementwise": elem, "pool": pool},
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's "model name"), else what `platform` knows.

    >>> isinstance(cpu_model(), str) and len(cpu_model()) > 0
    True
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def host_target(quick: bool = False, threads: int | None = None, recalibrate: bool = False,
                cache: bool = True, clock: str = "wall") -> Target:
    """The host CPU as a catalogue `Target`, its numbers measured by `calibrate_host`."""
    cal = calibrate_host(quick=quick, threads=threads, recalibrate=recalibrate, cache=cache, clock=clock)
    src = (f"measured by effai.hardware.calibrate_host on {cal['date']} ({cal['threads']} threads, "
           f"{cal['clock']} clock, median of repeats, torch {cal['torch']})")
    peak = {"fp32": {"value": cal["peak_ops"]["fp32"], "source": f"{src}: fp32 GEMM (torch.mm)"}}
    if "int8" in cal["peak_ops"]:
        peak["int8"] = {"value": cal["peak_ops"]["int8"], "source": f"{src}: int8 GEMM ({cal['int8_method']})"}
    kernels = cal["kernels"]
    spec = TargetSpec.model_validate({
        "title": f"This machine's CPU ({cal['machine'] or 'unknown'}, {cal['threads']} threads)",
        "kind": "cpu",
        "dtypes": list(peak),
        "peak_ops": peak,
        "memory_bandwidth": {"value": cal["memory_bandwidth"], "source": f"{src}: copy of a {cal['bandwidth_curve'][-1][0] >> 20} MiB buffer, read + write; smaller working sets use the measured cache curve"},
        "ram": {"value": _physical_ram(), "source": "os.sysconf: physical memory"},
        "storage": {"value": shutil.disk_usage(Path.home()).free, "source": "free disk space in the home folder"},
        "weights_in": "ram",
        "power": {"idle": {"value": 0, "source": "unknown: no power counters read (pass power_w to estimate)"},
                  "peak": {"value": 0, "source": "unknown: no power counters read (pass power_w to estimate)"}},
        "price": {"per_hour": {"value": 0, "source": "your own machine: no rental price"}},
        "efficiency": {"compute": 1.0, "memory": 1.0,
                       "kernels": {k: max(1e-3, min(1.0, v)) for k, v in kernels.items()},
                       "per_layer_s": cal["kernel_overhead_s"]["other"],
                       "kernel_overhead_s": cal["kernel_overhead_s"],
                       "source": f"{src}: per kernel kind, t = overhead + ops / rate fitted to eager calls of "
                                 "synthetic layers (dense 3x3 and 1x1 convs, depthwise 3x3 convs, linear, "
                                 "max pooling, BatchNorm); efficiency = rate / peak"},
        "runtime": {"name": f"PyTorch {cal['torch']} eager"},
        "notes": "Calibrated on micro-benchmarks only (never on zoo models).",
    })
    return Target(name="host", spec=spec, file=str(cache_dir() / "host.json"), calibration=cal)


MEASURED.add("host", host_target)
