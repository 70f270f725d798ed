"""INT8 deployment: effai against ONNX Runtime's quantize_static (default and best settings)
and NNCF + OpenVINO, on the same models, calibration data and machine in one run.

Models: a MobileNetV2-style CNN (width 0.5, 28x28) trained on mnist5k (accuracy), and
MobileNetV2 1.0-224 and ResNet-18 with random weights (latency; agreement with FP32 on random
inputs). Random weights leave BatchNorm at its initial statistics, under which MobileNetV2's
activations shrink about 10x per block (logits ~1e-9: any INT8 scheme then outputs zeros), so
the BatchNorm statistics are first set by forward passes on the random inputs, as training
would; the weights stay random.

effai rows: its default (`export_onnx`, settings from the CPU flags, ONNX Runtime), tuned on
ONNX Runtime (`tune=True`), for OpenVINO (`runtime="openvino"`), and `runtime="auto"` (every
candidate of both runtimes timed, the fastest kept among those at most 1 dB below the SQNR of
the CPU-chosen default): effai's best.
Latency: batch 1, 1 thread, persistent sessions, interleaved rounds (effai.profile.latency.interleaved),
median. Usage: .venv/bin/python benchmarks/quantize_peers.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, table, write_results  # noqa: E402

import effai.numerics as nx  # noqa: E402
from effai import data, train, zoo  # noqa: E402
from effai.profile.latency import interleaved, onnx_runner  # noqa: E402
from effai.quantize import Int8StaticConfig, quantize_  # noqa: E402
from effai.quantize.export import (  # noqa: E402
    ORT_DEFAULT,
    export_float,
    export_onnx,
    quantize_onnx_int8,
    settings_label,
    to_fp16,
)

THREADS = 1
N_CALIB = 16  # every INT8 method calibrates on the same 16 inputs
ROUND_MS = 50.0  # each variant's share of a round lasts >= 50 ms (>= 10 calls)
GRID = [  # the ORT settings tried to find "ORT's best for this CPU"
    {"quant_format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": False, "reduce_range": False},
    {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True, "reduce_range": True},
]
PEERS = ("ORT quantize_static default", "NNCF + OpenVINO int8")  # plus "ORT best of grid (...)"
NOISE = "noise control: fp32 (ORT) again"


def first_output(run):
    return lambda x: run(x)[0]


def nncf_openvino_int8(float_onnx, calib: list[np.ndarray], out_dir: Path):
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        return None, f"not installed ({e})"
    t = time.time()
    q = nncf.quantize(ov.convert_model(str(float_onnx)), nncf.Dataset(calib), subset_size=len(calib))
    secs = time.time() - t
    xml = out_dir / "ov_int8.xml"
    ov.save_model(q, str(xml))
    size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    run = first_output(onnx_runner(xml, "openvino", THREADS))  # OpenVINO reads its IR like an ONNX file
    return (run, size, secs, f"nncf {nncf.__version__}, openvino {ov.__version__}"), None


def set_bn_statistics(model, x: np.ndarray):
    """Random weights: set BatchNorm running statistics from forward passes (weights unchanged)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 8):
            model(torch.from_numpy(x[i:i + 8]))
    return model.eval()


def train_mnist_model(quick: bool):
    ds = data.load("mnist5k", seed=0)
    m = zoo.create("mobilenet_v2", num_classes=10, in_channels=1, resolution=28, width_mult=0.5)
    out = ROOT / "runs" / ("bench_quantize_peers_mnv2" + ("_quick" if quick else ""))
    train.fit(m, ds, train.TrainConfig(epochs=2 if quick else 8, seed=0, threads=2), out_dir=out, progress=False)
    return ds, m.eval()


SIM = "effai from simulation"


def gate_for(random_weights: bool) -> dict:
    """export_onnx's verification floor: the default (20 dB, 99% top-1) for the trained model; for
    random weights, whose near-tied logits and chaotic propagation of rounding put every INT8
    method near 13 dB against FP32, 10 dB and 50%."""
    return {"min_sqnr_db": 10.0, "min_agreement": 0.5} if random_weights else {}


def effai_from_simulation(model, calib_t, x1, x_eval, random_weights: bool, tmp: Path, onnx_variant) -> str:
    """quantize_ (static INT8, minmax, the same calibration inputs), then export_onnx of the
    quantized model with no calibration data, runtime="auto": one file, timed here on each
    runtime it loads in; the auto choice is marked."""
    t = time.time()
    q = quantize_(copy.deepcopy(model), Int8StaticConfig(calibration=calib_t))
    try:
        info = export_onnx(q, tmp / "sim.onnx", x1, runtime="auto", verify_inputs=torch.from_numpy(x_eval[:16]),
                           **gate_for(random_weights))
    except Exception as e:  # noqa: BLE001 - a refused export is reported in the table
        print(f"{SIM}: refused ({e})")
        return f"{SIM}: refused ({str(e)[:200]})"
    secs = time.time() - t
    for c in info["candidates"]:
        if c["error"] is None:
            chosen = ", auto choice" if c["chosen"] else ""
            onnx_variant(f"{SIM} ({c['runtime']}{chosen})", info["path"], c["runtime"], secs,
                         f"{c['runtime']}: its own scales; file vs torch model {c['sqnr_db']:.1f} dB")
    return (f"{SIM}: file vs the torch-simulated model {info['verification']['sqnr_db']:.1f} dB SQNR, top-1 agreement "
            f"{info['verification']['top1_agreement']:.3f} on 16 held-out inputs; ONNX Runtime runs "
            + ", ".join(f"{k} x{v}" for k, v in info["kernels"]["ops"].items()))


def evaluate_model(name, model, x_eval, y_eval, calib, rounds, quick):
    """All variants of one model; returns rows, grid rows, effai's candidate table, a note."""
    tmp = Path(tempfile.mkdtemp(prefix="qpeers_"))
    x1 = torch.from_numpy(x_eval[:1])
    fp = export_float(model, tmp / "fp32.onnx", x1)
    calib_t = torch.from_numpy(np.concatenate(calib))
    variants = {}  # label -> (runner, bytes, prepare seconds, settings)

    def onnx_variant(label, path, runtime="onnxruntime", secs=0.0, note=""):
        variants[label] = (first_output(onnx_runner(path, runtime, THREADS)), os.path.getsize(path), secs, note)

    onnx_variant("fp32 (ORT)", fp)
    onnx_variant(NOISE, fp)  # a second session on the same file: its 'speedup' is the timing noise
    t = time.time()
    to_fp16(fp, tmp / "fp16.onnx")
    onnx_variant("effai fp16 (ORT)", tmp / "fp16.onnx", secs=time.time() - t)
    t = time.time()
    quantize_onnx_int8(fp, tmp / "ort_default.onnx", calib_t, ORT_DEFAULT, "minmax")
    onnx_variant("ORT quantize_static default", tmp / "ort_default.onnx", secs=time.time() - t, note=settings_label(ORT_DEFAULT))
    grid = {}
    for i, s in enumerate(GRID if not quick else GRID[1:3]):
        p = tmp / f"ort_grid{i}.onnx"
        t = time.time()
        quantize_onnx_int8(fp, p, calib_t, s, "minmax")
        grid[settings_label(s)] = (first_output(onnx_runner(p, "onnxruntime", THREADS)), os.path.getsize(p),
                                   time.time() - t, settings_label(s))
    effai_runs = [("effai int8 (ORT, CPU-chosen default)", {"runtime": "onnxruntime"}),
                  ("effai int8 (ORT, tuned)", {"runtime": "onnxruntime", "tune": True}),
                  ("effai int8 (OpenVINO)", {"runtime": "openvino"}),
                  ("effai int8 auto (best of ORT + OpenVINO)", {"runtime": "auto"})]
    candidates = []
    for label, kw in effai_runs:
        t = time.time()
        try:
            info = export_onnx(model, tmp / f"{len(variants)}.onnx", x1, "int8", calibration=calib_t,
                               verify_inputs=torch.from_numpy(x_eval[:16]), **kw, **gate_for(y_eval is None))
        except Exception as e:  # noqa: BLE001 - OpenVINO missing: say so in the table
            print(f"{label}: skipped ({e})")
            continue
        onnx_variant(label, info["path"], info["runtime"], time.time() - t,
                     f"{info['runtime']}: {settings_label(info['settings'])}")
        if kw["runtime"] == "auto":
            candidates = [{"model": name, **c} for c in info["candidates"]]
    sim_note = effai_from_simulation(model, calib_t, x1, x_eval, y_eval is None, tmp, onnx_variant)
    ov, why = nncf_openvino_int8(fp, calib, tmp)
    if ov is not None:
        variants["NNCF + OpenVINO int8"] = ov
        onnx_variant("OpenVINO fp32", fp, "openvino")
    # latency: the grid first to find ORT's best, then everything in one interleaved run
    xin = x_eval[:1]
    grid_lat = interleaved({k: (lambda r=v[0]: r(xin)) for k, v in grid.items()}, rounds=max(3, rounds // 2),
                           inner=10, min_round_ms=ROUND_MS)
    best = min(grid_lat, key=grid_lat.get)
    variants[f"ORT best of grid ({best})"] = grid[best]
    lat = interleaved({k: (lambda r=v[0]: r(xin)) for k, v in variants.items()}, rounds=rounds, inner=10,
                      min_round_ms=ROUND_MS)
    # agreement with FP32 (and accuracy where labels exist)
    ref = np.concatenate([variants["fp32 (ORT)"][0](x_eval[i:i + 1]) for i in range(len(x_eval))])
    rows = []
    base = lat["fp32 (ORT)"]
    for k, (run, size, secs, note) in variants.items():
        out = np.concatenate([run(x_eval[i:i + 1]) for i in range(len(x_eval))])
        row = {"model": name, "variant": k, "settings": note, "bytes": int(size),
               "size_vs_fp32": size / variants["fp32 (ORT)"][1], "latency_ms": lat[k],
               "speedup_vs_fp32_ort": base / lat[k], "sqnr_db_vs_fp32": nx.sqnr_db(ref, out),
               "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()), "prepare_s": secs}
        if y_eval is not None:
            row["accuracy"] = float((out.argmax(1) == y_eval).mean())
        rows.append(row)
    grid_rows = [{"model": name, "settings": k, "latency_ms": v, "speedup_vs_fp32_ort": base / v}
                 for k, v in grid_lat.items()]
    variants.clear()
    grid.clear()
    shutil.rmtree(tmp, ignore_errors=True)
    return rows, grid_rows, candidates, why, sim_note


def summary(rows: list[dict]) -> list[dict]:
    """Per model: effai's best (auto) against the fastest peer, and both against FP32 on ORT."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["variant"]: r for r in rows if r["model"] == model}
        effai = mine.get("effai int8 auto (best of ORT + OpenVINO)") or mine["effai int8 (ORT, tuned)"]
        peers = [r for k, r in mine.items() if k in PEERS or k.startswith("ORT best of grid")]
        peer = min(peers, key=lambda r: r["latency_ms"])
        sim = next((r for k, r in mine.items() if k.startswith(SIM) and "auto choice" in k), None)
        ort_best = next(r for k, r in mine.items() if k.startswith("ORT best of grid"))
        out.append({"model": model, "effai": effai["settings"], "effai_ms": effai["latency_ms"],
                    "sim": sim["variant"] if sim else "refused", "sim_ms": sim["latency_ms"] if sim else None,
                    "sim_vs_peer": sim["latency_ms"] / peer["latency_ms"] if sim else None,
                    "sim_vs_ort_best": sim["latency_ms"] / ort_best["latency_ms"] if sim else None,
                    "effai_sqnr_db": effai["sqnr_db_vs_fp32"], "peer": peer["variant"], "peer_ms": peer["latency_ms"],
                    "peer_sqnr_db": peer["sqnr_db_vs_fp32"], "effai_vs_peer": effai["latency_ms"] / peer["latency_ms"],
                    "effai_speedup_vs_fp32_ort": effai["speedup_vs_fp32_ort"],
                    "noise": abs(mine[NOISE]["latency_ms"] / mine["fp32 (ORT)"]["latency_ms"] - 1)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs, rounds and samples (smoke test)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rounds = 3 if args.quick else 9
    all_rows, grid_rows, cand_rows, notes = [], [], [], []

    ds, mnv2 = train_mnist_model(args.quick)
    n_eval = 100 if args.quick else 500
    x_test = ds.test.tensors[0][:n_eval].numpy().astype(np.float32)
    y_test = ds.test.tensors[1][:n_eval].numpy()
    calib = [c[None].numpy().astype(np.float32) for c in ds.calibration(N_CALIB)]
    torch_acc = train.score(mnv2, torch.utils.data.DataLoader(ds.test, batch_size=500)).accuracy
    notes.append(f"mnist5k MobileNetV2-0.5 (28x28) torch FP32 test accuracy {torch_acc:.4f}")
    notes.append("Random weights give nearly tied logits, so top-1 agreement on the 224 models is a weak signal "
                 "(FP16 agrees on only ~94% of MobileNetV2's inputs); SQNR compares methods there, the trained "
                 "mnist model compares accuracy.")
    notes.append("effai's auto choice keeps output SQNR within 1 dB of its per-channel default; ORT's fastest "
                 "setting on the mnist model (per-tensor QOperator) is ~3 dB lower. `max_sqnr_loss_db=3` lets "
                 "effai make the same trade.")
    r, g, c, why, sim = evaluate_model("mobilenet_v2 0.5 mnist5k", mnv2, x_test, y_test, calib, rounds, args.quick)
    all_rows, grid_rows, cand_rows = all_rows + r, grid_rows + g, cand_rows + c
    notes.append(f"mobilenet_v2 0.5 mnist5k, {sim}")
    if why:
        notes.append(f"NNCF/OpenVINO: {why}")
    rng = np.random.default_rng(0)
    for zname in ("mobilenet_v2", "resnet18"):
        x = rng.standard_normal((16 if args.quick else 64, 3, 224, 224)).astype(np.float32)
        m = set_bn_statistics(zoo.create(zname), x[:32])
        n_held = 8 if args.quick else 32
        calib = [x[i:i + 1] for i in range(N_CALIB)]
        r, g, c, _, sim = evaluate_model(f"{zname} 1.0-224 (random weights)", m, x[-n_held:], None, calib, rounds,
                                         args.quick)
        all_rows, grid_rows, cand_rows = all_rows + r, grid_rows + g, cand_rows + c
        notes.append(f"{zname} (random weights), {sim}")
    summ = summary(all_rows)

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
        f"Latency: batch 1, {THREADS} thread, persistent sessions, {rounds} interleaved rounds of >= 10 calls and "
        f">= {ROUND_MS:.0f} ms per variant, median of the per-round means (`effai.profile.latency.interleaved`; all variants of one model in the same rounds). "
        f"Calibration: the same {N_CALIB} inputs for every INT8 method, minmax (training images for mnist, "
        "random-normal inputs for the 224 models, whose random weights get BatchNorm statistics from forward "
        "passes so activations keep their scale). SQNR / top-1 agreement compare the logits with FP32 ONNX "
        "Runtime on held-out inputs. *ORT best of grid* is the fastest of the ORT settings grid below, measured "
        "in this run. effai *auto* = `export_onnx(..., runtime=\"auto\")`: every candidate of both runtimes "
        "quantized and timed during export, the fastest kept among those whose SQNR is at most 1 dB below the CPU-chosen default's.",
        "",
        "**effai's best INT8 against the fastest peer** (ratio < 1: effai faster; *noise* is how far a second "
        "session on the FP32 file lands from the first in the same rounds, so a ratio within it is a tie). The "
        "latency goal is on the two 224x224 models; the mnist model (0.3 ms a call) is there for accuracy:",
        "",
        table(["model", "effai (auto)", "effai ms", "effai SQNR dB", "fastest peer", "peer ms", "peer SQNR dB",
               "effai / peer", "effai speedup vs FP32 ORT", "noise (fp32 twice)"],
              [[s["model"], s["effai"], f"{s['effai_ms']:.2f}", f"{s['effai_sqnr_db']:.1f}", s["peer"],
                f"{s['peer_ms']:.2f}", f"{s['peer_sqnr_db']:.1f}", f"{s['effai_vs_peer']:.3f}",
                f"{s['effai_speedup_vs_fp32_ort']:.2f}x", f"{s['noise']:.1%}"] for s in summ]),
        "",
        f"**{SIM}**: `quantize_(model, Int8StaticConfig(calibration=...))` on the same inputs, then "
        "`export_onnx(quantized, path, x, runtime=\"auto\")` with no calibration data: the file carries effai's own "
        "scales, is checked against the torch model (notes below) and is timed here in the runtime auto chose "
        "(goal: <= 1.05x the fastest peer and ORT's best settings):",
        "",
        table(["model", "file (runtime)", "ms", "vs fastest peer", "vs ORT best of grid", "noise (fp32 twice)"],
              [[s["model"], s["sim"], "-" if s["sim_ms"] is None else f"{s['sim_ms']:.2f}",
                "-" if s["sim_vs_peer"] is None else f"{s['sim_vs_peer']:.3f}",
                "-" if s["sim_vs_ort_best"] is None else f"{s['sim_vs_ort_best']:.3f}", f"{s['noise']:.1%}"]
               for s in summ]),
        "",
        "**All variants:**",
        "",
        table(["model", "variant", "settings", "size", "size/fp32", "latency ms", "speedup vs fp32", "SQNR dB",
               "top-1 agree", "accuracy"],
              [[r["model"], r["variant"], r["settings"], f"{r['bytes'] / 1e6:.2f} MB", f"{r['size_vs_fp32']:.2f}",
                f"{r['latency_ms']:.2f}", f"{r['speedup_vs_fp32_ort']:.2f}x", f"{r['sqnr_db_vs_fp32']:.1f}",
                f"{r['top1_agreement']:.3f}", f"{r['accuracy']:.4f}" if "accuracy" in r else "-"] for r in all_rows]),
        "",
        "effai *auto*'s candidates as measured during export (SQNR on 8 calibration inputs; "
        "11 interleaved rounds of >= 20 ms per candidate after 10 warm-up calls, fastest round; the first row, the CPU-chosen default, is the "
        "accuracy reference):",
        "",
        table(["model", "runtime", "settings", "SQNR dB", "latency ms", "chosen"],
              [[c["model"], c["runtime"], c["settings"], f"{c['sqnr_db']:.1f}",
                "not timed" if c["latency_ms"] is None else f"{c['latency_ms']:.2f}",
                "yes" if c["chosen"] else ""] if not c["error"] else
               [c["model"], c["runtime"], c["settings"], "-", "-", f"failed: {c['error']}"] for c in cand_rows]),
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
                                     "summary": summ, "rows": all_rows, "grid": grid_rows, "candidates": cand_rows,
                                     "notes": notes}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
