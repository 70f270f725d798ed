"""Keyword spotting on the synthetic `kws` set: synthesis time, DS-CNN fp32 and int8 accuracy.

1. Synthesis of the default set (4,800 clips) into an empty cache folder, timed, with the load.
2. DS-CNN (the zoo's MLPerf Tiny model) trained with effai's loop, seeds 0-2.
3. Post-training static INT8 (`effai.quantize.Int8StaticConfig`, 256 calibration clips) of each,
   on the same test clips.
Run: .venv/bin/python benchmarks/kws_dscnn.py  (about 15 min on 2 idle cores)
"""

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, machine_line, table, write_results

from effai import data, quantize, train, zoo

EPOCHS = int(os.environ.get("KWS_EPOCHS", 20))
SEEDS = tuple(int(s) for s in os.environ.get("KWS_SEEDS", "0,1,2").split(","))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the espeak-ng calls):
    the cost of synthesis independent of how many other jobs share the cores."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def synthesis() -> dict:
    from effai.data.kws import kws

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EFFAI_CACHE_DIR"] = tmp
        load0, t0, cpu0 = os.getloadavg(), time.perf_counter(), cpu_seconds()
        x = kws()[0]
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        t1 = time.perf_counter()
        kws()
        cached = time.perf_counter() - t1
    del os.environ["EFFAI_CACHE_DIR"]
    return {"clips": len(x), "seconds": seconds, "cpu_seconds": cpu, "cached_seconds": cached, "loadavg_start": load0,
            "loadavg_end": os.getloadavg(), "cpus": os.cpu_count()}


def commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return r.stdout.strip() or "unknown"


def accuracy(model, ds) -> float:
    return train.evaluate(model.eval(), ds.loaders()[2])["accuracy"]


def main():
    synth = synthesis()
    print(synth, flush=True)
    ds = data.load("kws", seed=0)
    runs = []
    load0 = os.getloadavg()
    for seed in SEEDS:
        torch.manual_seed(seed)
        net = zoo.create("ds_cnn", **zoo.options_for("ds_cnn", ds))
        cfg = train.TrainConfig(epochs=EPOCHS, lr=3e-3, batch_size=64, seed=seed)
        r = train.fit(net, ds, cfg, progress=False)
        q = quantize.quantize_(net.eval(), quantize.Int8StaticConfig(calibration=ds.calibration(256)))
        runs.append({"seed": seed, "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy,
                     "int8_test_accuracy": accuracy(q, ds), "train_seconds": r.train_seconds})
        print(runs[-1], flush=True)
    m = machine()
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("val_accuracy", "test_accuracy", "int8_test_accuracy")}
    rows = [[r["seed"], f"{r['val_accuracy']:.2%}", f"{r['test_accuracy']:.2%}", f"{r['int8_test_accuracy']:.2%}",
             f"{r['train_seconds']:.0f}"] for r in runs]
    rows.append(["mean", f"{mean['val_accuracy']:.2%}", f"{mean['test_accuracy']:.2%}",
                 f"{mean['int8_test_accuracy']:.2%}", ""])
    la, lb = synth["loadavg_start"], synth["loadavg_end"]
    md = (
        "## Keyword spotting: DS-CNN on the synthetic `kws` set (`benchmarks/kws_dscnn.py`)\n\n"
        f"SYNTHETIC speech (espeak-ng; see the keyword-spotting guide): {synth['clips']:,} clips, 12 classes, "
        f"3,840 training / 480 validation / 480 test (seeded stratified split). Synthesis of the whole set into an "
        f"empty cache took {synth['seconds']:.1f} s of wall time on {synth['cpus']} cores under a 1-min load average of "
        f"{la[0]:.1f} at the start and {lb[0]:.1f} at the end (the machine is shared), and {synth['cpu_seconds']:.1f} s "
        f"of CPU time (espeak-ng processes included), which is what 2 idle cores divide; a cached load takes "
        f"{synth['cached_seconds']:.2f} s.\n\n"
        f"DS-CNN (zoo `ds_cnn`, 23,756 parameters), {EPOCHS} epochs of `effai.train.fit` (AdamW lr 3e-3, cosine, "
        f"batch 64; the weights with the best validation accuracy are kept; seeds {list(SEEDS)}), then `quantize_` with "
        "`Int8StaticConfig` (per-channel int8 weights, int8 activations, BatchNorm folded, 256 training clips "
        "for calibration), evaluated on the same 480 test clips. Chance is 8.3%.\n\n"
        + table(["seed", "fp32 val", "fp32 test", "int8 test", "train s"], rows)
        + f"\n\nTraining ran with {torch.get_num_threads()} torch thread(s) under a 1-min load average of "
        f"{load0[0]:.1f} at its start; commit {commit()}. " + machine_line(m)
    )
    write_results("kws_dscnn", {"machine": m, "synthesis": synth, "epochs": EPOCHS, "runs": runs, "mean": mean,
                                "training_loadavg_start": load0, "torch_threads": torch.get_num_threads(),
                                "commit": commit(), "argv": sys.argv}, md)
    print(md)


if __name__ == "__main__":
    main()
