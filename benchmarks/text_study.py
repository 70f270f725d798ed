"""The study on a text task: accuracy, size, params and MACs of the transformer variants.

The zoo's `text_transformer` (d 64, 2 layers, 4 heads, FFN 128) trained by `effai.study.run` on
the synthetic `keywords` set (2,000 sequences of 32 tokens, 4 classes that only word order
separates), then each text variant built and evaluated on the same 200 test sequences, for
seeds 0-2 (TEXT_SEEDS). Accuracy only: the latencies the study measures are not reported here (this
script may run on a busy machine).
Run: .venv/bin/python benchmarks/text_study.py [--quick]  (about 10 min a seed on 2 busy cores; --quick: 1 seed,
3 epochs; TEXT_SEEDS=0,1 picks the seeds)
"""

import os
import sys
import tempfile

from common import machine, machine_line, table, write_results

from effai.study import StudyConfig, run

VARIANTS = ("fp32", "int8_dynamic", "int8_ptq", "int4", "heads_ffn_50", "kd_fewer_layers", "kd_student",
            "magnitude_75")
QUICK = "--quick" in sys.argv
SEEDS = (0,) if QUICK else tuple(int(s) for s in os.environ.get("TEXT_SEEDS", "0,1,2").split(","))
EPOCHS = 3 if QUICK else 12


def one_seed(seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        r = run(StudyConfig(dataset="keywords", model="text_transformer", variants=VARIANTS, epochs=EPOCHS, seed=seed,
                            quick=True, out=out))
    return {v.name: {"accuracy": v.accuracy, "size_bytes": v.size_bytes, "params": v.cost.params if v.ok else None,
                     "macs": v.cost.macs if v.ok else None, "format": v.cost.size_format if v.ok else None,
                     "error": v.error} for v in r.variants}


def main():
    runs = {}
    for seed in SEEDS:
        runs[seed] = one_seed(seed)
        print(seed, {n: v["accuracy"] for n, v in runs[seed].items()}, flush=True)
    rows = []
    for name in VARIANTS:
        accs = [runs[s][name]["accuracy"] for s in SEEDS]
        v = runs[SEEDS[0]][name]
        if any(a is None for a in accs):
            rows.append([name, "failed: " + (v["error"] or "")[:60], "", "", "", ""])
            continue
        rows.append([name, " / ".join(f"{a:.1%}" for a in accs), f"{sum(accs) / len(accs):.1%}",
                     f"{v['size_bytes'] / 1e3:.1f} KB", f"{v['params']:,}", f"{v['macs'] / 1e6:.2f} M"])
    m = machine()
    md = ("## The study on a text task (`benchmarks/text_study.py`)\n\n"
          f"`effai.study.run` on the SYNTHETIC `keywords` set (2,000 sequences of 32 tokens, 4 classes told apart "
          f"only by the order of two keywords; 200 test sequences) with the zoo's `text_transformer` (d 64, "
          f"2 layers, 4 heads, FFN 128) trained {EPOCHS} epochs per seed (seeds {list(SEEDS)}; the study's quick "
          "settings: 1-epoch fine-tunes). Test accuracy per seed and its mean; size in the variant's storage "
          "format; params and MACs counted on its structure (MACs at batch 1). Latency is not reported: "
          "this is an accuracy benchmark.\n\n"
          + table(["variant", "test accuracy per seed", "mean", "size", "params", "MACs"], rows)
          + "\n\n" + machine_line(m))
    write_results("text_study", {"machine": m, "epochs": EPOCHS, "seeds": list(SEEDS), "variants": list(VARIANTS),
                                 "runs": {str(s): r for s, r in runs.items()}}, md)
    print(md)


if __name__ == "__main__":
    main()
