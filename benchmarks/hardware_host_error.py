"""Host roofline estimate against measured latency, for every zoo model.

The host target is calibrated on micro-benchmarks only (GEMMs, copies, synthetic conv /
depthwise / linear / pooling / BatchNorm layers: `effai.hardware.calibrate_host`); no factor
is fitted on zoo models, so every zoo model is held out. Single thread, batch 1, fp32 eager.

Two comparisons, because this machine's 2 cores are shared with other jobs:
- wall: calibration timed on the wall clock vs `effai.profile.measure_latency` p50 (what a
  user sees; contention inflates both sides, but not always equally);
- cpu: calibration and model both timed with the thread's CPU time (median), which leaves
  out the time the thread was descheduled: what the core can do.
Run: .venv/bin/python benchmarks/hardware_host_error.py [--models a,b]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from common import machine, machine_line, table, write_results

import effai
import effai.hardware as hw
from effai import zoo


def cpu_time_ms(model, x, n=7) -> float:
    with torch.inference_mode():
        model(x)
        ts = []
        for _ in range(n):
            t = time.thread_time()
            model(x)
            ts.append(time.thread_time() - t)
    return statistics.median(ts) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(zoo.names()))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    load0 = os.getloadavg()
    wall = hw.host_target(threads=1, recalibrate=True, clock="wall")
    cpu = hw.host_target(threads=1, recalibrate=True, clock="cpu")
    rows, data = [], []
    for name in args.models.split(","):
        m = zoo.create(name).eval()
        shape = (1, *zoo.info(name).input_shape)
        p = effai.profile(m, input_shape=shape, threads=1, repeats=15, min_seconds=0.5, energy=False, name=name)
        e_wall = hw.estimate(p, wall)
        measured_wall = p.latency.p50_ms
        err_wall = 100 * (e_wall.latency_ms - measured_wall) / measured_wall
        x = torch.randn(shape)
        measured_cpu = cpu_time_ms(m, x)
        e_cpu = hw.estimate(p, cpu)
        err_cpu = 100 * (e_cpu.latency_ms - measured_cpu) / measured_cpu
        rec = {"model": name, "macs": p.total.macs, "layers": len(p.layers),
               "wall": {"estimate_ms": e_wall.latency_ms, "measured_p50_ms": measured_wall,
                        "measured_min_ms": p.latency.min_ms, "error_pct": err_wall},
               "cpu": {"estimate_ms": e_cpu.latency_ms, "measured_ms": measured_cpu, "error_pct": err_cpu},
               "bounds": e_cpu.bound_counts}
        data.append(rec)
        rows.append([name, f"{p.total.macs / 1e6:.1f}M", len(p.layers), f"{e_wall.latency_ms:.3g}",
                     f"{measured_wall:.3g}", f"{err_wall:+.0f}%", f"{e_cpu.latency_ms:.3g}", f"{measured_cpu:.3g}",
                     f"{err_cpu:+.0f}%", ", ".join(f"{k} {v}" for k, v in sorted(e_cpu.bound_counts.items()))])
        print(rows[-1], flush=True)
    med_wall = statistics.median(abs(r["wall"]["error_pct"]) for r in data)
    med_cpu = statistics.median(abs(r["cpu"]["error_pct"]) for r in data)
    bias_cpu = statistics.median(r["cpu"]["error_pct"] for r in data)
    load1 = os.getloadavg()
    cw, cc = wall.calibration, cpu.calibration
    md = [
        "## Hardware: host estimate vs measured latency",
        "",
        "`benchmarks/hardware_host_error.py`: `effai.hardware.estimate(profile, host)` (roofline, calibrated on "
        "micro-benchmarks only - GEMMs, copies, synthetic conv/depthwise/linear/pool/BatchNorm layers; no zoo "
        "model is used for calibration, so all of them are held out) against measured latency. fp32 eager, "
        "batch 1, **1 thread**. `wall`: calibration on the wall clock vs `measure_latency` p50. `cpu`: "
        "calibration and model both timed in thread CPU time (median), which removes the time the thread "
        "waited for a core on this shared machine.",
        "",
        table(["model", "MACs", "layers", "est. ms (wall cal.)", "p50 ms", "error", "est. ms (cpu cal.)",
               "cpu ms", "error", "bounds (cpu cal.)"], rows),
        "",
        f"**Median absolute error: {med_wall:.0f}% (wall) and {med_cpu:.0f}% (cpu time)**; median signed error "
        f"(cpu) {bias_cpu:+.0f}% (negative: the estimate is too fast). Goal: at most 30%. "
        f"Calibration (cpu clock): peak fp32 {cc['peak_ops']['fp32'] / 1e9:.0f} GFLOP/s, int8 "
        f"{cc['peak_ops'].get('int8', 0) / 1e9:.0f} GOP/s ({cc['int8_method']}), DRAM copy "
        f"{cc['memory_bandwidth'] / 1e9:.1f} GB/s, depthwise efficiency {cc['kernels']['depthwise']:.2f}, "
        f"conv {cc['kernels']['conv']:.2f}, pool {cc['kernels']['pool']:.3f}; per-layer overheads "
        + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in cc["kernel_overhead_s"].items()) + ". "
        f"Wall-clock calibration: peak fp32 {cw['peak_ops']['fp32'] / 1e9:.0f} GFLOP/s. "
        f"Load average {load0[0]:.1f} at the start and {load1[0]:.1f} at the end on 2 cores "
        "(above ~1, other work shares the cores and wall-clock numbers get noisy).",
        "",
        machine_line() + f" Took {time.time() - t0:.0f} s.",
    ]
    write_results("hardware_host", {"machine": machine(), "threads": 1, "median_abs_error_pct_wall": med_wall,
                                    "median_abs_error_pct_cpu": med_cpu, "median_signed_error_pct_cpu": bias_cpu,
                                    "loadavg_start": load0, "loadavg_end": load1, "calibration_wall": cw,
                                    "calibration_cpu": cc, "models": data}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
