"""Quantized BERT deployed: effai's dynamic and static INT8 against ONNX Runtime's
`quantize_dynamic` on the FP32 file, with FP32 and FP16, on the same machine in one run.

Hugging Face BERT from a config (d 256, 4 layers, 4 heads, FFN 1024, seq 128, random weights:
deployment cost and numerical error, not task accuracy), inputs ids + attention mask. Every
variant is an ONNX file with both inputs and dynamic batch / sequence, run by ONNX Runtime (CPU,
batch 1, 1 thread, persistent sessions) in interleaved rounds (`effai.profile.latency.interleaved`,
median of the per-round means); a second session on the FP32 file is the noise-control row.
Error: relative L2 distance of the logits from torch FP32 on held-out rows (random ids, half of
them padded), each row its own call (dynamic ranges depend on the batch).
Goal: effai dynamic <= 1.05x ORT quantize_dynamic's latency at a rel. L2 error <= ORT's + 0.01.
Usage: .venv/bin/python benchmarks/quantize_transformers.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, table, write_results  # noqa: E402

from effai.profile.latency import export_fp32_onnx, interleaved, onnx_runner  # noqa: E402
from effai.quantize import Int8StaticConfig, export_onnx, quantize_  # noqa: E402
from effai.quantize.export import to_fp16  # noqa: E402
from effai.quantize.kernels import runtime_kernels  # noqa: E402

THREADS = 1
VOCAB = 30522
NOISE = "noise control: FP32 again"
ORT_DYN = "ORT quantize_dynamic (FP32 file, defaults)"
EFFAI_DYN = "effai dynamic INT8"
EFFAI_STATIC = "effai static INT8"


def bert(d=256, layers=4, heads=4, ff=1024):
    import transformers

    cfg = transformers.BertConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=ff, vocab_size=VOCAB, max_position_embeddings=512, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def tokens(n: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[: n // 2, -seq // 4:] = 0  # half the rows padded
    return {"input_ids": ids, "attention_mask": mask}


def rows_of(x: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x["input_ids"][i:i + 1].numpy(), x["attention_mask"][i:i + 1].numpy()) for i in range(len(x["input_ids"]))]


def ort_quantize_dynamic(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(fp32), str(out))
    return out


def effai_static(model, x1, calib, held, out: Path) -> Path:
    """quantize_ with static INT8 (minmax, calibrated on token rows with their masks), then export_onnx of the result."""
    q = quantize_(copy.deepcopy(model), Int8StaticConfig(calibration=calib))
    return Path(export_onnx(q, out, x1, verify_inputs=held)["path"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer rounds and held-out rows (smoke test)")
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    rounds, n_held = (3, 8) if args.quick else (11, 32)
    model = bert()
    x1, held, calib = tokens(1, args.seq, 0), tokens(n_held, args.seq, 1), tokens(16, args.seq, 2)
    with torch.no_grad():
        ref = np.concatenate([model(input_ids=torch.from_numpy(a), attention_mask=torch.from_numpy(b)).logits.numpy()
                              for a, b in rows_of(held)])
    tmp = Path(tempfile.mkdtemp(prefix="qtransformers_"))
    files: dict[str, Path] = {}
    prepare: dict[str, float] = {}
    notes: dict[str, str] = {}

    def build(label, make):
        t = time.time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                files[label] = Path(make())
        except Exception as e:  # noqa: BLE001 - a variant that cannot be built is a row saying why
            notes[label] = f"not built: {(str(e).strip().splitlines() or [type(e).__name__])[0][:200]}"
            print(f"{label}: {notes[label]}", flush=True)
        prepare[label] = time.time() - t

    build("FP32", lambda: export_fp32_onnx(model, tmp / "fp32.onnx", x1, dynamic=True))
    files[NOISE] = files["FP32"]
    build("FP16", lambda: to_fp16(files["FP32"], tmp / "fp16.onnx"))
    build(ORT_DYN, lambda: ort_quantize_dynamic(files["FP32"], tmp / "ort_dynamic.onnx"))
    build(EFFAI_DYN, lambda: export_onnx(model, tmp / "effai_dynamic.onnx", x1, mode="dynamic",
                                         verify_inputs=held)["path"])
    build(EFFAI_STATIC, lambda: effai_static(model, x1, calib, held, tmp / "effai_static.onnx"))
    runs = {k: onnx_runner(f, "onnxruntime", THREADS) for k, f in files.items()}
    a, b = rows_of(x1)[0]
    ms = interleaved({k: (lambda r=r: r(a, b)) for k, r in runs.items()}, rounds=rounds, inner=10, warmup=5,
                     min_round_ms=50.0)
    results = []
    for k, f in files.items():
        out = np.concatenate([runs[k](*row)[0] for row in rows_of(held)])
        results.append({"variant": k, "bytes": os.path.getsize(f), "latency_ms": ms[k],
                        "vs_fp32": ms["FP32"] / ms[k], "rel_l2": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
                        "prepare_s": prepare.get(k, 0.0), "ops": dict(runtime_kernels(f).ops)})
    by = {r["variant"]: r for r in results}
    goal = None
    if EFFAI_DYN in by and ORT_DYN in by:
        goal = {"latency_ratio": by[EFFAI_DYN]["latency_ms"] / by[ORT_DYN]["latency_ms"],
                "rel_l2_effai": by[EFFAI_DYN]["rel_l2"], "rel_l2_ort": by[ORT_DYN]["rel_l2"],
                "noise": abs(by[NOISE]["latency_ms"] / by["FP32"]["latency_ms"] - 1)}
        goal["met"] = goal["latency_ratio"] <= 1.05 and goal["rel_l2_effai"] <= goal["rel_l2_ort"] + 0.01
    mach = machine()
    md = [
        "## Quantized transformers: BERT dynamic and static INT8 against ONNX Runtime (`benchmarks/quantize_transformers.py`)",
        "",
        f"Hugging Face BERT from a config (d 256, 4 layers, 4 heads, FFN 1024, seq {args.seq}, ids + attention mask, "
        "random weights: deployment cost and numerical error only). Every file keeps both inputs with dynamic batch / "
        f"sequence. Latency: ONNX Runtime CPU, batch 1, {THREADS} thread, {rounds} interleaved rounds of >= 10 calls "
        "and >= 50 ms per variant, median of the per-round means. Error: rel. L2 of the logits against torch FP32 on "
        f"{n_held} held-out rows (half padded), one call per row. *{EFFAI_DYN}*: `export_onnx(bert, path, inputs, "
        f"mode=\"dynamic\")` (Linear layers int8 per channel, embeddings int8 per row); *{ORT_DYN}*: "
        "`onnxruntime.quantization.quantize_dynamic` on the FP32 file (int8 per tensor, embeddings int8 too); "
        f"*{EFFAI_STATIC}*: `quantize_(bert, Int8StaticConfig(calibration=...))` on 16 token rows, then "
        "`export_onnx` (LayerNorm, Softmax, GELU float). Goal: effai dynamic <= 1.05x ORT's latency at rel. L2 <= "
        "ORT's + 0.01.",
        "",
    ]
    if goal:
        md += [f"**effai dynamic / ORT quantize_dynamic latency: {goal['latency_ratio']:.3f}** (noise row "
               f"{goal['noise']:.1%}); rel. L2 effai {goal['rel_l2_effai']:.4f}, ORT {goal['rel_l2_ort']:.4f}: goal "
               + ("met." if goal["met"] else "**not met**."), ""]
    md += [table(["variant", "size", "latency ms", "speedup vs FP32", "rel. L2 vs torch FP32", "ONNX Runtime ops"],
                 [[r["variant"], f"{r['bytes'] / 1e6:.1f} MB", f"{r['latency_ms']:.2f}", f"{r['vs_fp32']:.2f}x",
                   f"{r['rel_l2']:.4f}", ", ".join(f"{k} x{v}" for k, v in r["ops"].items())] for r in results]
                 + [[k, "-", "-", "-", "-", v] for k, v in notes.items()]),
           "", machine_line(mach)]
    write_results("quantize_transformers", {"machine": mach, "threads": THREADS, "rounds": rounds, "seq": args.seq,
                                            "quick": args.quick, "held_out_rows": n_held, "results": results,
                                            "goal": goal, "not_built": notes}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
