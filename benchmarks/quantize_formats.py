"""Accuracy and size of every numeric format on a CNN trained on mnist5k, PTQ against QAT.

LeNet-5 (zoo `lenet5`) trained on mnist5k, then each format applied with `effai.quantize`;
size is the real `torch.save(state_dict)` file; accuracy on the 500-image test split;
SQNR of the logits against the float model. QAT fine-tunes from the float model with
`effai.train.fit`. Usage: .venv/bin/python benchmarks/quantize_formats.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, table, write_results  # noqa: E402

import effai.numerics as nx  # noqa: E402
from effai import data, train, zoo  # noqa: E402
from effai.quantize import (  # noqa: E402
    BFloat16Config,
    BinaryConfig,
    Float16Config,
    FP4Config,
    FP8Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    QATConfig,
    TernaryConfig,
    WeightOnlyConfig,
    mixed_precision,
    quantize_,
    state_dict_bytes,
)


def measure(quick: bool = False) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    ds = data.load("mnist5k", seed=0)
    _, val, test = ds.loaders(256)
    m = zoo.create("lenet5", num_classes=10, in_channels=1)
    epochs = 3 if quick else 20
    train.fit(m, ds, train.TrainConfig(epochs=epochs, seed=0, threads=2), out_dir=ROOT / "runs" / "bench_quantize_formats",
              resume=False, progress=False)
    m.eval()
    calib = ds.calibration(256)
    x_test = ds.test.tensors[0]
    with torch.no_grad():
        ref = m(x_test)
    fp32_bytes = state_dict_bytes(m)
    qat_epochs = 1 if quick else 6
    qat_train = train.TrainConfig(epochs=qat_epochs, lr=5e-4, seed=0, threads=2)
    variants = [
        ("fp32", "float", None),
        ("fp16", "weights+activations", Float16Config()),
        ("bf16", "weights+activations", BFloat16Config()),
        ("fp8_e4m3", "weights (per-channel scale) + activations", FP8Config(activations=True)),
        ("fp8_e5m2", "weights (per-channel scale) + activations", FP8Config(fmt="fp8_e5m2", activations=True)),
        ("fp4_e2m1", "weights, scale per 32", FP4Config()),
        ("int8", "static PTQ, minmax", Int8StaticConfig(calibration=calib, method="minmax")),
        ("int8", "static PTQ, percentile", Int8StaticConfig(calibration=calib, method="percentile")),
        ("int8", "static PTQ, entropy", Int8StaticConfig(calibration=calib, method="entropy")),
        ("int8", "static PTQ, mse", Int8StaticConfig(calibration=calib, method="mse")),
        ("int8", "dynamic", Int8DynamicConfig()),
        ("int8", "weight-only", WeightOnlyConfig(bits=8)),
        ("int4", "weight-only PTQ, per channel", WeightOnlyConfig(bits=4)),
        ("int4", "weight-only PTQ, group 32", WeightOnlyConfig(bits=4, group_size=32)),
        ("int4", f"QAT ({qat_epochs} epochs), per channel", QATConfig(fmt="int4", data=ds, train=qat_train)),
        ("int2", "weight-only PTQ, group 16", WeightOnlyConfig(bits=2, group_size=16)),
        ("ternary", "TWN PTQ", TernaryConfig()),
        ("ternary", f"TWN QAT ({qat_epochs} epochs)", QATConfig(fmt="ternary", data=ds, train=qat_train)),
        ("binary", "XNOR PTQ (first/last float)", BinaryConfig()),
        ("binary", f"XNOR QAT ({qat_epochs} epochs, all layers)", QATConfig(fmt="binary", data=ds, train=qat_train)),
    ]
    rows = []
    for fmt, how, cfg in variants:
        q = copy.deepcopy(m)
        t = time.time()
        if cfg is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_(q, cfg)
        secs = time.time() - t
        q.eval()
        with torch.no_grad():
            out = q(x_test)
        acc = train.score(q, test).accuracy
        size = state_dict_bytes(q)
        rows.append({"format": fmt, "method": how, "accuracy": acc, "bytes": size, "size_vs_fp32": size / fp32_bytes,
                     "sqnr_db": nx.sqnr_db(ref, out), "seconds": secs})
        print(rows[-1], flush=True)
    # mixed precision: per-layer sensitivity, then formats under a 15%-of-fp32 weight budget
    params = sum(p.numel() for p in m.parameters())
    table_rows, mcfg, info = mixed_precision(copy.deepcopy(m), calib[:256], loader=val, budget_bytes=params * 4 * 0.15,
                                             formats=("int8", "int4", "int2"))
    q = quantize_(copy.deepcopy(m), mcfg)
    with torch.no_grad():
        out = q(x_test)
    rows.append({"format": "mixed", "method": "sensitivity-chosen, budget 15% of fp32 weight bytes: " +
                 ", ".join(f"{k}={v}" for k, v in info["formats"].items()), "accuracy": train.score(q, test).accuracy,
                 "bytes": state_dict_bytes(q), "size_vs_fp32": state_dict_bytes(q) / fp32_bytes,
                 "sqnr_db": nx.sqnr_db(ref, out), "seconds": 0.0})
    return {"machine": machine(), "epochs": epochs, "qat_epochs": qat_epochs, "rows": rows,
            "sensitivity": [r.to_dict() for r in table_rows], "mixed": info}


def format_rows(results: dict) -> list[list]:
    base = results["rows"][0]["accuracy"]
    return [[r["format"], r["method"], f"{r['accuracy']:.4f}", f"{(r['accuracy'] - base) * 100:+.1f}",
             f"{r['bytes'] / 1e3:.1f} kB", f"{r['size_vs_fp32']:.3f}", f"{r['sqnr_db']:.1f}"] for r in results["rows"]]


def sensitivity_rows(results: dict) -> list[list]:
    return [[r["layer"], r["type"], r["params"], r["fmt"], f"{r['accuracy']:.4f}", f"{r['accuracy_drop'] * 100:+.1f}",
             f"{r['sqnr_db']:.1f}"] for r in results["sensitivity"]]


def render(results: dict) -> str:
    base, int8_ptq = results["rows"][0]["accuracy"], results["rows"][6]["accuracy"]
    return "\n".join([
        "## Every format on LeNet-5 / mnist5k (`benchmarks/quantize_formats.py`)",
        "",
        f"LeNet-5 trained {results['epochs']} epochs on mnist5k (seed 0); test split of 500 images. Size: bytes of the "
        "real `torch.save(state_dict)` of the quantized model (codes packed: int4 two per byte, int2/ternary four, "
        "binary eight; fp32 biases and per-channel scales included). SQNR: test-set logits against FP32. "
        "Float formats below 16 bits and all activation rounding are simulated on CPU (bit-exact with ml_dtypes). "
        "Deterministic: `make bench-check` reruns both tables.",
        "",
        table(["format", "method", "test accuracy", "Δ vs fp32 (pp)", "size", "size/fp32", "logit SQNR dB"],
              format_rows(results)),
        "",
        f"INT8 static PTQ (minmax) is {(int8_ptq - base) * 100:+.1f} pp from FP32 (goal: within 0.5 pp).",
        "",
        "Per-layer sensitivity (only that layer quantized, weight-only; accuracy on the validation split):",
        "",
        table(["layer", "type", "params", "format", "val accuracy", "drop (pp)", "logit SQNR dB"],
              sensitivity_rows(results)),
        "",
        machine_line(results["machine"]),
    ])


def reproduction(results: dict) -> dict:
    """Both tables' cells as displayed, keyed by row: what `make bench-check` compares."""
    fmt_heads = ["test accuracy", "Δ vs fp32 (pp)", "size", "size/fp32", "logit SQNR dB"]
    sens_heads = ["val accuracy", "drop (pp)", "logit SQNR dB"]
    rows = {f"{r[0]} / {r[1]}": dict(zip(fmt_heads, r[2:], strict=True)) for r in format_rows(results)}
    rows.update({f"sensitivity {r[0]} {r[3]}": dict(zip(sens_heads, r[4:], strict=True))
                 for r in sensitivity_rows(results)})
    return {"setting": {"epochs": results["epochs"], "qat_epochs": results["qat_epochs"]}, "rows": rows}


def reproduce() -> dict:
    return reproduction(measure())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    results = measure(args.quick)
    results["reproduce"] = reproduction(results)
    write_results("quantize_formats", results, render(results))
    print(render(results))


if __name__ == "__main__":
    main()
