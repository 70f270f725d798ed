"""Attention-head and FFN-neuron pruning of BERT: MAC reduction against measured latency speedup.

Hugging Face BERT built from a config (d 256, 4 layers, 4 heads, FFN 1024, seq 128, random
weights: deployment cost only, not accuracy), inputs ids + attention mask. Pruned with
`HeadFFNConfig(head_ratio=0.5, ffn_ratio=0.5)` (magnitude importance), uniform and
latency-aware allocation. Every variant is exported to ONNX (both inputs) and timed with ONNX
Runtime (CPU, batch 1, 1 thread) in interleaved rounds (median of the per-round means of the
calling thread's CPU time, effai.prune.latency.clock_for); a second copy of the dense model is
the noise-control row.
Goal: speedup >= 0.8 x MAC reduction.
Run: .venv/bin/python benchmarks/prune_transformers.py [--rounds 9] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from common import machine, machine_line, table, write_results  # noqa: E402

import effai  # noqa: E402
from effai.profile.latency import export_fp32_onnx, interleaved, onnx_runner  # noqa: E402
from effai.prune import HeadFFNConfig, prune_  # noqa: E402
from effai.prune.latency import clock_for  # noqa: E402


def bert(d=256, layers=4, heads=4, ff=1024, seq=128):
    import transformers

    cfg = transformers.BertConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=ff, vocab_size=30522, max_position_embeddings=512, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="3 rounds, no results written (proves the script runs)")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    torch.set_num_threads(1)
    base = bert(seq=args.seq)
    ids = torch.randint(0, 30522, (1, args.seq), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    t0 = time.perf_counter()
    aware = prune_(copy.deepcopy(base), HeadFFNConfig(0.5, 0.5, allocation="latency", threads=1, seq_len=args.seq,
                                                      round_to=16))
    probe_s = time.perf_counter() - t0
    variants = {"dense": base, "dense (noise control)": copy.deepcopy(base),
                "effai uniform: heads 50% + FFN 50%": prune_(copy.deepcopy(base), HeadFFNConfig(
                    0.5, 0.5, allocation="uniform")),
                "effai latency-aware: heads 50% + FFN 50%": aware}
    feed = [ids.numpy(), inputs["attention_mask"].numpy()]
    out, calls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, m in variants.items():
            with torch.no_grad():
                assert m(**inputs).logits.shape == base(**inputs).logits.shape, k
            prof = effai.profile(m, example_inputs=inputs, latency=False)
            f = export_fp32_onnx(m, Path(tmp) / f"{len(calls)}.onnx", inputs)
            run = onnx_runner(f, "onnxruntime", threads=1)
            calls[k] = lambda run=run: run(*feed)
            out[k] = {"params": prof.total.params, "macs": prof.total.macs, "heads": [
                layer.attention.self.num_attention_heads for layer in m.bert.encoder.layer], "ffn": [
                layer.intermediate.dense.out_features for layer in m.bert.encoder.layer]}
        load = [os.getloadavg()[0]]
        ms = interleaved(calls, rounds=args.rounds, inner=10, clock=clock_for(1))
        load.append(os.getloadavg()[0])
    rows = []
    for k, r in out.items():
        r["latency_ms"] = ms[k]
        r["mac_reduction"] = out["dense"]["macs"] / r["macs"]
        r["speedup"] = ms["dense"] / ms[k]
        r["speedup_per_mac_reduction"] = r["speedup"] / r["mac_reduction"]
        rows.append([k, f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e6:.0f} M", f"{ms[k]:.2f}",
                     f"{r['mac_reduction']:.2f}x", f"{r['speedup']:.2f}x", f"{r['speedup_per_mac_reduction']:.2f}"])
        print(rows[-1], flush=True)
    m = machine()
    m["load_average_1min"] = load
    m["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    md = (
        "## Transformer pruning: heads and FFN neurons of BERT (`benchmarks/prune_transformers.py`)\n\n"
        f"Hugging Face BERT from a config (d 256, 4 layers, 4 heads, FFN 1024, seq {args.seq}, ids + mask, random "
        "weights: deployment cost only). `HeadFFNConfig(0.5, 0.5, allocation=\"uniform\")` removes half of every "
        "layer's heads (Q/K/V/O together) and half of its FFN neurons; `allocation=\"latency\"` (threads=1, "
        f"seq_len={args.seq}, round_to=16; what `auto` picks for this model) spends the same head and neuron budgets "
        "where single attention / FFN layers timed in ONNX Runtime save the most time (layers of one shape pruned "
        f"evenly; probing took {probe_s:.1f} s). Kept heads / FFN neurons per layer: " + "; ".join(
            f"{k}: {r['heads']} / {r['ffn']}" for k, r in out.items() if "effai" in k) + ". "
        "MACs and params from `effai.profile` (embeddings are lookups, 0 "
        "MACs). Latency: ONNX Runtime CPU, batch 1, 1 thread, "
        f"{args.rounds} interleaved rounds x 10 runs, median of the per-round means of the calling thread's CPU time "
        "(the cost on a core of its own: other processes' load left out). The noise-control row is a "
        "second copy of the dense model. Goal: speedup / MAC reduction >= 0.8.\n\n"
        + table(["variant", "params", "MACs", "latency ms", "MAC reduction", "speedup", "speedup / MAC reduction"],
                rows)
        + f"\n\n{machine_line(m)} Load average (1 min) {load[0]:.1f} before and {load[1]:.1f} after timing on "
        f"{m['cores']} cores (a shared, loaded machine); commit {m['commit']}.\n"
    )
    if args.quick:
        return
    write_results("prune_transformers", {"machine": m, "rounds": args.rounds, "seq": args.seq, "threads": 1,
                                         "batch": 1, "probe_seconds": probe_s, "results": out}, md)


if __name__ == "__main__":
    main()
