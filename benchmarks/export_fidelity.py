"""What was simulated is what deploys: torch-simulated against deployed accuracy for every exported
method, the kernel that runs each format, and MatMulNBits int4 latency against the fp32 graph.

1. LeNet-5 (zoo `lenet5`) trained on mnist5k; each method applied with `quantize_`, then
   `export_onnx(quantized, path, x)` with no calibration data; accuracy of the torch model and
   of the ONNX file on the 500-image test split, their top-1 agreement and the logits' SQNR
   (deployed against simulated), and the ops ONNX Runtime runs for the file (its optimized graph).
2. Every format: the kernel effai's export gives it (`effai.quantize.kernels.format_kernel`), and
   whether a latency measured for it is a real kernel's, fp32 labelled, or not timed.
3. A model with large Linear layers (a 4-block MLP, 1024 -> 4096 -> 1024 per block, 33.6 M
   weights): fp32 graph against the int4 weight-only file (MatMulNBits, per group of 32),
   batch 1, 1 thread, interleaved rounds, median, with a second fp32 session as noise control.

Usage: .venv/bin/python benchmarks/export_fidelity.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, table, write_results  # noqa: E402

import effai.numerics as nx  # noqa: E402
from effai import data, train, zoo  # noqa: E402
from effai.profile.latency import interleaved, onnx_runner  # noqa: E402
from effai.quantize import (  # noqa: E402
    Float16Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    MixedPrecisionConfig,
    QATConfig,
    TernaryConfig,
    WeightOnlyConfig,
    export_onnx,
    quantize_,
)
from effai.quantize.export import export_float  # noqa: E402
from effai.quantize.kernels import format_kernel  # noqa: E402

THREADS = 1
FORMATS = [("fp32", "Linear"), ("fp16", "Linear"), ("bf16", "Linear"), ("int8", "Conv"), ("int8", "Linear"),
           ("int4", "Linear"), ("int4", "Conv"), ("int2", "Linear"), ("ternary", "Linear"), ("ternary", "Conv"),
           ("binary", "Linear"), ("binary", "Conv"), ("fp8_e4m3", "Linear"), ("fp4_e2m1", "Linear")]


def methods(ds, calib, quick: bool) -> dict:
    """name -> (config, filter_fn or None); QAT fine-tunes with effai.train.fit."""
    ft = train.TrainConfig(epochs=1 if quick else 3, lr=3e-4, seed=0, threads=2)
    keep_float = {"features.0", "classifier.4"}
    return {
        "int8 static, minmax": (Int8StaticConfig(calibration=calib), None),
        "int8 static, percentile": (Int8StaticConfig(calibration=calib, method="percentile"), None),
        "int8 static, entropy": (Int8StaticConfig(calibration=calib, method="entropy"), None),
        "int8 static, MSE": (Int8StaticConfig(calibration=calib, method="mse"), None),
        "int8 static, first/last FP32 (mixed)": (Int8StaticConfig(calibration=calib),
                                                 lambda m, n: n not in keep_float and isinstance(m, (nn.Conv2d, nn.Linear))),
        "int8 dynamic": (Int8DynamicConfig(), None),
        "int8 QAT (dynamic activations)": (QATConfig(fmt="int8", act_bits=8, data=ds, train=ft), None),
        "int4 QAT weight-only": (QATConfig(fmt="int4", data=ds, train=ft), None),
        "mixed weight-only int8/int4/FP32": (MixedPrecisionConfig({"classifier.0": "int4", "classifier.4": "fp32"},
                                                                  default="int8"), None),
        "int4 weight-only, per channel": (WeightOnlyConfig(bits=4), None),
        "ternary weight-only": (TernaryConfig(), None),
        "fp16 weights and activations": (Float16Config(), None),
    }


def fidelity(quick: bool) -> tuple[list[dict], str]:
    ds = data.load("mnist5k", seed=0)
    m = zoo.create("lenet5")
    train.fit(m, ds, train.TrainConfig(epochs=3 if quick else 10, seed=0, threads=2),
              out_dir=ROOT / "runs" / ("bench_export_fidelity" + ("_quick" if quick else "")), progress=False)
    m.eval()
    calib = ds.calibration(256)
    x, y = ds.test.tensors
    rows_x = [r.numpy() for r in x.split(1)]
    with torch.no_grad():
        float_acc = float((m(x).argmax(1) == y).float().mean())
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="fidelity_"))
    for name, (cfg, flt) in methods(ds, calib, quick).items():
        q = quantize_(copy.deepcopy(m), cfg, filter_fn=flt)
        row = {"method": name, "torch_accuracy": None, "deployed_accuracy": None, "agreement": None,
               "sqnr_db": None, "kernels": None, "error": None}
        rows.append(row)
        try:
            info = export_onnx(q, tmp / "q.onnx", x[:1], verify_inputs=x[:64])
        except Exception as e:  # noqa: BLE001 - an export effai refuses is a result too
            row["error"] = str(e)[:200]
            continue
        from effai.quantize.verify import torch_outputs

        sim = torch_outputs(q, rows_x)
        run = onnx_runner(info["path"], info["runtime"], THREADS)
        dep = np.concatenate([run(r)[0] for r in rows_x])
        row.update(torch_accuracy=float((sim.argmax(1) == y.numpy()).mean()),
                   deployed_accuracy=float((dep.argmax(1) == y.numpy()).mean()),
                   agreement=float((sim.argmax(1) == dep.argmax(1)).mean()), sqnr_db=float(nx.sqnr_db(sim, dep)),
                   bytes=info["bytes"], kernels=info["kernels"]["ops"])
        print(name, row)
    return rows, f"LeNet-5 FP32 test accuracy {float_acc:.4f}"


def matmulnbits_latency(quick: bool) -> tuple[list[dict], int]:
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)) for _ in range(4)]
    mlp = nn.Sequential(*blocks).eval()
    x = torch.randn(64, 1024)
    tmp = Path(tempfile.mkdtemp(prefix="nbits_"))
    fp = export_float(mlp, tmp / "fp32.onnx", x[:1])
    info = export_onnx(mlp, tmp / "int4.onnx", x[:1], dtype="int4", verify_inputs=x, min_sqnr_db=0, min_agreement=0)
    runs = {"fp32 graph (MatMul/Gemm, MLAS SGEMM)": onnx_runner(fp, "onnxruntime", THREADS),
            "noise control: fp32 again": onnx_runner(fp, "onnxruntime", THREADS),
            "int4 weight-only (MatMulNBits, group 32)": onnx_runner(info["path"], "onnxruntime", THREADS)}
    x1 = x[:1].numpy()
    ms = interleaved({k: (lambda r=r: r(x1)) for k, r in runs.items()}, rounds=5 if quick else 11, inner=5,
                     min_round_ms=50.0)
    ref = runs["fp32 graph (MatMul/Gemm, MLAS SGEMM)"]
    xs = [r.numpy() for r in x.split(1)]
    base = np.concatenate([ref(r)[0] for r in xs])
    rows = []
    for k, run in runs.items():
        out = np.concatenate([run(r)[0] for r in xs])
        path = info["path"] if "int4" in k else fp
        rows.append({"variant": k, "latency_ms": ms[k], "speedup": ms["fp32 graph (MatMul/Gemm, MLAS SGEMM)"] / ms[k],
                     "bytes": Path(path).stat().st_size, "sqnr_db_vs_fp32": nx.sqnr_db(base, out)})
    return rows, sum(p.numel() for p in mlp.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    nbits, n_params = matmulnbits_latency(args.quick)
    fid, note = fidelity(args.quick)
    kernels = [format_kernel(f, layer) for f, layer in FORMATS]
    mach = machine()
    md = [
        "## Export: what was simulated is what deploys (`benchmarks/export_fidelity.py`)",
        "",
        "Each method applied to LeNet-5 (trained on mnist5k) with `quantize_`, then written by "
        "`export_onnx(quantized, path, x)` with no calibration data and run by ONNX Runtime one image at a time. "
        "*torch* is the simulated model's test accuracy, *deployed* the ONNX file's, on the same 500 test images; "
        "SQNR compares the file's logits with torch's. *ops* are the compute ops of ONNX Runtime's optimized "
        f"graph for the file (QLinearConv/QGemm: int8 kernels; MatMulNBits: n-bit; Conv/FusedConv/Gemm: fp32). {note}.",
        "",
        table(["method", "torch accuracy", "deployed accuracy", "top-1 agreement", "SQNR dB", "size", "ops ONNX Runtime runs"],
              [[r["method"], f"{r['torch_accuracy']:.4f}", f"{r['deployed_accuracy']:.4f}", f"{r['agreement']:.4f}",
                f"{r['sqnr_db']:.1f}", f"{r['bytes'] / 1e3:.1f} KB",
                ", ".join(f"{k} x{v}" for k, v in sorted(r["kernels"].items()))] if r["error"] is None else
               [r["method"], "-", "-", "-", "-", "-", f"refused: {r['error']}"] for r in fid]),
        "",
        "**Which kernel runs each format** on this CPU (`effai.quantize.kernels.format_kernel`; a latency "
        "measured for a format without a kernel is labelled as fp32, or not taken):",
        "",
        table(["format", "layer", "kernel", "a latency means"],
              [[k.fmt, k.layer, k.kernel or "none", k.timing] for k in kernels]),
        "",
        f"**MatMulNBits int4 against the fp32 graph**: an MLP of 4 blocks (1024 -> 4096 -> 1024, GELU; "
        f"{n_params / 1e6:.1f} M parameters), batch 1, {THREADS} thread, interleaved rounds of >= 5 calls and "
        ">= 50 ms per variant, median; the noise-control row is a second session on the fp32 file.",
        "",
        table(["variant", "latency ms", "speed-up vs fp32", "file", "SQNR dB vs fp32"],
              [[r["variant"], f"{r['latency_ms']:.3f}", f"{r['speedup']:.2f}x", f"{r['bytes'] / 1e6:.1f} MB",
                f"{r['sqnr_db_vs_fp32']:.1f}"] for r in nbits]),
        "",
        machine_line(mach),
    ]
    write_results("export_fidelity", {"machine": mach, "threads": THREADS, "quick": args.quick, "fidelity": fid,
                                      "kernels": [k.__dict__ for k in kernels], "matmulnbits": nbits,
                                      "note": note}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
