"""The demo study's variants as the files they ship as: for every variant, the torch model's test
accuracy next to the deployed file's (ONNX Runtime, or the .effdc decoded), with the file's 95%
interval; and the winner in runs/demo/best/, loaded in its runtime directly (ONNX Runtime, or effai.compress for an .effdc) and
evaluated on the test split, against the accuracy the study reported.

Runs the study `make demo` runs (`effai study --dataset mnist5k --out runs/demo`, the CLI's
defaults; a finished runs/demo is resumed, not rebuilt), or with --quick the quick study of the
same data set into runs/bench_study_files_quick (printed, not written to docs/benchmarks.md). Accuracy only: no timing is reported here, so
the load it ran under does not change a number.

A variant whose torch and file accuracies differ by more than the file's interval is a bug to
fix (the "within CI" column).

Usage: .venv/bin/python benchmarks/study_files.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, table, write_results  # noqa: E402

from effai import data, study  # noqa: E402
from effai.results import Manifest  # noqa: E402
from effai.results.serial import unversioned  # noqa: E402

DEMO = "effai study --dataset mnist5k --out runs/demo"


def best_in_its_runtime(out: Path, result) -> dict:
    """The winner's file from best/, checked against its manifest and run in its runtime directly:
    ONNX Runtime for an .onnx file, `effai.compress.load_compressed` (decoded, torch) for an .effdc."""
    folder = out / "best"
    m = Manifest.from_dict(unversioned(json.loads((folder / "manifest.json").read_text()), "best"))
    f = folder / m.artifact.file
    row = {"variant": m.variant, "file": f"best/{f.name}", "sha256_matches": hashlib.sha256(f.read_bytes()).hexdigest()
           == m.artifact.sha256, "reported_accuracy": result.best.accuracy, "reproduce": m.reproduce,
           "runtime": m.artifact.runtime}
    ds = data.load(result.dataset.name, seed=0)
    x, y = ds.test.tensors
    if f.suffix == ".onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        preds = np.array([sess.run(None, {name: x[i:i + 1].numpy()})[0].argmax(1)[0] for i in range(len(x))])
    elif f.suffix == ".effdc":
        import torch

        from effai.compress import load_compressed

        model = load_compressed(f).eval()
        with torch.no_grad():
            preds = np.array([int(model(x[i:i + 1]).argmax(1)[0]) for i in range(len(x))])
    else:
        return {**row, "runtime_accuracy": None, "exact": None}
    correct = int((preds == y.numpy()).sum())
    return {**row, "runtime_accuracy": correct / len(y),
            "exact": correct == round(result.best.accuracy * len(y)) and preds.tolist() == result.best.evaluation.predictions}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    os.chdir(ROOT)  # the folder as `make demo` names it, so the commands it records are the same
    out = Path("runs") / ("bench_study_files_quick" if args.quick else "demo")
    cfg = study.StudyConfig(dataset="mnist5k", quick=args.quick, out=str(out))
    result = study.run(cfg, command=DEMO + (" --quick" if args.quick else ""))
    rows = []
    for r in result.variants:
        if not r.ok:
            rows.append({"variant": r.name, "error": r.error})
            continue
        a, ci = r.artifact, r.accuracy_ci
        rows.append({"variant": r.name, "torch_accuracy": a.torch_accuracy, "file_accuracy": r.accuracy,
                     "ci": [ci.low, ci.high], "within_ci": ci.low <= a.torch_accuracy <= ci.high,
                     "file": a.file, "bytes": a.bytes, "runtime": a.runtime, "measured_on": a.measured_on,
                     "timing": a.timing, "sha256": a.sha256})
    best = best_in_its_runtime(out, result) if result.best_dir else None
    mach = machine()

    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    shown = [[r["variant"], pct(r.get("torch_accuracy")), pct(r.get("file_accuracy"))
              + (f" ({r['ci'][0]:.1%}-{r['ci'][1]:.1%})" if "ci" in r else ""),
              "-" if "ci" not in r else f"{(r['file_accuracy'] - r['torch_accuracy']) * 100:+.2f}",
              "-" if "ci" not in r else ("yes" if r["within_ci"] else "**NO**"),
              f"`{r.get('file', '-')}`", f"{r.get('bytes', 0):,}", r.get("runtime", r.get("error", "")),
              r.get("measured_on", "-"), r.get("timing", "-")] for r in rows]
    md = [f"## Demo study: torch model against the deployed file{' (quick)' if args.quick else ''}", "",
          f"`{DEMO}{' --quick' if args.quick else ''}` (the `make demo` study), every variant saved as the file it "
          "deploys as (`runs/demo/variants/NAME/` with `manifest.json`) and measured on that file in its runtime. "
          "Test split of mnist5k (500 images); the interval is the file's 95% Wilson interval; Δ = file − torch.", "",
          table(["variant", "torch model", "deployed file (95% CI)", "Δ pp", "within CI", "file", "bytes", "runtime",
                 "measured on", "latency means"], shown), ""]
    if best:
        md += [f"Winner shipped in `runs/{out.name}/best/`: **{best['variant']}** (`{best['file']}`, sha256 matches "
               f"its manifest: {'yes' if best['sha256_matches'] else '**NO**'}). Loaded in its runtime ({best['runtime']}) "
               "alone and run "
               f"on the test split: {pct(best['runtime_accuracy'])} against {pct(best['reported_accuracy'])} "
               f"reported ({'identical predictions' if best['exact'] else '**differs**'}). Rebuild: "
               f"`{best['reproduce']}`.", ""]
    md.append(machine_line(mach))
    print("\n".join(md))
    if not args.quick:  # --quick checks that the script works; docs/benchmarks.md shows the demo study only
        write_results("study_files",
                      {"rows": rows, "best": best, "machine": mach, "quick": args.quick, "command": DEMO}, "\n".join(md))
    bad = [r["variant"] for r in rows if r.get("within_ci") is False]
    if bad or (best and best["exact"] is False):
        sys.exit(f"torch and file accuracies disagree beyond the interval: {bad}; best exact: {best and best['exact']}")


if __name__ == "__main__":
    main()
