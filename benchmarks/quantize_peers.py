"""INT8 deployment: effai against ONNX Runtime's quantize_static (default and best settings)
and NNCF + OpenVINO, on the same models in one run.

Models: a MobileNetV2-style CNN (width 0.5, 28x28) trained on mnist5k (accuracy), and
MobileNetV2 1.0-224 and ResNet-18 with random weights (latency; agreement with FP32 on random
inputs). Latency: batch 1, 1 thread, persistent sessions, interleaved rounds (common.interleaved),
median. Usage: .venv/bin/python benchmarks/quantize_peers.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, interleaved, machine, machine_line, table, write_results  # noqa: E402

import effai.numerics as nx  # noqa: E402
from effai import data, train, zoo  # noqa: E402
from effai.quantize.export import (  # noqa: E402
    ORT_DEFAULT,
    export_float,
    ort_int8_settings,
    quantize_onnx_int8,
    to_fp16,
)

THREADS = 1
GRID = [  # the ORT settings tried to find "ORT's best for this CPU"
    {"quant_format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": False, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": True},
]


def _label(s):
    return f"{s['quant_format']} {s['activation_type'][1:]}/{s['weight_type'][1:]}{' pc' if s['per_channel'] else ''}{' rr' if s['reduce_range'] else ''}"


def ort_session(path):
    from effai.profile.latency import ort_session as open_session

    s = open_session(path, THREADS)
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})[0]


def openvino_int8(float_onnx, calib: list[np.ndarray], out_dir: Path):
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        return None, f"not installed ({e})"
    core = ov.Core()
    t = time.time()
    ov_model = ov.convert_model(str(float_onnx))
    q = nncf.quantize(ov_model, nncf.Dataset(calib), subset_size=len(calib))
    secs = time.time() - t
    xml = out_dir / "ov_int8.xml"
    ov.save_model(q, str(xml))
    size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    cm = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()

    def run(x):
        req.infer({0: x})
        return req.get_output_tensor(0).data.copy()

    return (run, size, secs, f"nncf {nncf.__version__}, openvino {ov.__version__}"), None


def openvino_fp32(float_onnx):
    import openvino as ov

    cm = ov.Core().compile_model(ov.convert_model(str(float_onnx)), "CPU",
                                 {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": "f32"})
    req = cm.create_infer_request()

    def run(x):
        req.infer({0: x})
        return req.get_output_tensor(0).data.copy()

    return run


def train_mnist_model(quick: bool):
    ds = data.load("mnist5k", seed=0)
    m = zoo.create("mobilenet_v2", num_classes=10, in_channels=1, resolution=28, width_mult=0.5)
    out = ROOT / "runs" / ("bench_quantize_peers_mnv2" + ("_quick" if quick else ""))
    train.fit(m, ds, train.TrainConfig(epochs=2 if quick else 8, seed=0, threads=2), out_dir=out, progress=False)
    return ds, m.eval()


def evaluate_model(name, model, x_eval, y_eval, calib, rounds, quick):
    """All variants of one model; returns rows."""
    tmp = Path(tempfile.mkdtemp(prefix=f"qpeers_{name}_"))
    x1 = torch.from_numpy(x_eval[:1])
    fp = export_float(model, tmp / "fp32.onnx", x1)
    calib_t = torch.from_numpy(np.concatenate(calib))
    variants = {}  # label -> (runner, bytes, prepare seconds, note)
    variants["fp32 (ORT)"] = (ort_session(fp), os.path.getsize(fp), 0.0, "")
    t = time.time()
    to_fp16(fp, tmp / "fp16.onnx")
    variants["effai fp16 (ORT)"] = (ort_session(tmp / "fp16.onnx"), os.path.getsize(tmp / "fp16.onnx"), time.time() - t, "")
    t = time.time()
    quantize_onnx_int8(fp, tmp / "ort_default.onnx", calib_t, ORT_DEFAULT, "minmax")
    variants["ORT quantize_static default"] = (ort_session(tmp / "ort_default.onnx"), os.path.getsize(tmp / "ort_default.onnx"),
                                               time.time() - t, _label(ORT_DEFAULT))
    grid = {}
    for i, s in enumerate(GRID if not quick else GRID[1:3]):
        p = tmp / f"ort_grid{i}.onnx"
        t = time.time()
        quantize_onnx_int8(fp, p, calib_t, s, "minmax")
        grid[_label(s)] = (ort_session(p), os.path.getsize(p), time.time() - t, _label(s))
    auto = ort_int8_settings()
    t = time.time()
    quantize_onnx_int8(fp, tmp / "effai.onnx", calib_t, auto, "minmax")
    variants["effai int8 (ORT, CPU-chosen)"] = (ort_session(tmp / "effai.onnx"), os.path.getsize(tmp / "effai.onnx"),
                                                time.time() - t, _label(auto))
    ov, why = openvino_int8(fp, [c for c in calib], tmp)
    if ov is not None:
        variants["NNCF + OpenVINO int8"] = (ov[0], ov[1], ov[2], ov[3])
        variants["OpenVINO fp32"] = (openvino_fp32(fp), os.path.getsize(fp), 0.0, "")
    # latency: grid first to find ORT's best, then everything in one interleaved run
    xin = x_eval[:1]
    grid_lat = interleaved({k: (lambda r=v[0]: r(xin)) for k, v in grid.items()}, rounds=max(3, rounds // 2), inner=10)
    best = min(grid_lat, key=grid_lat.get)
    variants[f"ORT best of grid ({best})"] = grid[best]
    for v in variants.values():  # warm-up
        for _ in range(3):
            v[0](xin)
    lat = interleaved({k: (lambda r=v[0]: r(xin)) for k, v in variants.items()}, rounds=rounds, inner=10)
    # agreement with FP32 (and accuracy where labels exist)
    ref = np.concatenate([variants["fp32 (ORT)"][0](x_eval[i:i + 1]) for i in range(len(x_eval))])
    rows = []
    base = lat["fp32 (ORT)"]
    for k, (run, size, secs, note) in variants.items():
        out = np.concatenate([run(x_eval[i:i + 1]) for i in range(len(x_eval))])
        row = {"model": name, "variant": k, "settings": note, "bytes": int(size),
               "size_vs_fp32": size / variants["fp32 (ORT)"][1], "latency_ms": lat[k] * 1e3,
               "speedup_vs_fp32_ort": base / lat[k], "sqnr_db_vs_fp32": nx.sqnr_db(ref, out),
               "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()), "prepare_s": secs}
        if y_eval is not None:
            row["accuracy"] = float((out.argmax(1) == y_eval).mean())
        rows.append(row)
    grid_rows = [{"model": name, "settings": k, "latency_ms": v * 1e3, "speedup_vs_fp32_ort": base / v}
                 for k, v in grid_lat.items()]
    variants.clear()
    grid.clear()
    shutil.rmtree(tmp, ignore_errors=True)
    return rows, grid_rows, why


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs, rounds and samples (smoke test)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rounds = 3 if args.quick else 7
    all_rows, grid_rows, notes = [], [], []

    ds, mnv2 = train_mnist_model(args.quick)
    n_eval = 100 if args.quick else 500
    x_test = ds.test.tensors[0][:n_eval].numpy().astype(np.float32)
    y_test = ds.test.tensors[1][:n_eval].numpy()
    calib = [c[None].numpy().astype(np.float32) for c in ds.calibration(64)]
    torch_acc = train.evaluate(mnv2, torch.utils.data.DataLoader(ds.test, batch_size=500))["accuracy"]
    notes.append(f"mnist5k MobileNetV2-0.5 (28x28) torch FP32 test accuracy {torch_acc:.4f}")
    r, g, why = evaluate_model("mobilenet_v2 0.5 mnist5k", mnv2, x_test, y_test, calib, rounds, args.quick)
    all_rows += r
    grid_rows += g
    if why:
        notes.append(f"NNCF/OpenVINO: {why}")
    rng = np.random.default_rng(0)
    for zname in ("mobilenet_v2", "resnet18"):
        m = zoo.create(zname).eval()
        x = rng.standard_normal((16 if args.quick else 64, 3, 224, 224)).astype(np.float32)
        calib = [x[i:i + 1] for i in range(8 if args.quick else 32)]
        r, g, _ = evaluate_model(f"{zname} 1.0-224 (random weights)", m, x[-(8 if args.quick else 32):], None, calib,
                                 rounds, args.quick)
        all_rows += r
        grid_rows += g

    mach = machine()
    try:
        import nncf
        import openvino

        mach.update({"nncf": nncf.__version__, "openvino": openvino.__version__})
    except ImportError:
        pass
    md = [
        "## INT8 deployment against peers (`benchmarks/quantize_peers.py`)",
        "",
        f"Latency: batch 1, {THREADS} thread, persistent sessions, {rounds} interleaved rounds x 10 calls, median "
        "(benchmarks/common.py `interleaved`; not `effai.profile.measure_latency`, which times one model per call). "
        "Calibration: minmax on training images (mnist) or random-normal inputs (224 models). "
        f"effai's settings come from the CPU flags ({ort_int8_settings()['reason']}); "
        "*ORT best of grid* is the fastest of the settings grid below, measured here. "
        "SQNR / top-1 agreement compare the logits with FP32 ONNX Runtime on held-out inputs.",
        "",
        table(["model", "variant", "settings", "size", "size/fp32", "latency ms", "speedup vs fp32", "SQNR dB",
               "top-1 agree", "accuracy"],
              [[r["model"], r["variant"], r["settings"], f"{r['bytes'] / 1e6:.2f} MB", f"{r['size_vs_fp32']:.2f}",
                f"{r['latency_ms']:.2f}", f"{r['speedup_vs_fp32_ort']:.2f}x", f"{r['sqnr_db_vs_fp32']:.1f}",
                f"{r['top1_agreement']:.3f}", f"{r['accuracy']:.4f}" if "accuracy" in r else "-"] for r in all_rows]),
        "",
        "ORT settings grid (U8/S8 = activation/weight types, pc = per-channel, rr = reduce_range):",
        "",
        table(["model", "settings", "latency ms", "speedup vs fp32"],
              [[g["model"], g["settings"], f"{g['latency_ms']:.2f}", f"{g['speedup_vs_fp32_ort']:.2f}x"] for g in grid_rows]),
        "",
        *[f"- {n}" for n in notes],
        "",
        machine_line(mach) + (f" NNCF {mach['nncf']}, OpenVINO {mach['openvino']}." if "nncf" in mach else ""),
    ]
    write_results("quantize_peers", {"machine": mach, "threads": THREADS, "rounds": rounds, "quick": args.quick,
                                     "rows": all_rows, "grid": grid_rows, "notes": notes}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
